//! One cell: the request written to the driver, its output read until the driver's end
//! line, within the cell's time (and a grace for the driver to stop it); a driver that
//! dies or hangs ends the session, and the outcome says so.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::{read, write};
use serde::Deserialize;

use super::Session;
use crate::run::supervise::Capture;
use crate::run::{Cancel, Exceeded, OutputFile, Status};

/// Most bytes of a cell's code.
pub const MAX_CODE_BYTES: usize = 1 << 20;
/// Most bytes of the driver's result line (figures are in it, base64).
const MAX_RESULT_BYTES: usize = 32 << 20;
const CHUNK: usize = 64 * 1024;

/// One cell to run.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The source.
    pub code: String,
    /// Its wall-clock limit.
    pub timeout: Duration,
    /// Fires to end the cell (the session ends with it).
    pub cancel: Option<Cancel>,
}

/// Rich output of a cell (a matplotlib figure).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Display {
    /// Its MIME type (`image/png`).
    pub mime: String,
    /// Its bytes, base64.
    pub data: String,
}

/// What the driver said about a cell.
#[derive(Debug, Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    exit_code: Option<i32>,
    value: Option<String>,
    error: Option<ErrorInfo>,
    #[serde(default)]
    display: Vec<Display>,
}

/// An exception a cell raised.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorInfo {
    /// Its class (`ZeroDivisionError`).
    pub name: String,
    /// Its message.
    pub message: String,
}

/// How a cell went.
#[derive(Debug, Clone)]
pub struct CellOutcome {
    /// As for a run: `ok`, `runtime_error`, `time_limit`, `memory_limit`, `internal_error`...
    pub status: Status,
    /// The limit, for the limit statuses.
    pub exceeded: Option<Exceeded>,
    /// The exit status (Bash cells).
    pub exit_code: Option<i32>,
    /// A sentence for humans, for every status but `ok`.
    pub message: Option<String>,
    /// What the cell wrote.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (tracebacks included).
    pub stderr: Vec<u8>,
    /// stdout went over the output limit.
    pub stdout_truncated: bool,
    /// stderr went over it.
    pub stderr_truncated: bool,
    /// The last expression's value, as text.
    pub value: Option<String>,
    /// An exception the cell raised.
    pub error: Option<ErrorInfo>,
    /// Figures.
    pub display: Vec<Display>,
    /// Files written to `/sandbox/out` during the cell.
    pub artifacts: Vec<OutputFile>,
    /// Some were left out.
    pub artifacts_truncated: bool,
    /// Wall time of the cell.
    pub wall_time: Duration,
    /// CPU time the session used during it.
    pub cpu_time: Duration,
    /// Peak memory of the session so far.
    pub memory_peak_bytes: u64,
    /// Whether the session lives on after it.
    pub alive: bool,
}

impl CellOutcome {
    fn new(status: Status) -> Self {
        CellOutcome {
            status,
            exceeded: None,
            exit_code: None,
            message: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            value: None,
            error: None,
            display: Vec::new(),
            artifacts: Vec::new(),
            artifacts_truncated: false,
            wall_time: Duration::ZERO,
            cpu_time: Duration::ZERO,
            memory_peak_bytes: 0,
            alive: true,
        }
    }

    pub(super) fn internal(message: String) -> Self {
        tracing::error!(%message, "session cell failed inside codeexec");
        CellOutcome { message: Some(message), alive: false, ..CellOutcome::new(Status::InternalError) }
    }

    pub(super) fn ended(message: &str) -> Self {
        CellOutcome { message: Some(message.into()), alive: false, ..CellOutcome::new(Status::RuntimeError) }
    }
}

/// How reading a cell's answer ended.
enum End {
    /// The driver's line.
    Reply(Vec<u8>),
    /// The driver died (or closed its stdout).
    Died,
    /// Past the deadline.
    Hung,
    Cancelled,
    /// Our own failure.
    Failed(String),
}

