//! How a [`RunOutcome`] is shown by the command line: the program's own output followed by
//! a one-line summary on stderr, or one JSON object; and the exit code for each status.
//!
//! Exit codes of `codeexec run`:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | `ok` |
//! | 1 | `runtime_error` (the program's own code is in the summary and the JSON) |
//! | 2 | bad usage: nothing was started |
//! | 3 | `internal_error`, or codeexec could not start (privileges, cgroups) |
//! | 4 | `time_limit` |
//! | 5 | `memory_limit` |
//! | 6 | `process_limit` |
//! | 7 | `output_limit` |
//! | 8 | `file_size_limit` |
//! | 9 | `blocked_syscall` |
//! | 128+N | `signaled` with signal N (as a shell reports it) |

use base64::Engine as _;
use serde_json::{Value, json};

use crate::run::{RunOutcome, Status, signal_name};

/// Exit code for bad usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for codeexec's own failures.
pub const EXIT_INTERNAL: u8 = 3;

/// The process exit code for an outcome.
pub fn exit_code(o: &RunOutcome) -> u8 {
    match o.status {
        Status::Ok => 0,
        Status::RuntimeError => 1,
        Status::InternalError => EXIT_INTERNAL,
        Status::TimeLimit => 4,
        Status::MemoryLimit => 5,
        Status::ProcessLimit => 6,
        Status::OutputLimit => 7,
        Status::FileSizeLimit => 8,
        Status::BlockedSyscall => 9,
        Status::Signaled => o.signal.and_then(|s| u8::try_from(128 + s).ok()).unwrap_or(128),
    }
}

/// The one-line summary printed on stderr after the program's output.
pub fn summary(o: &RunOutcome) -> String {
    let mut s = format!("codeexec: {}", o.status.as_str());
    if let Some(m) = &o.message {
        s.push_str(": ");
        s.push_str(m);
    }
    s.push_str(&format!(
        " [cpu {} ms, wall {} ms, memory {} KiB",
        o.cpu_time.as_millis(),
        o.wall_time.as_millis(),
        o.memory_peak_bytes / 1024
    ));
    for (name, t) in [("stdout", o.stdout_truncated), ("stderr", o.stderr_truncated)] {
        if t {
            s.push_str(&format!(", {name} truncated"));
        }
    }
    s.push(']');
    s
}

/// The whole outcome as JSON. Output that is not UTF-8 is base64 (`*_encoding` says which).
/// `cgroup_mode` is `v1` or `v2`; `cgroup` describes the layout found.
pub fn to_json(o: &RunOutcome, cgroup_mode: &str, cgroup: &str) -> Value {
    let (stdout, stdout_enc) = text(&o.stdout);
    let (stderr, stderr_enc) = text(&o.stderr);
    json!({
        "status": o.status.as_str(),
        "exceeded": o.exceeded.map(|e| e.as_str()),
        "exit_code": o.exit_code,
        "signal": o.signal,
        "signal_name": o.signal.map(signal_name),
        "message": o.message,
        "stdout": stdout,
        "stdout_encoding": stdout_enc,
        "stdout_truncated": o.stdout_truncated,
        "stderr": stderr,
        "stderr_encoding": stderr_enc,
        "stderr_truncated": o.stderr_truncated,
        "time": {
            "cpu_ms": o.cpu_time.as_secs_f64() * 1000.0,
            "wall_ms": o.wall_time.as_secs_f64() * 1000.0,
        },
        "memory_peak_kb": o.memory_peak_bytes / 1024,
        "cgroup_mode": cgroup_mode,
        "cgroup": cgroup,
    })
}

fn text(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), "base64"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn outcome(status: Status) -> RunOutcome {
        RunOutcome {
            status,
            exceeded: None,
            exit_code: Some(0),
            signal: None,
            message: None,
            stdout: b"hi\n".to_vec(),
            stderr: vec![0xff, 0xfe],
            stdout_truncated: false,
            stderr_truncated: true,
            cpu_time: Duration::from_millis(12),
            wall_time: Duration::from_millis(30),
            memory_peak_bytes: 2 << 20,
        }
    }

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(exit_code(&outcome(Status::Ok)), 0);
        assert_eq!(exit_code(&outcome(Status::TimeLimit)), 4);
        let mut o = outcome(Status::Signaled);
        o.signal = Some(11);
        assert_eq!(exit_code(&o), 139);
    }

    #[test]
    fn json_carries_everything_and_base64_for_binary_output() {
        let v = to_json(&outcome(Status::Ok), "v2", "cgroup v2 at /sys/fs/cgroup");
        assert_eq!(v["stdout"], "hi\n");
        assert_eq!(v["stdout_encoding"], "utf8");
        assert_eq!(v["stderr"], "//4=");
        assert_eq!(v["stderr_encoding"], "base64");
        assert_eq!(v["stderr_truncated"], true);
        assert_eq!(v["time"]["cpu_ms"], 12.0);
        assert_eq!(v["memory_peak_kb"], 2048);
        assert_eq!(v["cgroup_mode"], "v2");
    }

    #[test]
    fn summary_names_status_and_usage() {
        let s = summary(&outcome(Status::Ok));
        assert_eq!(s, "codeexec: ok [cpu 12 ms, wall 30 ms, memory 2048 KiB, stderr truncated]");
    }
}
