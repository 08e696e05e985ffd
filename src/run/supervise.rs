//! Watching one run: a single `poll` loop over PID 1's pidfd, its report channel, the
//! program's stdout and stderr, and its stdin, with two timers (the wall-clock deadline and
//! the next CPU-time check). Nothing here blocks on the program: full pipes are drained,
//! unread stdin is dropped, and any limit ends in SIGKILL to PID 1 (and `cgroup.kill`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::{read, write};

use super::Cancel;
use super::live::{Event, Live};
use crate::cgroup::Cgroup;
use crate::limit::Limits;
use crate::sandbox::{self, Channel, Report, Spawned};

/// How long the program process may take from its start request to `execve`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest and longest pause between CPU-time checks.
const CPU_CHECK_MIN: Duration = Duration::from_millis(2);
const CPU_CHECK_MAX: Duration = Duration::from_millis(250);
const CHUNK: usize = 64 * 1024;
/// Reads of one stream per turn of the loop (1 MiB).
const DRAIN_READS: usize = 16;

/// Why we killed the run, the first time we did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kill {
    CpuTime,
    WallTime,
    Output {
        stderr: bool,
    },
    SetupTimeout,
    Interrupted,
    /// The caller cancelled the run (its client went away, the daemon is stopping).
    Cancelled,
}

/// One captured stream: the first `limit` bytes, and whether more came.
#[derive(Debug, Default)]
pub(super) struct Capture {
    pub(super) data: Vec<u8>,
    pub(super) truncated: bool,
}

impl Capture {
    /// Keeps what fits; returns true when this chunk went over the limit.
    fn push(&mut self, chunk: &[u8], limit: usize) -> bool {
        let room = limit.saturating_sub(self.data.len());
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            self.truncated = true;
        }
        self.truncated
    }
}

/// Everything the loop saw.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// PID 1 confirmed the program's `execve` (`Started`).
    pub(super) started: bool,
    /// The report that says how the run ended (`Exited`, `ExecFailed`, `SetupFailed`).
    pub(super) report: Option<Report>,
    /// Descriptors that came with it (the collected files' memfd).
    pub(super) attached: Vec<OwnedFd>,
    pub(super) killed: Option<Kill>,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    /// Wall time of the program as we saw it (used when PID 1 could not report its own).
    pub(super) wall: Duration,
    /// Cgroup CPU usage when the program was released (the setup is not the program's).
    pub(super) cpu_base: Duration,
}

/// Our ends of the program's standard streams.
#[derive(Debug)]
pub(super) struct Streams<'a> {
    pub(super) stdin: Option<OwnedFd>,
    pub(super) stdin_data: &'a [u8],
    /// None when handed to a relay.
    pub(super) stdout: Option<OwnedFd>,
    pub(super) stderr: OwnedFd,
}

/// What the loop watches, and the limits it enforces.
#[derive(Debug)]
pub(super) struct Watch<'a> {
    pub(super) pid1: &'a Spawned,
    pub(super) chan: &'a Channel,
    pub(super) cgroup: &'a Cgroup,
    pub(super) limits: &'a Limits,
    /// Cores the run can use at most: bounds how fast CPU time can grow.
    pub(super) cores: f64,
    /// When the start request was sent: the wall clock runs from here.
    pub(super) released: Instant,
    /// The cgroup's CPU usage then (the setup is not the program's).
    pub(super) cpu_base: Duration,
}

struct Loop<'a> {
    w: &'a Watch<'a>,
    obs: Observed,
    next_cpu_check: Instant,
    /// Where a live run's output goes, and its stdin and signals come from.
    live: Option<&'a Live>,
    /// The program's pidfd (from `Started`): a live run's signals go there.
    program: Option<OwnedFd>,
    /// Signals that came before the program had started.
    signals: Vec<nix::sys::signal::Signal>,
}