/// Runs `cell` in `s`: sends it, reads until the driver's answer, decides.
pub(super) fn exchange(s: &mut Session, cell: &Cell) -> CellOutcome {
    if cell.code.len() > MAX_CODE_BYTES {
        return CellOutcome {
            message: Some(format!("the cell has {} bytes; at most {MAX_CODE_BYTES}", cell.code.len())),
            ..CellOutcome::new(Status::RuntimeError)
        };
    }
    let since = SystemTime::now();
    let group = match s.sandbox.group() {
        Ok(g) => g,
        Err(e) => return CellOutcome::internal(e.to_string()),
    };
    let before = group.stats().ok();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let timeout_ms = cell.timeout.as_millis().max(1);
    let mut request = format!("{nonce} {timeout_ms} {}\n", cell.code.len()).into_bytes();
    request.extend_from_slice(cell.code.as_bytes());
    let deadline = Instant::now() + cell.timeout + s.grace();
    let limit = usize::try_from(s.limits.output_bytes).unwrap_or(usize::MAX);
    let mut io = Exchange {
        pidfd: s.sandbox.pid1().pidfd.as_fd(),
        stdout: s.stdout.as_fd(),
        stderr: s.stderr.as_fd(),
        cancel: cell.cancel.as_ref(),
        deadline,
        marker: [b"\x1e".as_slice(), nonce.as_bytes()].concat(),
        out: Capture::default(),
        err: Capture::default(),
        limit,
    };
    let end = match io.send(s.stdin.as_fd(), &request) {
        Ok(()) => io.receive(),
        Err(end) => end,
    };
    let after = group.stats().ok();
    let mut o = decide(s, end, before.as_ref(), after.as_ref());
    o.stdout = io.out.data;
    o.stdout_truncated = io.out.truncated;
    o.stderr = io.err.data;
    o.stderr_truncated = io.err.truncated;
    if o.alive {
        (o.artifacts, o.artifacts_truncated) = s.artifacts(since);
    } else {
        // a driver that hangs or died leaves the session unusable: end it now
        let _ = group.kill();
    }
    o
}

/// The outcome of an end, with the session's accounting before and after.
fn decide(
    s: &Session,
    end: End,
    before: Option<&crate::cgroup::Stats>,
    after: Option<&crate::cgroup::Stats>,
) -> CellOutcome {
    let oom = matches!((before, after), (Some(b), Some(a)) if a.oom_kills > b.oom_kills);
    let mut o = match end {
        End::Reply(line) => from_reply(&line),
        _ if oom => CellOutcome {
            exceeded: Some(Exceeded::Memory),
            message: Some("the session went over its memory limit; its interpreter was killed".into()),
            alive: false,
            ..CellOutcome::new(Status::MemoryLimit)
        },
        End::Died => CellOutcome::ended("the session's interpreter exited during the cell; the session has ended"),
        End::Hung => CellOutcome {
            exceeded: Some(Exceeded::WallTime),
            message: Some(if s.driver.stops_cells() {
                "the cell went over its time limit and could not be stopped; the session was killed".into()
            } else {
                "the cell went over its time limit; this language's cells cannot be stopped alone, so the session was killed".into()
            }),
            alive: false,
            ..CellOutcome::new(Status::TimeLimit)
        },
        End::Cancelled => CellOutcome::ended("the cell was cancelled; the session has ended"),
        End::Failed(m) => CellOutcome::internal(m),
    };
    if let (Some(b), Some(a)) = (before, after) {
        o.cpu_time = a.cpu_usage.saturating_sub(b.cpu_usage);
        o.memory_peak_bytes = a.memory_peak_bytes;
    }
    o
}

/// The outcome the driver's line describes.
fn from_reply(line: &[u8]) -> CellOutcome {
    let reply: Reply = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return CellOutcome::internal(format!("the session's driver answered garbage: {e}")),
    };
    let mut o = CellOutcome::new(Status::Ok);
    (o.status, o.exceeded, o.message) = match reply.status.as_str() {
        "ok" => (Status::Ok, None, None),
        "timeout" => (
            Status::TimeLimit,
            Some(Exceeded::WallTime),
            Some("the cell went over its time limit and was stopped; the session lives on".into()),
        ),
        "memory" => (
            Status::MemoryLimit,
            Some(Exceeded::Memory),
            Some("the cell ran out of memory and was stopped; the session lives on".into()),
        ),
        _ => (Status::RuntimeError, None, Some(error_message(&reply))),
    };
    o.exit_code = reply.exit_code;
    o.value = reply.value;
    o.error = reply.error;
    o.display = reply.display;
    o
}

