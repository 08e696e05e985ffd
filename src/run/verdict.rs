//! From what was observed to what the run's status is. The order of the checks is the
//! contract: our own failures first; then limits the kernel enforced (OOM, pids), which
//! explain whatever happened to the program afterwards; then limits we enforced; then how
//! the program itself ended.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::supervise::{Kill, Observed};
use super::{Exceeded, RunOutcome, Status};
use crate::cgroup::Stats;
use crate::limit::{ByteSize, Limits};
use crate::sandbox::{ExitStatus, Report};

/// Decides the outcome of a run that was spawned.
pub(super) fn decide(obs: Observed, stats: Stats, limits: &Limits, command: &str) -> RunOutcome {
    let cpu = stats.cpu_usage.saturating_sub(obs.cpu_base);
    let wall = match &obs.report {
        Some(Report::Exited { wall_us, .. }) => Duration::from_micros(*wall_us),
        _ => obs.wall,
    };
    let exit = match &obs.report {
        Some(Report::Exited { status, .. }) => Some(*status),
        _ => None,
    };
    let (status, exceeded, message) = judge(&obs, &stats, limits, cpu, wall, exit, command);
    let (exit_code, signal) = match (exit, &obs.report) {
        (Some(ExitStatus::Code(c)), _) => (Some(c), None),
        (Some(ExitStatus::Signal(s)), _) => (None, Some(s)),
        (None, Some(Report::ExecFailed { errno })) => (Some(exec_exit_code(*errno)), None),
        // killed by us, or by the OOM killer together with PID 1
        (None, _) if obs.started => (None, Some(Signal::SIGKILL as i32)),
        _ => (None, None),
    };
    RunOutcome {
        status,
        exceeded,
        exit_code,
        signal,
        message,
        stdout: obs.stdout.data,
        stderr: obs.stderr.data,
        stdout_truncated: obs.stdout.truncated,
        stderr_truncated: obs.stderr.truncated,
        cpu_time: cpu,
        wall_time: wall,
        memory_peak_bytes: stats.memory_peak_bytes,
        files: Vec::new(),
        files_truncated: false,
    }
}

type Verdict = (Status, Option<Exceeded>, Option<String>);

