//! Limits and verdicts, and programs that try to outlive their run. Root only. Limits are
//! generous where the machine's load could matter: these tests assert behaviour, never
//! speed.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use common::{processes_with_arg, python, run, sandbox_processes, sh};

#[test]
fn a_busy_loop_hits_the_cpu_time_limit() {
    require_privileged!();
    let r = python(&["--cpu-time", "1s", "--wall-time", "60s"], "while True: pass");
    r.expect("time_limit");
    assert_eq!(r.exceeded(), Some("cpu_time"));
    assert!(r.cpu_ms() >= 1000.0, "stopped only once over the limit: {}", r.json);
    assert!(r.cpu_ms() < 3000.0, "and soon after it: {}", r.json);
    assert_eq!(r.exit, 4);
}

#[test]
fn cpu_time_counts_every_process_of_the_tree() {
    require_privileged!();
    // two busy children: the tree's time counts, not just the main process's
    let r = sh(
        &["--cpu-time", "1s", "--wall-time", "60s", "--cpus", "2"],
        "(while :; do :; done) & (while :; do :; done) & wait",
    );
    r.expect("time_limit");
    assert_eq!(r.exceeded(), Some("cpu_time"));
}

#[test]
fn sleeping_hits_the_wall_time_limit() {
    require_privileged!();
    let r = run(&["--wall-time", "500ms"], &["/bin/sleep", "30"]);
    r.expect("time_limit");
    assert_eq!(r.exceeded(), Some("wall_time"));
    assert!(r.wall_ms() >= 500.0 && r.wall_ms() < 20_000.0, "{}", r.json);
    assert!(r.cpu_ms() < 500.0, "{}", r.json);
}

#[test]
fn an_allocation_loop_hits_the_memory_limit() {
    require_privileged!();
    let r = python(&["--memory", "64M"], "a = []\nwhile True: a.append(bytearray(1 << 20))");
    r.expect("memory_limit");
    assert_eq!(r.exceeded(), Some("memory"));
    let peak = r.json["memory_peak_kb"].as_u64().unwrap();
    assert!((60 * 1024..=64 * 1024).contains(&peak), "peak {peak} KiB near the 64M limit");
    assert_eq!(r.exit, 5);
}

#[test]
fn memory_use_under_the_limit_is_measured() {
    require_privileged!();
    let r = python(&["--memory", "256M"], "a = bytearray(100 << 20)\nfor i in range(0, len(a), 4096): a[i] = 1");
    r.expect("ok");
    let peak = r.json["memory_peak_kb"].as_u64().unwrap();
    assert!((100 * 1024..200 * 1024).contains(&peak), "peak {peak} KiB for 100 MiB touched");
}

#[test]
fn a_fork_bomb_hits_the_process_limit_and_leaves_nothing() {
    require_privileged!();
    let r = run(&["--processes", "32", "--wall-time", "5s"], &["/bin/bash", "-c", ":(){ :|:& };: ; sleep 987.5"]);
    r.expect("process_limit");
    assert_eq!(r.exceeded(), Some("processes"));
    assert!(processes_with_arg("987.5").is_empty(), "nothing of the bomb survives");
    // the machine is fine: the next run works
    run(&[], &["/bin/true"]).expect("ok");
}

#[test]
fn threads_count_against_the_process_limit() {
    require_privileged!();
    let code = "import threading, time\nts = [threading.Thread(target=time.sleep, args=(1,)) for _ in range(40)]\n[t.start() for t in ts]";
    let r = python(&["--processes", "8"], code);
    r.expect("process_limit");
}

#[test]
fn a_big_file_hits_the_file_size_limit() {
    require_privileged!();
    // (exec: the writer itself must be the program; Python would not do, it ignores SIGXFSZ
    // and sees EFBIG instead, which makes it a runtime_error)
    let r = sh(&["--file-size", "1M"], "exec head -c 2M /dev/zero > big");
    r.expect("file_size_limit");
    assert_eq!(r.exceeded(), Some("file_size"));
    assert_eq!(r.json["signal_name"], "SIGXFSZ");
    assert_eq!(r.exit, 8);
    // under the limit, files are fine
    let r = sh(&["--file-size", "1M"], "head -c 1000000 /dev/zero > ok && wc -c < ok");
    r.expect("ok");
    assert_eq!(r.stdout(), "1000000\n");
}

#[test]
fn a_stopped_program_does_not_hold_the_run() {
    require_privileged!();
    let r = sh(&["--wall-time", "1s"], "sleep 876.5 & kill -STOP $$");
    r.expect("time_limit");
    assert_eq!(r.exceeded(), Some("wall_time"));
    let r = sh(&["--wall-time", "1s"], "kill -STOP 0");
    r.expect("time_limit");
    assert!(processes_with_arg("876.5").is_empty());
}

