//! What a program can see and touch from inside: network, file system, processes,
//! identity, descriptors. Root only. Every probe runs inside a real sandbox; no test sends
//! traffic anywhere but this machine's own loopback.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{python, run, sh};

#[test]
fn only_loopback_exists_and_nothing_is_routed() {
    require_privileged!();
    let r = sh(
        &[],
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo ---; tail -n +2 /proc/net/route; cat /proc/net/ipv6_route | grep -v ' lo$' || true",
    );
    r.expect("ok");
    assert_eq!(r.stdout(), "lo\n---\n", "interfaces, then any IPv4 route, then IPv6 routes not on lo");
}

/// Whether this kernel's Landlock can refuse TCP (network rules came with ABI 4, Linux 6.7;
/// the cgroup-v2 VM's kernel may be older).
fn landlock_tcp() -> bool {
    codeexec::sandbox::landlock_abi().is_some_and(|abi| abi >= 4)
}

#[test]
fn the_hosts_loopback_is_unreachable() {
    require_privileged!();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let code = format!(
        "import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)"
    );
    // without Landlock the sandbox's own loopback answers (no listener); with it, where the
    // kernel's Landlock has network rules (ABI 4, Linux 6.7), no TCP connect leaves the program
    let with = if landlock_tcp() { "PermissionError\n" } else { "ConnectionRefusedError\n" };
    for (landlock, refused) in [("false", "ConnectionRefusedError\n"), ("true", with)] {
        let r = python(&["--landlock", landlock], &code);
        r.expect("ok");
        assert_eq!(r.stdout(), refused, "landlock {landlock}");
    }
    assert!(listener.accept().is_err(), "the host's listener must never see a connection");
    // and nothing but loopback is reachable at all
    let code = "import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('10.0.0.1', 80))\nexcept OSError as e:\n    print(e.errno)";
    let r = python(&["--landlock", "false"], code);
    assert_eq!(r.stdout(), "101\n", "ENETUNREACH: no route");
}

#[test]
fn host_paths_outside_the_root_are_absent() {
    require_privileged!();
    let r = sh(
        &[],
        "for p in /root /home /var /srv /opt /run /boot /mnt /media /work; do test -e $p && echo $p; done; ls /",
    );
    r.expect("ok");
    let mut seen: Vec<&str> = r.stdout().lines().collect();
    seen.sort_unstable();
    assert_eq!(seen, ["bin", "dev", "etc", "lib", "lib64", "proc", "sandbox", "sbin", "sys", "tmp", "usr"]);
    let r = sh(&[], "ls /etc | sort | tr '\\n' ' '");
    assert!(!r.stdout().contains("shadow"), "no host secrets in /etc: {}", r.stdout());
    assert!(r.stdout().contains("passwd"), "{}", r.stdout());
}

#[test]
fn proc_shows_only_the_sandboxs_processes() {
    require_privileged!();
    let r = sh(
        &["--env", "SECRET=hunter2"],
        "sleep 10 & ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline 2>&1 || echo hidden",
    );
    r.expect("ok");
    let mut lines = r.stdout().lines();
    let pids: Vec<u32> = lines.next().unwrap().split_whitespace().map(|p| p.parse().unwrap()).collect();
    // the shell, sleep and the pipeline's commands: a new pid namespace counts from 1 and
    // the host's processes are not there; PID 1 (codeexec's, the runner's command line)
    // is hidden from the program
    assert!(!pids.is_empty() && pids.len() <= 10 && pids.iter().all(|p| *p > 1 && *p < 20), "{pids:?}");
    let rest: Vec<&str> = lines.collect();
    assert!(rest.last() == Some(&"hidden"), "PID 1 is visible: {rest:?}");
    assert!(!r.stdout().contains("hunter2"), "{}", r.stdout());
}

#[test]
fn the_root_is_read_only_and_the_work_dirs_writable() {
    require_privileged!();
    let script = "for d in / /usr /etc /dev /bin; do touch $d/x 2>/dev/null && echo \"wrote $d\"; done; \
                  for d in /sandbox /tmp /dev/shm; do touch $d/x && echo \"ok $d\"; done; pwd";
    let r = sh(&[], script);
    r.expect("ok");
    assert_eq!(r.stdout(), "ok /sandbox\nok /tmp\nok /dev/shm\n/sandbox\n");
}

