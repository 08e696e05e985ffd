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
//! | 10 | `syntax_error` (with `--language`: the program never ran) |
//! | 11 | `compile_error` (with `--language`: the program never ran) |
//! | 128+N | `signaled` with signal N (as a shell reports it) |

use base64::Engine as _;
use serde_json::{Value, json};

use crate::pipeline::Verdict;
use crate::run::{FileContent, OutputFile, RunOutcome, Status, signal_name};

/// Exit code for bad usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for codeexec's own failures.
pub const EXIT_INTERNAL: u8 = 3;

/// The process exit code for an outcome.
pub fn exit_code(o: &RunOutcome) -> u8 {
    verdict_exit_code(Verdict::Run(o.status), o.signal)
}

/// The process exit code for a verdict (`signal`: the decisive stage's).
pub fn verdict_exit_code(v: Verdict, signal: Option<i32>) -> u8 {
    match v {
        Verdict::SyntaxError => 10,
        Verdict::CompileError => 11,
        Verdict::Run(Status::Ok) => 0,
        Verdict::Run(Status::RuntimeError) => 1,
        Verdict::Run(Status::InternalError) => EXIT_INTERNAL,
        Verdict::Run(Status::TimeLimit) => 4,
        Verdict::Run(Status::MemoryLimit) => 5,
        Verdict::Run(Status::ProcessLimit) => 6,
        Verdict::Run(Status::OutputLimit) => 7,
        Verdict::Run(Status::FileSizeLimit) => 8,
        Verdict::Run(Status::BlockedSyscall) => 9,
        Verdict::Run(Status::Signaled) => signal.and_then(|s| u8::try_from(128 + s).ok()).unwrap_or(128),
    }
}

/// The one-line summary printed on stderr after the program's output.
pub fn summary(o: &RunOutcome) -> String {
    verdict_summary(Verdict::Run(o.status), o.message.as_deref(), "run", o)
}

/// The summary of a request through its stages: the verdict, its message, and the
/// figures of the stage that decided (named unless it is the run).
pub fn verdict_summary(v: Verdict, message: Option<&str>, stage: &str, o: &RunOutcome) -> String {
    let mut s = format!("codeexec: {}", v.as_str());
    if let Some(m) = message {
        s.push_str(": ");
        s.push_str(m);
    }
    let label = if stage == "run" { String::new() } else { format!("{stage}: ") };
    s.push_str(&format!(
        " [{label}cpu {} ms, wall {} ms, memory {} KiB",
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
    let mut v = json!({
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
    });
    if !o.files.is_empty() || o.files_truncated {
        v["files"] = o.files.iter().map(file_json).collect();
        v["files_truncated"] = json!(o.files_truncated);
    }
    v
}

/// One file of `/sandbox`: its bytes (UTF-8 text or base64) or a symlink's target.
pub fn file_json(f: &OutputFile) -> Value {
    match &f.content {
        FileContent::File { bytes, executable } => {
            let (content, encoding) = text(bytes);
            json!({"name": f.path, "size": bytes.len(), "executable": executable, "content": content, "encoding": encoding})
        }
        FileContent::Symlink(target) => json!({"name": f.path, "symlink": target}),
    }
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
            files: Vec::new(),
            files_truncated: false,
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