#[test]
fn a_time_limit_kills_the_whole_tree_including_a_setsid_grandchild() {
    require_privileged!();
    let script = "sh -c 'setsid sleep 432.5 & sleep 432.5' & sleep 432.5";
    let r = sh(&["--wall-time", "1s"], script);
    r.expect("time_limit");
    assert_eq!(r.exceeded(), Some("wall_time"));
    assert!(processes_with_arg("432.5").is_empty(), "part of the tree outlived the run");
}

#[test]
fn background_children_do_not_outlive_the_program() {
    require_privileged!();
    // the main process exits at once; its children (one setsid'd, one ignoring signals)
    // are killed with the run, which ends without waiting for them
    let script = "sleep 765.5 & setsid sleep 765.5 & (trap '' TERM HUP INT; exec sleep 765.5) & echo started";
    let r = sh(&["--wall-time", "20s"], script);
    r.expect("ok");
    assert_eq!(r.stdout(), "started\n");
    assert!(r.wall_ms() < 10_000.0, "{}", r.json);
    assert!(processes_with_arg("765.5").is_empty(), "background children outlived the run");
}

#[test]
fn closing_stdout_early_does_not_hold_the_run() {
    require_privileged!();
    let r = sh(&["--wall-time", "1s"], "exec >&- 2>&-; sleep 654.5");
    r.expect("time_limit");
    assert!(processes_with_arg("654.5").is_empty());
}

#[test]
fn ignoring_signals_does_not_survive_the_time_limit() {
    require_privileged!();
    let code = "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU): signal.signal(s, signal.SIG_IGN)\nwhile True: pass";
    let r = python(&["--cpu-time", "1s", "--wall-time", "60s"], code);
    r.expect("time_limit");
}

#[test]
fn no_core_file_appears_after_a_segfault() {
    require_privileged!();
    let script = "python3 -c 'import ctypes; ctypes.string_at(0)'; echo \"status $?\"; ls -A; grep 'core file' /proc/self/limits";
    let r = sh(&[], script);
    r.expect("ok");
    let out = r.stdout();
    assert!(out.starts_with("status 139\n"), "{out}");
    assert!(!out.contains("core\n"), "a core file was written: {out}");
    assert!(out.contains("Max core file size        0                    0"), "{out}");
}

#[test]
fn the_writable_dirs_are_size_limited() {
    require_privileged!();
    for dir in ["/sandbox", "/tmp"] {
        let script = format!("head -c 2M /dev/zero > {dir}/fill 2>/dev/null; echo $?; df -k {dir} | tail -1");
        let r = sh(&["--disk", "1M", "--file-size", "16M"], &script);
        r.expect("ok");
        let mut lines = r.stdout().lines();
        assert_ne!(lines.next(), Some("0"), "{dir}: writing 2M into 1M must fail");
        assert!(r.stdout().contains(" 1024 "), "{dir} is a 1M tmpfs: {}", r.stdout());
    }
}

#[test]
fn nothing_of_ours_runs_as_a_sandbox_id_when_idle() {
    require_privileged!();
    // every other test's sandboxes may be running; ours must end with us
    let r = sh(&[], "sleep 543.5 & echo $!");
    r.expect("ok");
    assert!(processes_with_arg("543.5").is_empty());
    // every remaining sandbox process belongs to a run still in progress (not a leak):
    // none of them may be a child of init (an orphan outside any sandbox)
    for (pid, _) in sandbox_processes() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rsplit(") ").next().and_then(|r| r.split_whitespace().nth(1)).unwrap_or("0");
        assert_ne!(ppid, "1", "sandbox process {pid} was orphaned to the host's init");
    }
}

#[test]
fn a_killed_runner_leaves_no_sandbox() {
    require_privileged!();
    let mut runner = std::process::Command::new(common::bin())
        .args(["run", "--wall-time", "120s", "--", "/bin/sleep", "321.5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |want_running: bool| {
        for _ in 0..200 {
            if processes_with_arg("321.5").is_empty() != want_running {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    };
    assert!(wait_for(true), "the program never started");
    runner.kill().unwrap(); // SIGKILL: no cleanup code of the runner runs
    runner.wait().unwrap();
    assert!(wait_for(false), "the sandbox outlived its runner: {:?}", processes_with_arg("321.5"));
    // the next runner removes the dead run's cgroup (the final leak check would see it)
    run(&[], &["/bin/true"]).expect("ok");
}