#[test]
fn mounts_are_nosuid_and_nodev_where_they_fit() {
    require_privileged!();
    let r = sh(&[], "cat /proc/self/mounts");
    r.expect("ok");
    for line in r.stdout().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (point, opts) = (f[1], f[3]);
        assert!(opts.contains("nosuid"), "{point} is not nosuid: {line}");
        let device = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"].contains(&point);
        assert!(device || opts.contains("nodev"), "{point} is not nodev: {line}");
        let writable = ["/tmp", "/sandbox", "/dev/shm", "/proc"].contains(&point);
        assert!(writable || opts.starts_with("ro"), "{point} is writable: {line}");
    }
}

#[test]
fn dev_holds_only_the_harmless_nodes() {
    require_privileged!();
    let r =
        sh(&[], "ls /dev | tr '\\n' ' '; echo; head -c 4 /dev/urandom | wc -c; echo hi > /dev/null && echo null-ok");
    r.expect("ok");
    assert_eq!(r.stdout(), "fd full null random shm stderr stdin stdout urandom zero \n4\nnull-ok\n");
}

#[test]
fn the_program_is_not_root_and_has_no_capabilities() {
    require_privileged!();
    let r = sh(&[], "id -u; id -g; id -G; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status");
    r.expect("ok");
    let out = r.stdout();
    assert!(out.starts_with("1000\n1000\n1000\n"), "{out}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(out.contains(&format!("{set}:\t0000000000000000")), "{set} not empty: {out}");
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn namespaces_are_all_new() {
    require_privileged!();
    let r = sh(
        &[],
        "for n in user pid mnt net ipc uts cgroup; do readlink /proc/self/ns/$n; done; hostname; cat /proc/self/cgroup",
    );
    r.expect("ok");
    let inside: Vec<&str> = r.stdout().lines().collect();
    for (i, n) in ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"].iter().enumerate() {
        let host = std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        assert_ne!(inside[i], host.to_str().unwrap(), "{n} namespace shared with the host");
    }
    assert_eq!(inside[7], "sandbox");
    assert!(
        inside[8..].iter().all(|l| l.ends_with(":/")),
        "the cgroup namespace is rooted at the run's cgroup: {inside:?}"
    );
}

#[test]
fn no_descriptor_beyond_2_is_open() {
    require_privileged!();
    // ls opens one directory to list /proc/self/fd: that is the only fd above 2
    let r = run(&[], &["/bin/ls", "-l", "/proc/self/fd"]);
    r.expect("ok");
    let fds: Vec<&str> = r.stdout().lines().skip(1).collect();
    assert_eq!(fds.len(), 4, "{}", r.stdout());
    for l in &fds[..3] {
        assert!(l.contains("pipe:["), "stdio are the runner's pipes: {l}");
    }
    assert!(fds[3].contains("-> /proc/") && fds[3].ends_with("/fd"), "{}", fds[3]);
}

#[test]
fn a_directory_tree_can_be_the_root() {
    require_privileged!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), "from the tree\n").unwrap();
    std::os::unix::fs::symlink("bin", root.join("sbin")).unwrap();
    let src = dir.path().join("probe.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    char buf[64] = {0};
    FILE *f = fopen("/etc/motd", "r");
    if (f) { fgets(buf, sizeof buf, f); fclose(f); }
    printf("%s", buf);
    printf("%d %d %d\n", access("/usr", F_OK), access("/sbin/probe", X_OK), getuid());
    return 0;
}
"#,
    )
    .unwrap();
    let status =
        Command::new("gcc").args(["-static", "-O1", "-o"]).arg(root.join("bin/probe")).arg(&src).status().unwrap();
    assert!(status.success(), "gcc -static (libc6-dev) is needed for this test");
    let r = run(&["--rootfs", root.to_str().unwrap()], &["/bin/probe"]);
    r.expect("ok");
    assert_eq!(r.stdout(), "from the tree\n-1 0 1000\n", "its /etc, no host /usr, symlinks kept");
    // the tree itself is untouched: no mount points or files were added to it
    let mut entries: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    entries.sort();
    assert_eq!(entries, ["bin", "etc", "sbin"]);
}