fn judge(
    obs: &Observed,
    stats: &Stats,
    limits: &Limits,
    cpu: Duration,
    wall: Duration,
    exit: Option<ExitStatus>,
    command: &str,
) -> Verdict {
    let internal = |m: String| (Status::InternalError, None, Some(m));
    match (&obs.killed, &obs.report) {
        (Some(Kill::Interrupted), _) => return internal("interrupted by a signal to codeexec".into()),
        (Some(Kill::Cancelled), _) => {
            return internal("cancelled: the client went away or codeexec is stopping".into());
        }
        (_, Some(Report::SetupFailed { step, errno, detail })) => {
            let errno = errno.map(|e| format!(": {}", nix::errno::Errno::from_raw(e).desc())).unwrap_or_default();
            let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
            return internal(format!("sandbox setup failed at step \"{step}\"{detail}{errno}"));
        }
        (Some(Kill::SetupTimeout), _) => return internal("the sandbox's setup did not finish in time".into()),
        (_, Some(Report::ExecFailed { errno })) => {
            let why = nix::errno::Errno::from_raw(*errno).desc();
            return (Status::RuntimeError, None, Some(format!("cannot execute {command:?}: {why}")));
        }
        // Not `!obs.started`: a run we killed for a limit right after releasing it may
        // never have said `Started`, and it still hit that limit.
        _ => {}
    }
    let limit = |s: Status, e: Exceeded, m: String| (s, Some(e), Some(m));
    if stats.oom_kills > 0 {
        let m = format!("memory limit of {} exceeded: the OOM killer ended the program", ByteSize(limits.memory_bytes));
        return limit(Status::MemoryLimit, Exceeded::Memory, m);
    }
    if stats.pids_max_events > 0 {
        let m = format!("process limit of {} reached: a fork or thread creation failed", limits.processes);
        return limit(Status::ProcessLimit, Exceeded::Processes, m);
    }
    // SIGXCPU alone proves nothing (a program can send it to itself): the cgroup's CPU
    // time must be over the limit (RLIMIT_CPU, our backstop, fires only past it)
    if obs.killed == Some(Kill::CpuTime) || cpu >= limits.cpu_time {
        let m = format!("cpu time limit of {} ms exceeded", limits.cpu_time.as_millis());
        return limit(Status::TimeLimit, Exceeded::CpuTime, m);
    }
    if obs.killed == Some(Kill::WallTime) || wall > limits.wall_time {
        let m = format!("wall time limit of {} ms exceeded", limits.wall_time.as_millis());
        return limit(Status::TimeLimit, Exceeded::WallTime, m);
    }
    if let Some(Kill::Output { stderr }) = obs.killed {
        let stream = if stderr { "stderr" } else { "stdout" };
        let m = format!("output limit of {} exceeded on {stream}", ByteSize(limits.output_bytes));
        return limit(Status::OutputLimit, Exceeded::Output, m);
    }
    match exit {
        Some(ExitStatus::Code(0)) => (Status::Ok, None, None),
        Some(ExitStatus::Code(c)) => (Status::RuntimeError, None, Some(format!("exited with code {c}"))),
        Some(ExitStatus::Signal(s)) if s == Signal::SIGXFSZ as i32 => {
            let m = format!("file size limit of {} exceeded (SIGXFSZ)", ByteSize(limits.file_size_bytes));
            limit(Status::FileSizeLimit, Exceeded::FileSize, m)
        }
        Some(ExitStatus::Signal(s)) if s == Signal::SIGSYS as i32 => (
            Status::BlockedSyscall,
            None,
            Some("killed by the seccomp policy for a forbidden system call (SIGSYS)".into()),
        ),
        Some(ExitStatus::Signal(s)) => (Status::Signaled, None, Some(format!("killed by {}", signal_name(s)))),
        None if obs.started => internal("the sandbox's PID 1 died without reporting the program's exit".into()),
        None => internal("the sandbox's PID 1 exited before the program started".into()),
    }
}

/// `SIGSEGV` for 11; `signal 64` for what nix does not name.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map(|s| s.as_str().to_owned()).unwrap_or_else(|_| format!("signal {sig}"))
}

