//! The command line's contract for bad input: a clear message, exit code 2, nothing
//! started. These need no privileges: every check happens before a sandbox is made.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use common::codeexec;

fn usage_error(args: &[&str], needle: &str) {
    let out = codeexec(args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: exit {:?}, stderr: {stderr}", out.status);
    assert!(stderr.contains(needle), "{args:?}: stderr should mention {needle:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn a_missing_command_is_a_usage_error() {
    usage_error(&["run"], "CMD");
    usage_error(&["run", "--"], "CMD");
}

#[test]
fn unknown_flags_are_usage_errors() {
    usage_error(&["run", "--frobnicate", "--", "true"], "--frobnicate");
}

#[test]
fn unparseable_sizes_and_durations_are_usage_errors() {
    usage_error(&["run", "--memory", "12Q", "--", "true"], "--memory");
    usage_error(&["run", "--cpu-time", "5h", "--", "true"], "--cpu-time");
    usage_error(&["run", "--wall-time", "soon", "--", "true"], "--wall-time");
    usage_error(&["run", "--cpus", "many", "--", "true"], "cpus");
    usage_error(&["run", "--processes", "-3", "--", "true"], "-3");
}

#[test]
fn limits_out_of_range_are_usage_errors() {
    usage_error(&["run", "--memory", "1K", "--", "true"], "memory: 1K is out of range");
    usage_error(&["run", "--processes", "0", "--", "true"], "processes");
    usage_error(&["run", "--cpu-time", "0s", "--", "true"], "cpu time");
    usage_error(&["run", "--output", "0", "--", "true"], "output");
}

#[test]
fn a_bad_rootfs_is_a_usage_error() {
    usage_error(&["run", "--rootfs", "/nonexistent/codeexec-rootfs", "--", "true"], "/nonexistent/codeexec-rootfs");
    usage_error(&["run", "--rootfs", "/etc/hostname", "--", "true"], "not a directory");
}

#[test]
fn bad_env_and_files_are_usage_errors() {
    usage_error(&["run", "--env", "NOVALUE", "--", "true"], "NAME=VALUE");
    usage_error(&["run", "--file", "/nonexistent/input.txt", "--", "true"], "/nonexistent/input.txt");
}

#[test]
fn a_package_that_cannot_be_judged_is_a_usage_error() {
    let solution = "tests/fixtures/kattis/hypotenuse/submissions/accepted/hyp.py";
    usage_error(&["judge", "tests/no-such-package", solution], "tests/no-such-package");
    usage_error(&["judge", "tests/fixtures", solution], "data/secret holds no test");
    usage_error(&["judge", "tests/fixtures/kattis/hypotenuse", "Cargo.toml"], "no language takes .toml files");
    usage_error(&["judge", "tests/fixtures/kattis/hypotenuse", solution, "--language", "cobol"], "cobol");
    usage_error(&["judge", "tests/fixtures/kattis/hypotenuse", solution, "--time-limit", "soon"], "--time-limit");
}

#[test]
fn help_lists_the_run_flags() {
    let out = codeexec(&["run", "--help"], b"");
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for flag in [
        "--memory",
        "--cpu-time",
        "--wall-time",
        "--processes",
        "--output",
        "--file-size",
        "--cpus",
        "--stdin",
        "--rootfs",
        "--json",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn missing_privileges_are_explained() {
    // as root, take CAP_SYS_ADMIN away; as anyone else, there is nothing to take
    let out = if nix::unistd::geteuid().is_root() {
        std::process::Command::new("setpriv")
            .args([
                "--bounding-set",
                "-sys_admin",
                "--inh-caps",
                "-sys_admin",
                "--",
                common::bin(),
                "run",
                "--",
                "/bin/true",
            ])
            .output()
            .expect("setpriv (util-linux)")
    } else {
        codeexec(&["run", "--", "/bin/true"], b"")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not enough privileges") && stderr.contains("run codeexec as root"), "{stderr}");
}

#[test]
fn info_says_what_was_found() {
    let out = codeexec(&["info"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cgroups: cgroup v"), "{text}");
    assert!(text.contains("seccomp: profile default"), "{text}");
    if common::privileged() {
        assert_eq!(out.status.code(), Some(0), "{text}");
    }
}

/// `codeexec <args>` with extra environment variables; asserts exit 2 and the message.
fn usage_error_env(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let out = std::process::Command::new(common::bin()).args(args).envs(env.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: exit {:?}, stderr: {stderr}", out.status);
    assert!(stderr.contains(needle), "{args:?} {env:?}: stderr should mention {needle:?}: {stderr}");
}

#[test]
fn a_bad_daemon_configuration_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("codeexec.toml");
    std::fs::write(&file, "[server]\nunix_socket = \"/tmp/x.sock\"\nport = 80\n").unwrap();
    let path = file.to_str().unwrap();
    usage_error(&["serve", "--config", path], "unknown field `port`");
    usage_error(&["serve", "--config", path], path);
    std::fs::write(&file, "[limits.max]\nmemory_mb = \"lots\"\n").unwrap();
    usage_error(&["serve", "--config", path], "invalid type");
    usage_error(&["serve", "--config", "/nonexistent/codeexec.toml"], "cannot read /nonexistent/codeexec.toml");
    usage_error_env(&["serve"], &[("CODEEXEC_SERVER_TPC", "127.0.0.1:1")], "CODEEXEC_SERVER_TPC");
    usage_error_env(&["serve"], &[("CODEEXEC_SERVER_TCP", "0.0.0.0:8080")], "not a loopback address and no API key");
    usage_error_env(&["serve"], &[("CODEEXEC_SERVER_API_KEYS", "short")], "16 or more characters");
    usage_error_env(&["serve"], &[("CODEEXEC_LIMITS_DEFAULT_MEMORY_MB", "9000")], "limits.default.memory_mb");
    usage_error_env(
        &["serve"],
        &[("CODEEXEC_RUNS_QUEUE", "-1")],
        "environment: invalid value: integer `-1`, expected u64 in `runs.queue`",
    );
}

#[test]
fn remote_runs_refuse_what_a_daemon_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.py");
    std::fs::write(&src, "print(1)").unwrap();
    let src = src.to_str().unwrap();
    usage_error(&["run", "--remote", "unix:/nonexistent.sock", "--", "true"], "--language");
    usage_error(
        &["run", "--remote", "unix:/nonexistent.sock", "--cpus", "2", "-l", "py", src],
        "--cpus cannot be used with --remote",
    );
    usage_error(&["run", "--remote", "localhost:80", "-l", "py", src], "expected unix:/path/to.sock");
    usage_error(&["run", "--remote", "unix:/nonexistent.sock", "-l", "py", "/nonexistent/a.py"], "/nonexistent/a.py");
    usage_error(&["run", "-l", "cobol", src], "unsupported language \"cobol\"");
    // nothing listens there: codeexec's own failure, not the user's
    let out = codeexec(&["run", "--remote", "unix:/nonexistent/codeexec.sock", "-l", "py", src], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("connecting to unix:/nonexistent/codeexec.sock"), "{stderr}");
}

#[test]
fn a_broken_language_definition_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let def =
        "id = \"x\"\nname = \"X\"\nmain_file = \"main.x\"\nversion = [\"x\"]\n[run]\ncommand = [\"x\", \"{mian}\"]\n";
    std::fs::write(dir.path().join("x.toml"), def).unwrap();
    let path = dir.path().to_str().unwrap();
    usage_error_env(
        &["serve"],
        &[("CODEEXEC_RUNS_LANGUAGES_DIR", path)],
        "x.toml: run.command: unknown placeholder {mian}",
    );
}

#[test]
fn check_config_says_whether_the_configuration_is_valid_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("never.sock");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/codeexec.example.toml");
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--check-config", "--config", example])
        .env("CODEEXEC_SERVER_UNIX_SOCKET", &socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("configuration is valid: "), "{stdout}");
    assert!(!socket.exists(), "nothing was started");
    let file = dir.path().join("codeexec.toml");
    std::fs::write(
        &file,
        "[rate_limit]\nrequests_per_second = 5\n[rate_limit.keys.\"unknown-key-0123456789\"]\nburst = 9\n",
    )
    .unwrap();
    usage_error(&["serve", "--check-config", "--config", file.to_str().unwrap()], "is not one of server.api_keys");
}