/// Watches a released program until the run is over (see the loop's comment), or until
/// `cancel` fires. With `live`, output is forwarded as it is read, and stdin and signals
/// come from the caller while the program runs.
pub(super) fn watch(w: &Watch<'_>, streams: Streams<'_>, cancel: Option<&Cancel>, live: Option<&Live>) -> Observed {
    let obs = Observed { cpu_base: w.cpu_base, ..Observed::default() };
    let mut l = Loop { w, obs, next_cpu_check: w.released, live, program: None, signals: Vec::new() };
    l.next_cpu_check = w.released + l.cpu_interval(w.limits.cpu_time);
    let (pid1, chan, limits) = (w.pid1, w.chan, w.limits);
    let Streams { mut stdin, stdin_data, stdout, stderr } = streams;
    let (mut stdout, mut stderr) = (stdout, Some(stderr));
    let (mut alive, mut chan_open) = (true, true);
    let mut feed =
        Feed { fixed: stdin_data, extra: Vec::new(), written: 0, more: live.is_some_and(Live::interactive_stdin) };
    if feed.done() {
        stdin = None;
    }
    let out_limit = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
    // Done when PID 1 has said how the run ended (it kills and reaps everything else
    // first) or is gone, and both output pipes are at EOF; PID 1's own exit and the
    // namespaces' teardown need not be waited for.
    loop {
        let finished = l.obs.report.is_some();
        if (finished || !alive) && stdout.is_none() && stderr.is_none() {
            break;
        }
        let waiting = alive && !finished;
        if !waiting {
            stdin = None;
        }
        let timeout = l.timeout(waiting);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        let i_pid = add(&mut fds, waiting, Some(pid1.pidfd.as_fd()), PollFlags::POLLIN);
        let i_chan = add(&mut fds, waiting && chan_open, Some(chan.as_fd()), PollFlags::POLLIN);
        let i_out = add(&mut fds, true, stdout.as_ref().map(AsFd::as_fd), PollFlags::POLLIN);
        let i_err = add(&mut fds, true, stderr.as_ref().map(AsFd::as_fd), PollFlags::POLLIN);
        let i_in = add(&mut fds, waiting && feed.has_bytes(), stdin.as_ref().map(AsFd::as_fd), PollFlags::POLLOUT);
        let i_cancel = add(&mut fds, waiting, cancel.map(Cancel::as_fd), PollFlags::POLLIN);
        let i_wake = add(&mut fds, waiting, live.and_then(Live::wake_fd), PollFlags::POLLIN);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                tracing::error!(?e, "poll failed; killing the run");
                l.kill(Kill::SetupTimeout);
                alive = false;
            }
        }
        let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].any().unwrap_or(false));
        let (pid_ready, chan_ready, out_ready, err_ready, in_ready) =
            (ready(i_pid), ready(i_chan), ready(i_out), ready(i_err), ready(i_in));
        let (cancelled, woken) = (ready(i_cancel), ready(i_wake));
        drop(fds);
        if chan_ready {
            chan_open = l.read_reports(chan);
        }
        if out_ready && l.drain(&mut stdout, false, out_limit) {
            l.kill(Kill::Output { stderr: false });
        }
        if err_ready && l.drain(&mut stderr, true, out_limit) {
            l.kill(Kill::Output { stderr: true });
        }
        if woken {
            l.take_inbox(&mut feed);
            if feed.done() {
                stdin = None;
            }
        }
        l.send_signals();
        if in_ready {
            feed.write(&mut stdin);
        }
        if cancelled {
            l.kill(Kill::Cancelled);
        }
        if pid_ready {
            alive = false;
            stdin = None;
            l.obs.wall = l.w.released.elapsed();
        }
        l.check_limits(alive && l.obs.report.is_none());
    }
    l.obs
}

/// Adds `fd` to the poll set when `on`; returns its index.
fn add<'a>(fds: &mut Vec<PollFd<'a>>, on: bool, fd: Option<BorrowedFd<'a>>, ev: PollFlags) -> Option<usize> {
    let fd = fd.filter(|_| on)?;
    fds.push(PollFd::new(fd, ev));
    Some(fds.len() - 1)
}

