//! Real runs through `codeexec run`: output, input, exit statuses, files, environment, the
//! JSON contract and concurrent runs. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;

use common::{python, run, run_with, sh};

#[test]
fn hello_world() {
    require_privileged!();
    let r = run(&[], &["/bin/echo", "hello, world"]);
    r.expect("ok");
    assert_eq!(r.stdout(), "hello, world\n");
    assert_eq!(r.exit_code(), Some(0));
    assert_eq!(r.exit, 0, "codeexec exits 0 for ok");
}

#[test]
fn stdin_is_fed_to_the_program() {
    require_privileged!();
    let input = "line one\nline two\n".repeat(5000); // more than a pipe buffer
    let r = run_with(&["--stdin", "-", "--output", "1M"], &["/bin/cat"], input.as_bytes());
    r.expect("ok");
    assert_eq!(r.stdout(), input);
}

#[test]
fn stdin_from_a_file_and_unread_stdin_does_not_block() {
    require_privileged!();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"3 4\n").unwrap();
    let path = f.path().to_str().unwrap();
    let r = run(&["--stdin", path], &["/bin/sh", "-c", "read a b; echo $((a + b))"]);
    r.expect("ok");
    assert_eq!(r.stdout(), "7\n");
    // 1 MiB of stdin to a program that never reads it: the run still ends at once
    let big = vec![b'x'; 1 << 20];
    let r = run_with(&["--stdin", "-"], &["/bin/true"], &big);
    r.expect("ok");
}

#[test]
fn exit_codes_are_reported() {
    require_privileged!();
    let r = sh(&[], "exit 7");
    r.expect("runtime_error");
    assert_eq!(r.exit_code(), Some(7));
    assert_eq!(r.exit, 1, "codeexec exits 1 for runtime_error");
    assert!(r.json["message"].as_str().unwrap().contains("code 7"));
}

#[test]
fn signals_are_reported_by_name() {
    require_privileged!();
    let r = sh(&[], "kill -SEGV $$");
    r.expect("signaled");
    assert_eq!(r.signal(), Some(11));
    assert_eq!(r.json["signal_name"], "SIGSEGV");
    assert_eq!(r.exit, 128 + 11);
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    require_privileged!();
    let r = sh(&[], "echo out; echo err >&2; echo out2");
    r.expect("ok");
    assert_eq!(r.stdout(), "out\nout2\n");
    assert_eq!(r.stderr_of_program(), "err\n");
}

#[test]
fn output_over_the_limit_is_truncated_and_flagged() {
    require_privileged!();
    let r = python(&["--output", "1K"], "import sys\nsys.stdout.write('x' * 5000)\nsys.stdout.flush()");
    r.expect("output_limit");
    assert_eq!(r.exceeded(), Some("output"));
    assert_eq!(r.stdout(), "x".repeat(1024));
    assert_eq!(r.json["stdout_truncated"], true);
    assert_eq!(r.json["stderr_truncated"], false);
    // an endless writer is stopped, not left to run into the time limit
    let r = run(&["--output", "4K", "--wall-time", "60s"], &["/usr/bin/yes"]);
    r.expect("output_limit");
    assert!(r.wall_ms() < 30_000.0, "{}", r.json);
    // stderr has its own limit and flag
    let r = sh(&["--output", "1K"], "head -c 3000 /dev/zero | tr '\\0' e >&2");
    r.expect("output_limit");
    assert_eq!(r.json["stderr_truncated"], true);
    assert_eq!(r.stderr_of_program().len(), 1024);
}

#[test]
fn binary_output_comes_back_as_base64() {
    require_privileged!();
    let r = sh(&[], "printf '\\377\\376'");
    r.expect("ok");
    assert_eq!(r.json["stdout_encoding"], "base64");
    assert_eq!(r.stdout(), "//4=");
}

#[test]
fn input_files_land_in_the_work_dir() {
    require_privileged!();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("main.py");
    std::fs::write(&script, "print(open('data/in.txt').read().upper())").unwrap();
    let data = dir.path().join("in.txt");
    std::fs::write(&data, "payload").unwrap();
    let r = run(
        &["--file", script.to_str().unwrap(), "--file", &format!("data/in.txt={}", data.display())],
        &["/bin/sh", "-c", "ls -ln . data | grep -c ' 1000 1000 '; python3 main.py"],
    );
    r.expect("ok");
    assert_eq!(r.stdout(), "3\nPAYLOAD\n", "files and the dir they need, owned by the program's uid");
}

#[test]
fn the_environment_is_exactly_the_explicit_one() {
    require_privileged!();
    let r = run(&[], &["/usr/bin/env"]);
    r.expect("ok");
    let mut vars: Vec<&str> = r.stdout().lines().collect();
    vars.sort_unstable();
    assert_eq!(vars, ["HOME=/sandbox", "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin"]);
    let r = run(&["--env", "GREETING=hi there", "--env", "LANG=en_US.UTF-8"], &["/usr/bin/env"]);
    let mut vars: Vec<&str> = r.stdout().lines().collect();
    vars.sort_unstable();
    assert_eq!(vars, ["GREETING=hi there", "HOME=/sandbox", "LANG=en_US.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin"]);
}

