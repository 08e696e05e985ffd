//! What a run ended as: the status vocabulary, which limit was exceeded, and the outcome
//! record every run produces, whatever the program did.

use std::time::Duration;

/// What a run ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0 and no limit hit.
    Ok,
    /// A non-zero exit code (or the command could not be executed).
    RuntimeError,
    /// Killed by a signal that no limit explains.
    Signaled,
    /// CPU or wall time limit (see [`Exceeded`]).
    TimeLimit,
    /// The OOM killer fired in the run's cgroup.
    MemoryLimit,
    /// A fork or thread creation failed on the process limit.
    ProcessLimit,
    /// stdout or stderr went over the output limit.
    OutputLimit,
    /// A file write went over the file size limit (SIGXFSZ).
    FileSizeLimit,
    /// Killed by the seccomp policy (SIGSYS).
    BlockedSyscall,
    /// codeexec failed; the message says how.
    InternalError,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 10] = [
        Status::Ok,
        Status::RuntimeError,
        Status::Signaled,
        Status::TimeLimit,
        Status::MemoryLimit,
        Status::ProcessLimit,
        Status::OutputLimit,
        Status::FileSizeLimit,
        Status::BlockedSyscall,
        Status::InternalError,
    ];

    /// The status with this wire name.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The wire name (`time_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::Signaled => "signaled",
            Status::TimeLimit => "time_limit",
            Status::MemoryLimit => "memory_limit",
            Status::ProcessLimit => "process_limit",
            Status::OutputLimit => "output_limit",
            Status::FileSizeLimit => "file_size_limit",
            Status::BlockedSyscall => "blocked_syscall",
            Status::InternalError => "internal_error",
        }
    }
}

/// Which limit a run went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// CPU time.
    CpuTime,
    /// Wall-clock time.
    WallTime,
    /// Memory.
    Memory,
    /// Processes.
    Processes,
    /// Output.
    Output,
    /// File size.
    FileSize,
}

impl Exceeded {
    /// Every limit.
    pub const ALL: [Exceeded; 6] = [
        Exceeded::CpuTime,
        Exceeded::WallTime,
        Exceeded::Memory,
        Exceeded::Processes,
        Exceeded::Output,
        Exceeded::FileSize,
    ];

    /// The limit with this wire name.
    pub fn parse(name: &str) -> Option<Exceeded> {
        Exceeded::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The wire name (`cpu_time`).
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::CpuTime => "cpu_time",
            Exceeded::WallTime => "wall_time",
            Exceeded::Memory => "memory",
            Exceeded::Processes => "processes",
            Exceeded::Output => "output",
            Exceeded::FileSize => "file_size",
        }
    }
}

/// The result of a run, whatever the program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The verdict.
    pub status: Status,
    /// The limit that was exceeded, for the limit statuses.
    pub exceeded: Option<Exceeded>,
    /// The exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// A sentence for humans, for every status but `ok`.
    pub message: Option<String>,
    /// Captured stdout (at most the output limit).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the output limit).
    pub stderr: Vec<u8>,
    /// stdout had more than was captured.
    pub stdout_truncated: bool,
    /// stderr had more than was captured.
    pub stderr_truncated: bool,
    /// CPU time of the whole process tree.
    pub cpu_time: Duration,
    /// Wall time from the program's start to its end.
    pub wall_time: Duration,
    /// Peak memory of the run's cgroup.
    pub memory_peak_bytes: u64,
    /// What `/sandbox` held at the end, when the request asked for it (in path order).
    pub files: Vec<OutputFile>,
    /// Some of those were left out (a cap was reached).
    pub files_truncated: bool,
}

/// One entry of `/sandbox` after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to `/sandbox`.
    pub path: String,
    /// A file's bytes or a symlink's target.
    pub content: FileContent,
}

pub use crate::sandbox::CollectedFile as FileContent;

impl RunOutcome {
    pub(super) fn internal(message: String) -> Self {
        tracing::error!(%message, "run failed inside codeexec");
        RunOutcome {
            status: Status::InternalError,
            exceeded: None,
            exit_code: None,
            signal: None,
            message: Some(message),
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_time: Duration::ZERO,
            wall_time: Duration::ZERO,
            memory_peak_bytes: 0,
            files: Vec::new(),
            files_truncated: false,
        }
    }
}
