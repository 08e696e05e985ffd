//! Shared helpers for the integration tests: running the `codeexec` binary, reading its
//! JSON result, and the privileged-test gate.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::mod_module_files, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub mod daemon;
pub mod fleet;
pub mod netlab;

/// Gate for tests that need root. Without `CODEEXEC_PRIVILEGED_TESTS` the test prints why
/// it is skipped and passes; with it set (as `scripts/test` and CI always do) a missing
/// privilege is a failure, so a suite can never pass CI by skipping.
#[macro_export]
macro_rules! require_privileged {
    () => {
        if !$crate::common::privileged() {
            eprintln!("skipped: set CODEEXEC_PRIVILEGED_TESTS=1 and run as root (scripts/test does)");
            return;
        }
    };
}

/// Whether privileged tests are asked for; panics if asked for but not possible.
pub fn privileged() -> bool {
    if std::env::var_os("CODEEXEC_PRIVILEGED_TESTS").is_none() {
        return false;
    }
    assert!(nix::unistd::geteuid().is_root(), "CODEEXEC_PRIVILEGED_TESTS is set but the tests are not running as root");
    true
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_codeexec")
}

/// Runs `codeexec <args>` with `stdin` and returns its output.
pub fn codeexec(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn codeexec");
    child.stdin.take().expect("piped stdin").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("wait for codeexec")
}

/// One finished run, as `codeexec run --json` reported it.
#[derive(Debug)]
pub struct Run {
    pub json: Value,
    pub exit: i32,
    pub stderr: String,
}

impl Run {
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("<none>")
    }
    pub fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap_or("")
    }
    pub fn stderr_of_program(&self) -> &str {
        self.json["stderr"].as_str().unwrap_or("")
    }
    pub fn exceeded(&self) -> Option<&str> {
        self.json["exceeded"].as_str()
    }
    pub fn exit_code(&self) -> Option<i64> {
        self.json["exit_code"].as_i64()
    }
    pub fn signal(&self) -> Option<i64> {
        self.json["signal"].as_i64()
    }
    pub fn cpu_ms(&self) -> f64 {
        self.json["time"]["cpu_ms"].as_f64().unwrap_or(-1.0)
    }
    pub fn wall_ms(&self) -> f64 {
        self.json["time"]["wall_ms"].as_f64().unwrap_or(-1.0)
    }
    /// Asserts the status, showing the whole result when it differs.
    pub fn expect(&self, status: &str) -> &Self {
        assert_eq!(self.status(), status, "unexpected outcome: {:#}\ncodeexec stderr: {}", self.json, self.stderr);
        self
    }
}

/// `codeexec run --json <flags> -- <cmd>`, with `stdin` on codeexec's stdin (used with
/// `--stdin -`).
pub fn run_with(flags: &[&str], cmd: &[&str], stdin: &[u8]) -> Run {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let out = codeexec(&args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("codeexec printed no JSON ({e}); exit {:?}; stderr: {stderr}", out.status));
    Run { json, exit: out.status.code().unwrap_or(-1), stderr }
}

/// `codeexec run --json <flags> -- <cmd>`.
pub fn run(flags: &[&str], cmd: &[&str]) -> Run {
    run_with(flags, cmd, b"")
}

/// A shell command in the sandbox.
pub fn sh(flags: &[&str], script: &str) -> Run {
    run(flags, &["/bin/sh", "-c", script])
}

/// A Python program in the sandbox (the host's /usr/bin/python3).
pub fn python(flags: &[&str], code: &str) -> Run {
    run(flags, &["/usr/bin/python3", "-c", code])
}

/// The processes descended from `pid` (its children, theirs, …).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // the command may hold spaces and parentheses: the fields start after the last ')'
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent.push((p, pp));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let of = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == of).map(|(p, _)| *p));
        i += 1;
    }
    out.remove(0);
    out
}

/// Host processes whose real uid is one of the sandboxes' (2_000_000_000 + 2 * slot, +1).
pub fn sandbox_processes() -> Vec<(u32, u64)> {
    let ids = 2_000_000_000u64..2_000_000_000 + 2 * 1024;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(uid) = uid.filter(|u| ids.contains(u)) {
            out.push((pid, uid));
        }
    }
    out
}

/// Host processes whose command line contains `marker` as one argument.
pub fn processes_with_arg(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
            out.push(pid);
        }
    }
    out
}