impl Loop<'_> {
    fn timeout(&self, alive: bool) -> PollTimeout {
        if !alive {
            // only draining is left; PID 1's death ended every writer
            return PollTimeout::from(1000u16);
        }
        let now = Instant::now();
        let mut deadline = (self.w.released + self.w.limits.wall_time).min(self.next_cpu_check);
        if !self.obs.started {
            deadline = deadline.min(self.w.released + SETUP_TIMEOUT);
        }
        // a signal (EINTR) wakes us early; the cap keeps interrupt checks timely regardless
        let wait = deadline.saturating_duration_since(now).min(CPU_CHECK_MAX);
        let ms = u16::try_from(wait.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        PollTimeout::from(ms)
    }

    fn read_reports(&mut self, chan: &Channel) -> bool {
        loop {
            match chan.try_recv() {
                Ok(Some((Report::Started, fds))) => {
                    self.obs.started = true;
                    self.program = fds.into_iter().next();
                }
                Ok(Some((Report::Ready | Report::Resized, _))) => {}
                Ok(Some((r, fds))) => {
                    self.obs.report = Some(r);
                    self.obs.attached = fds;
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Reads what is there, at most `DRAIN_READS` chunks, so a program that writes faster
    /// than we read cannot keep us from our timers; returns true when the stream went over
    /// the limit just now.
    fn drain(&mut self, stream: &mut Option<OwnedFd>, is_stderr: bool, limit: usize) -> bool {
        let Some(fd) = stream.as_ref() else { return false };
        let cap = if is_stderr { &mut self.obs.stderr } else { &mut self.obs.stdout };
        let was = cap.truncated;
        let mut buf = [0u8; CHUNK];
        for _ in 0..DRAIN_READS {
            match read(fd, &mut buf) {
                Ok(0) => {
                    *stream = None;
                    break;
                }
                Ok(n) => {
                    let before = cap.data.len();
                    cap.push(&buf[..n], limit);
                    if let Some(live) = self.live.filter(|_| cap.data.len() > before) {
                        live.send(Event::Output { stderr: is_stderr, data: cap.data[before..].to_vec() });
                    }
                    if n < CHUNK {
                        break;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(?e, "reading the program's output failed");
                    *stream = None;
                    break;
                }
            }
        }
        cap.truncated && !was
    }

    /// What the caller sent: stdin into `feed`, signals to send.
    fn take_inbox(&mut self, feed: &mut Feed<'_>) {
        let Some(live) = self.live else { return };
        let (data, closed, signals) = live.take();
        feed.extra.extend_from_slice(&data);
        if closed {
            feed.more = false;
        }
        self.signals.extend(signals);
    }

    /// Sends the caller's signals to the program, once it has started.
    fn send_signals(&mut self) {
        let Some(program) = &self.program else { return };
        for signal in self.signals.drain(..) {
            tracing::debug!(%signal, "signal from the caller");
            if let Err(e) = sandbox::signal(program.as_fd(), signal) {
                tracing::warn!(error = %e, "signalling the program failed");
            }
        }
    }

    fn check_limits(&mut self, alive: bool) {
        if !alive {
            return;
        }
        if sandbox::interrupted() {
            return self.kill(Kill::Interrupted);
        }
        let now = Instant::now();
        if !self.obs.started && now >= self.w.released + SETUP_TIMEOUT {
            return self.kill(Kill::SetupTimeout);
        }
        if now >= self.w.released + self.w.limits.wall_time {
            return self.kill(Kill::WallTime);
        }
        if now >= self.next_cpu_check {
            let used = self.w.cgroup.cpu_usage().unwrap_or_default().saturating_sub(self.obs.cpu_base);
            if used >= self.w.limits.cpu_time {
                return self.kill(Kill::CpuTime);
            }
            self.next_cpu_check = now + self.cpu_interval(self.w.limits.cpu_time - used);
        }
    }

    /// CPU time grows at most `cores` times as fast as wall time, so the limit cannot be
    /// reached before `remaining / cores` has passed: check no sooner.
    fn cpu_interval(&self, remaining: Duration) -> Duration {
        remaining.div_f64(self.w.cores).clamp(CPU_CHECK_MIN, CPU_CHECK_MAX)
    }

    fn kill(&mut self, why: Kill) {
        if self.obs.killed.is_none() {
            self.obs.killed = Some(why);
            tracing::debug!(?why, "killing the run");
        }
        if let Err(e) = sandbox::kill(self.w.pid1.pidfd.as_fd()) {
            tracing::error!(error = %e, "killing PID 1 failed");
        }
        // belt and braces: nothing in the cgroup outlives the run
        if let Err(e) = self.w.cgroup.kill() {
            tracing::warn!(error = %e, "cgroup kill failed");
        }
    }
}

/// The program's stdin: the request's bytes, then (a live run) what the caller sends
/// until it closes stdin.
struct Feed<'a> {
    fixed: &'a [u8],
    extra: Vec<u8>,
    /// Bytes written of `fixed` then `extra`.
    written: usize,
    /// More may come from the caller.
    more: bool,
}

impl Feed<'_> {
    fn total(&self) -> usize {
        self.fixed.len() + self.extra.len()
    }

    /// Bytes wait to be written.
    fn has_bytes(&self) -> bool {
        self.written < self.total()
    }

    /// All is written and no more will come: stdin can be closed.
    fn done(&self) -> bool {
        !self.has_bytes() && !self.more
    }

    /// The next bytes to write, at most a chunk.
    fn next(&self) -> &[u8] {
        let (data, at) = if self.written < self.fixed.len() {
            (self.fixed, self.written)
        } else {
            (self.extra.as_slice(), self.written - self.fixed.len())
        };
        &data[at..data.len().min(at + CHUNK)]
    }

    /// Writes what the pipe takes; closes our end when all is written and no more will
    /// come, or when the reader is gone.
    fn write(&mut self, stdin: &mut Option<OwnedFd>) {
        let Some(fd) = stdin.as_ref() else { return };
        while self.has_bytes() {
            match write(fd, self.next()) {
                Ok(n) => self.written += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                // EPIPE: the program closed stdin or exited; the rest is dropped
                Err(_) => {
                    *stdin = None;
                    self.more = false;
                    return;
                }
            }
        }
        if self.done() {
            *stdin = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_bytes_and_flags_the_rest() {
        let mut c = Capture::default();
        assert!(!c.push(b"hello ", 8));
        assert!(c.push(b"world", 8));
        assert_eq!(c.data, b"hello wo");
        assert!(c.truncated);
        assert!(c.push(b"more", 8));
        assert_eq!(c.data.len(), 8);
    }
}