/// What a shell would exit with: 127 for a command not found, 126 for one not executable.
fn exec_exit_code(errno: i32) -> i32 {
    if errno == libc::ENOENT || errno == libc::ENOTDIR { 127 } else { 126 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::supervise::Capture;

    fn exited(status: ExitStatus, wall_ms: u64) -> Observed {
        Observed {
            started: true,
            report: Some(Report::Exited { status, wall_us: wall_ms * 1000, files: None }),
            ..Observed::default()
        }
    }

    fn stats(cpu_ms: u64) -> Stats {
        Stats { cpu_usage: Duration::from_millis(cpu_ms), memory_peak_bytes: 1 << 20, oom_kills: 0, pids_max_events: 0 }
    }

    #[test]
    fn exit_codes_and_signals() {
        let l = Limits::default();
        let o = decide(exited(ExitStatus::Code(0), 5), stats(3), &l, "x");
        assert_eq!((o.status, o.exit_code, o.signal), (Status::Ok, Some(0), None));
        assert_eq!(o.wall_time, Duration::from_millis(5));
        let o = decide(exited(ExitStatus::Code(3), 5), stats(3), &l, "x");
        assert_eq!((o.status, o.exit_code), (Status::RuntimeError, Some(3)));
        let o = decide(exited(ExitStatus::Signal(11), 5), stats(3), &l, "x");
        assert_eq!((o.status, o.signal), (Status::Signaled, Some(11)));
        assert_eq!(o.message.as_deref(), Some("killed by SIGSEGV"));
        let o = decide(exited(ExitStatus::Signal(31), 5), stats(3), &l, "x");
        assert_eq!(o.status, Status::BlockedSyscall);
        let o = decide(exited(ExitStatus::Signal(25), 5), stats(3), &l, "x");
        assert_eq!((o.status, o.exceeded), (Status::FileSizeLimit, Some(Exceeded::FileSize)));
    }

    #[test]
    fn kernel_limits_explain_what_followed() {
        let l = Limits::default();
        let mut s = stats(3);
        s.oom_kills = 1;
        let o = decide(exited(ExitStatus::Signal(9), 5), s, &l, "x");
        assert_eq!((o.status, o.exceeded), (Status::MemoryLimit, Some(Exceeded::Memory)));
        let mut s = stats(3);
        s.pids_max_events = 40;
        let mut obs = exited(ExitStatus::Code(0), 5);
        obs.killed = Some(Kill::WallTime);
        assert_eq!(decide(obs, s, &l, "x").status, Status::ProcessLimit);
    }

    #[test]
    fn time_limits_say_which() {
        let l = Limits { cpu_time: Duration::from_secs(1), ..Limits::default() };
        let mut obs = Observed { started: true, killed: Some(Kill::CpuTime), ..Observed::default() };
        obs.wall = Duration::from_millis(1100);
        let o = decide(obs, stats(1001), &l, "x");
        assert_eq!((o.status, o.exceeded, o.signal), (Status::TimeLimit, Some(Exceeded::CpuTime), Some(9)));
        // finished on its own, but over the limit: still a time limit
        let o = decide(exited(ExitStatus::Code(0), 1200), stats(1050), &l, "x");
        assert_eq!(o.exceeded, Some(Exceeded::CpuTime));
        let obs = Observed { started: true, killed: Some(Kill::WallTime), ..Observed::default() };
        let o = decide(obs, stats(0), &l, "x");
        assert_eq!(o.exceeded, Some(Exceeded::WallTime));
    }

    #[test]
    fn limits_we_enforced_hold_even_before_started() {
        // killed for output or wall time before PID 1's `Started` reached us
        let obs = Observed { killed: Some(Kill::Output { stderr: false }), ..Observed::default() };
        assert_eq!(decide(obs, stats(1), &Limits::default(), "x").status, Status::OutputLimit);
        let obs = Observed { killed: Some(Kill::WallTime), ..Observed::default() };
        assert_eq!(decide(obs, stats(0), &Limits::default(), "x").exceeded, Some(Exceeded::WallTime));
        // but dying on its own before starting is ours
        let o = decide(Observed::default(), stats(0), &Limits::default(), "x");
        assert_eq!(o.status, Status::InternalError);
    }

    #[test]
    fn a_self_sent_sigxcpu_is_just_a_signal() {
        let o = decide(exited(ExitStatus::Signal(24), 5), stats(2), &Limits::default(), "x");
        assert_eq!((o.status, o.signal), (Status::Signaled, Some(24)));
        let l = Limits { cpu_time: Duration::from_secs(1), ..Limits::default() };
        let o = decide(exited(ExitStatus::Signal(24), 2100), stats(2000), &l, "x");
        assert_eq!(o.exceeded, Some(Exceeded::CpuTime), "with the CPU time to show for it");
    }

    #[test]
    fn output_limit_keeps_the_captured_bytes() {
        let mut obs = Observed { started: true, killed: Some(Kill::Output { stderr: false }), ..Observed::default() };
        obs.stdout = Capture { data: b"yyyy".to_vec(), truncated: true };
        let o = decide(obs, stats(1), &Limits::default(), "x");
        assert_eq!((o.status, o.stdout_truncated, o.stdout.as_slice()), (Status::OutputLimit, true, &b"yyyy"[..]));
    }

    #[test]
    fn our_failures_are_internal_errors() {
        let obs = Observed {
            report: Some(Report::SetupFailed { step: "mount proc".into(), errno: Some(1), detail: String::new() }),
            ..Observed::default()
        };
        let o = decide(obs, stats(0), &Limits::default(), "x");
        assert_eq!(o.status, Status::InternalError);
        assert!(o.message.unwrap().contains("mount proc"));
        let obs = Observed { report: Some(Report::ExecFailed { errno: libc::ENOENT }), ..Observed::default() };
        let o = decide(obs, stats(0), &Limits::default(), "nope");
        assert_eq!((o.status, o.exit_code), (Status::RuntimeError, Some(127)));
    }
}