fn error_message(reply: &Reply) -> String {
    match (&reply.error, reply.exit_code) {
        (Some(e), _) => format!("{}: {}", e.name, e.message),
        (None, Some(code)) => format!("the cell exited with code {code}"),
        (None, None) => "the cell failed".into(),
    }
}

/// The driver's descriptors and what has been read from them.
struct Exchange<'a> {
    pidfd: BorrowedFd<'a>,
    stdout: BorrowedFd<'a>,
    stderr: BorrowedFd<'a>,
    cancel: Option<&'a Cancel>,
    deadline: Instant,
    /// Record separator and nonce: where the cell's output ends.
    marker: Vec<u8>,
    out: Capture,
    err: Capture,
    limit: usize,
}

impl Exchange<'_> {
    fn wait(&self, fd: BorrowedFd<'_>, ev: PollFlags) -> Result<(bool, bool, bool), End> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(End::Hung);
        }
        let mut fds = vec![PollFd::new(fd, ev), PollFd::new(self.pidfd, PollFlags::POLLIN)];
        if let Some(c) = self.cancel {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(End::Failed(format!("poll: {e}"))),
        }
        let ready = |i: usize| fds.get(i).is_some_and(|f| f.any().unwrap_or(false));
        Ok((ready(0), ready(1), ready(2)))
    }

    /// Writes the request while reading whatever the driver writes meanwhile.
    fn send(&mut self, stdin: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), End> {
        while !data.is_empty() {
            let (writable, died, cancelled) = self.wait(stdin, PollFlags::POLLOUT)?;
            if cancelled {
                return Err(End::Cancelled);
            }
            if writable {
                match write(stdin, &data[..data.len().min(CHUNK)]) {
                    Ok(n) => data = &data[n..],
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(_) => return Err(End::Died),
                }
            } else if died {
                return Err(End::Died);
            }
            drain(self.stderr, &mut self.err, self.limit);
        }
        Ok(())
    }

    /// Reads stdout (and stderr) until the marker and the line after it.
    fn receive(&mut self) -> End {
        let mut pending: Vec<u8> = Vec::new();
        let mut reply: Option<Vec<u8>> = None;
        let mut buf = vec![0u8; CHUNK];
        loop {
            if let Some(line) = &mut reply {
                if let Some(nl) = line.iter().position(|&b| b == b'\n') {
                    line.truncate(nl);
                    drain(self.stderr, &mut self.err, self.limit);
                    return End::Reply(std::mem::take(line));
                }
                if line.len() > MAX_RESULT_BYTES {
                    return End::Failed(format!("the driver's answer is over {MAX_RESULT_BYTES} bytes"));
                }
            }
            let (readable, died, cancelled) = match self.wait(self.stdout, PollFlags::POLLIN) {
                Ok(r) => r,
                Err(end) => return end,
            };
            if cancelled {
                return End::Cancelled;
            }
            drain(self.stderr, &mut self.err, self.limit);
            if !readable {
                if died {
                    return End::Died;
                }
                continue;
            }
            let n = match read(self.stdout, &mut buf) {
                Ok(0) => return End::Died,
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return End::Failed(format!("reading the driver's output: {e}")),
            };
            match &mut reply {
                Some(line) => line.extend_from_slice(&buf[..n]),
                None => {
                    pending.extend_from_slice(&buf[..n]);
                    reply = self.split(&mut pending);
                }
            }
        }
    }

    /// Moves the cell's output out of `pending`; once the marker is there, returns what
    /// follows it.
    fn split(&mut self, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
        if let Some(at) = find(pending, &self.marker) {
            self.out.push(&pending[..at], self.limit);
            return Some(pending.split_off(at + self.marker.len()));
        }
        // all but a tail that could be the start of the marker is the cell's output
        let keep = pending.len().saturating_sub(self.marker.len() - 1);
        self.out.push(&pending[..keep], self.limit);
        pending.drain(..keep);
        None
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads what stderr has now.
fn drain(fd: BorrowedFd<'_>, cap: &mut Capture, limit: usize) {
    let mut buf = [0u8; 8192];
    for _ in 0..64 {
        match read(fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                cap.push(&buf[..n], limit);
            }
        }
    }
}