#[test]
fn the_root_rejects_paths_that_are_not_directories() {
    require_privileged!();
    let r = common::codeexec(&["run", "--rootfs", "/etc/hostname", "--", "/bin/true"], b"");
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn host_identifying_proc_files_are_empty() {
    require_privileged!();
    let host_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    assert!(!host_cmdline.trim().is_empty(), "the host has boot arguments to hide");
    let files = "cmdline sys/kernel/random/boot_id config.gz kallsyms kcore modules keys key-users timer_list \
                 sched_debug latency_stats partitions diskstats swaps mdstat interrupts";
    let script = format!(
        "for f in {files}; do [ -e /proc/$f ] && echo \"$f $(wc -c < /proc/$f)\"; done; \
         for d in acpi asound bus driver fs irq scsi; do [ -d /proc/$d ] && echo \"$d/ $(ls -A /proc/$d | wc -l)\"; done; \
         echo x > /proc/cmdline 2>/dev/null && echo wrote; cat /proc/self/status | grep -c '^Pid:'"
    );
    let r = sh(&[], &script);
    r.expect("ok");
    let lines: Vec<&str> = r.stdout().lines().collect();
    assert!(lines.contains(&"cmdline 0"), "{lines:?}");
    assert!(lines.contains(&"sys/kernel/random/boot_id 0"), "{lines:?}");
    for line in &lines[..lines.len() - 1] {
        assert!(line.ends_with(" 0"), "not hidden: {line} (all: {lines:?})");
    }
    assert_eq!(lines.last(), Some(&"1"), "the rest of /proc still works: {lines:?}");
    // what each hid exists on the host: the list is not empty by accident
    assert!(lines.len() >= 8, "{lines:?}");
}

#[test]
fn a_lock_on_a_shared_host_file_lasts_only_as_long_as_its_run() {
    require_privileged!();
    // The read-only host files are the same inodes in every sandbox and on the host, and
    // flock(2) needs only read access: a run can hold a lock others see. Nothing closes
    // that cheaply (seccomp sees a descriptor, not its file; refusing or faking flock
    // breaks programs that lock their own files, as `go build` does), so it is bounded
    // instead: the lock goes when the run's processes die, at its wall-time limit at the
    // latest. The daemon itself never locks these files.
    let file = "/usr/bin/env";
    let holder = std::thread::spawn(move || {
        let code = format!("import fcntl, time\nf = open('{file}')\nfcntl.flock(f, fcntl.LOCK_EX)\ntime.sleep(60)");
        python(&["--wall-time", "4s"], &code)
    });
    let f = std::fs::File::open(file).unwrap();
    let try_lock = || nix::fcntl::Flock::lock(f.try_clone().unwrap(), nix::fcntl::FlockArg::LockExclusiveNonblock);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let held = loop {
        match try_lock() {
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => break true,
            Err((_, e)) => panic!("flock: {e}"),
            Ok(lock) => drop(lock),
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(held, "the sandbox's lock is seen on the host (the behaviour the README documents)");
    let r = holder.join().unwrap();
    r.expect("time_limit");
    assert!(try_lock().is_ok(), "the lock went with the run");
}

#[test]
fn landlock_refuses_writes_the_mounts_would_allow() {
    require_privileged!();
    // /proc/self/comm is the program's own, writable by it through its fresh proc mount:
    // only Landlock (writes under /sandbox, /tmp, /dev/shm and the device nodes) stops it
    let script = "echo renamed > /proc/self/comm && echo wrote-comm; \
                  for d in /sandbox /tmp /dev/shm; do echo x > $d/f && echo ok $d; done; echo x > /dev/null && echo ok null";
    let on = sh(&[], script);
    on.expect("ok");
    assert_eq!(on.stdout(), "ok /sandbox\nok /tmp\nok /dev/shm\nok null\n", "{}", on.stderr_of_program());
    assert!(on.stderr_of_program().contains("Permission denied"), "{}", on.stderr_of_program());
    let off = sh(&["--landlock", "false"], script);
    off.expect("ok");
    assert_eq!(off.stdout(), "wrote-comm\nok /sandbox\nok /tmp\nok /dev/shm\nok null\n", "without Landlock");
    // and no TCP at all without a network link, not even on the sandbox's own loopback
    let code = "import socket\ns = socket.socket()\ntry:\n    s.bind(('127.0.0.1', 0)); s.listen(); print('listening')\nexcept OSError as e:\n    print(e.errno)";
    let expected = if landlock_tcp() { "13\n" } else { "listening\n" };
    assert_eq!(python(&[], code).stdout(), expected, "EACCES from Landlock where it has network rules");
    assert_eq!(python(&["--landlock", "false"], code).stdout(), "listening\n");
}