#[test]
fn a_command_that_does_not_exist_is_a_runtime_error() {
    require_privileged!();
    let r = run(&[], &["no-such-command-anywhere"]);
    r.expect("runtime_error");
    assert_eq!(r.exit_code(), Some(127));
    assert!(r.json["message"].as_str().unwrap().contains("No such file"), "{}", r.json);
}

#[test]
fn the_json_result_has_every_field() {
    require_privileged!();
    let r = sh(&[], "echo hi");
    for key in [
        "status",
        "exceeded",
        "exit_code",
        "signal",
        "signal_name",
        "message",
        "stdout",
        "stdout_encoding",
        "stdout_truncated",
        "stderr",
        "stderr_encoding",
        "stderr_truncated",
        "time",
        "memory_peak_kb",
        "cgroup",
        "cgroup_mode",
    ] {
        assert!(r.json.get(key).is_some(), "missing {key} in {}", r.json);
    }
    assert!(r.cpu_ms() >= 0.0 && r.wall_ms() > 0.0, "{}", r.json);
    assert!(r.json["memory_peak_kb"].as_u64().unwrap() > 0, "{}", r.json);
}

#[test]
fn the_human_summary_goes_to_stderr() {
    require_privileged!();
    let out = common::codeexec(&["run", "--", "/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("to-stderr\n"), "{err}");
    assert!(err.contains("codeexec: runtime_error: exited with code 3 [cpu "), "{err}");
}

#[test]
fn concurrent_runs_get_distinct_host_ids() {
    require_privileged!();
    let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(|| sh(&[], "cat /proc/self/uid_map; sleep 0.5"))).collect();
    let mut seen = HashSet::new();
    for h in handles {
        let r = h.join().unwrap();
        r.expect("ok");
        // "0 <host> 1" for root inside, "1000 <host> 1" for the program
        let ids: Vec<(u64, u64)> = r
            .stdout()
            .lines()
            .map(|l| {
                let f: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                (f[0], f[1])
            })
            .collect();
        assert_eq!(ids.len(), 2, "{}", r.stdout());
        for (inside, host) in ids {
            assert!(host >= 100_000, "host id {host} must be unprivileged");
            assert!(seen.insert(host), "host id {host} (inside {inside}) used by two concurrent runs");
        }
    }
}

#[test]
fn the_cgroup_mode_is_the_one_expected() {
    require_privileged!();
    let r = run(&[], &["/bin/true"]);
    r.expect("ok");
    let mode = r.json["cgroup_mode"].as_str().unwrap().to_owned();
    assert!(mode == "v1" || mode == "v2", "{}", r.json);
    // scripts/test-cgroup2-vm says what the VM has, so a silent fallback cannot pass
    if let Ok(expected) = std::env::var("CODEEXEC_EXPECT_CGROUP") {
        assert_eq!(mode, expected, "{}", r.json["cgroup"]);
    }
}

#[test]
fn signals_start_at_their_defaults() {
    require_privileged!();
    // codeexec's runtime ignores SIGPIPE; the program must not inherit that (`yes | head`
    // would never end), nor any handler or blocked signal
    let r = sh(&["--wall-time", "20s"], "yes | head -n 1; grep -E '^Sig(Ign|Blk)' /proc/self/status");
    r.expect("ok");
    assert_eq!(r.stdout(), "y\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

#[test]
fn files_out_are_read_without_following_symlinks() {
    require_privileged!();
    let script = "mkdir -p d/e && echo hi > d/e/f.txt && printf '\\377' > bin && cp /bin/true t \\
                  && ln -s /etc/passwd link && mkfifo fifo && echo done";
    let r = run(&["--files-out"], &["/bin/sh", "-c", script]);
    r.expect("ok");
    let files = r.json["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bin", "d/e/f.txt", "link", "t"], "the FIFO is skipped: {files:?}");
    let by = |n: &str| files.iter().find(|f| f["name"] == n).unwrap();
    assert_eq!(
        (by("d/e/f.txt")["content"].as_str(), by("d/e/f.txt")["encoding"].as_str()),
        (Some("hi\n"), Some("utf8"))
    );
    assert_eq!((by("bin")["content"].as_str(), by("bin")["encoding"].as_str()), (Some("/w=="), Some("base64")));
    assert_eq!(by("link")["symlink"], "/etc/passwd", "a symlink is reported, never followed");
    assert!(by("link").get("content").is_none());
    assert_eq!((by("t")["executable"].as_bool(), by("bin")["executable"].as_bool()), (Some(true), Some(false)));
    assert_eq!(r.json["files_truncated"], false);
}

#[test]
fn files_out_with_many_long_names_and_odd_symlinks_still_report() {
    require_privileged!();
    // ~270 KB of names and targets full of control characters: more than one message of
    // the control socket could carry, had the manifest travelled in it
    let script = "i=0; n=$(printf '%0240d' 0); while [ $i -lt 900 ]; do : > \"$i$n\"; i=$((i+1)); done; \
                  t=$(printf '\\001%.0s' $(seq 1 2000)); j=0; while [ $j -lt 150 ]; do ln -s \"$t\" \"l$j\"; j=$((j+1)); done";
    let r = run(&["--files-out", "--wall-time", "60s", "--cpu-time", "30s"], &["/bin/sh", "-c", script]);
    r.expect("ok");
    let files = r.json["files"].as_array().unwrap();
    assert_eq!(files.len(), 1000, "the file cap, reached: {}", files.len());
    assert_eq!(r.json["files_truncated"], true);
}
