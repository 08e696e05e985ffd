//! Live runs: a run whose output is handed over as it comes, and whose stdin and signals
//! come from its caller while it runs. It is an ordinary run (`Runner::run`) whose request
//! carries a [`Live`]: the same supervision loop reads the program's pipes and forwards
//! each chunk it keeps (so at most the output limit of each stream is ever queued), writes
//! the stdin its caller sends, and sends the caller's signals to the program through the
//! pidfd its PID 1 reported. The outcome is the same as any run's.
//!
//! The caller keeps a [`Control`] (stdin, its close, signals: queued in an inbox and
//! announced through an eventfd the loop polls) and the receiving end of the events.

use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{RunError, sys};

/// What a live run tells its caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stage's sandbox is about to start (`started`) or is over.
    Stage {
        /// `compile` or `run`.
        stage: &'static str,
        /// Started, or ended.
        started: bool,
    },
    /// Bytes the program wrote (only what the output limit keeps).
    Output {
        /// Stderr, or stdout.
        stderr: bool,
        /// The bytes, as read.
        data: Vec<u8>,
    },
}

/// The caller's messages, waiting for the loop.
#[derive(Debug, Default)]
struct Inbox {
    stdin: Vec<u8>,
    stdin_closed: bool,
    signals: Vec<Signal>,
    /// Bytes of stdin accepted so far (the caller's bound).
    stdin_total: u64,
}

#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    /// Written on every message: the loop polls it.
    wake: EventFd,
}

/// The run's side, carried in its [`super::RunRequest`]: where its events go and, for an
/// interactive run, where its stdin and signals come from.
#[derive(Debug, Clone)]
pub struct Live {
    events: UnboundedSender<Event>,
    /// Absent: output only (stdin is the request's, signals cannot come).
    shared: Option<Arc<Shared>>,
    stage: &'static str,
    /// This stage takes the inbox's stdin (the program, not its compiler).
    takes_stdin: bool,
}

/// The caller's side of an interactive run: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
    max_stdin: u64,
}

/// Why a control message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// More stdin than a run may take.
    #[error("stdin over the limit of {0} bytes")]
    StdinTooLarge(u64),
    /// Stdin after it was closed.
    #[error("stdin is closed")]
    StdinClosed,
}

impl Live {
    /// A live run that streams its output; its stdin is the request's.
    pub fn output() -> (Live, UnboundedReceiver<Event>) {
        let (events, rx) = unbounded_channel();
        (Live { events, shared: None, stage: "run", takes_stdin: false }, rx)
    }

    /// An interactive run: output streamed, and stdin (after the request's own, at most
    /// `max_stdin` bytes in all) and signals from the returned [`Control`].
    pub fn interactive(max_stdin: u64) -> Result<(Live, Control, UnboundedReceiver<Event>), RunError> {
        let wake =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(sys("eventfd"))?;
        let shared = Arc::new(Shared { inbox: Mutex::default(), wake });
        let (events, rx) = unbounded_channel();
        let live = Live { events, shared: Some(Arc::clone(&shared)), stage: "run", takes_stdin: true };
        Ok((live, Control { shared, max_stdin }, rx))
    }

    /// The same channel for one stage: `run` takes the caller's stdin, others do not (it
    /// waits for the program).
    pub fn stage(&self, stage: &'static str) -> Live {
        Live { stage, takes_stdin: stage == "run", ..self.clone() }
    }

    /// Whether stdin stays open for the caller's data.
    pub(super) fn interactive_stdin(&self) -> bool {
        self.takes_stdin && self.shared.is_some()
    }

    /// The eventfd to poll for the caller's messages.
    pub(super) fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.shared.as_ref().map(|s| std::os::fd::AsFd::as_fd(&s.wake))
    }

    /// Takes what waits for this stage: stdin (if it takes it), whether stdin is closed,
    /// and the signals.
    pub(super) fn take(&self) -> (Vec<u8>, bool, Vec<Signal>) {
        let Some(shared) = &self.shared else { return (Vec::new(), true, Vec::new()) };
        let _ = shared.wake.read();
        let mut inbox = shared.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        let signals = std::mem::take(&mut inbox.signals);
        if !self.takes_stdin {
            return (Vec::new(), false, signals);
        }
        (std::mem::take(&mut inbox.stdin), inbox.stdin_closed, signals)
    }

    /// Tells the caller (who may be gone: then nothing happens).
    pub(super) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub(super) fn stage_event(&self, started: bool) {
        self.send(Event::Stage { stage: self.stage, started });
    }
}

impl Control {
    /// Queues stdin for the program.
    pub fn stdin(&self, data: &[u8]) -> Result<(), ControlError> {
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        if inbox.stdin_closed {
            return Err(ControlError::StdinClosed);
        }
        let total = inbox.stdin_total.saturating_add(data.len() as u64);
        if total > self.max_stdin {
            return Err(ControlError::StdinTooLarge(self.max_stdin));
        }
        inbox.stdin_total = total;
        inbox.stdin.extend_from_slice(data);
        drop(inbox);
        self.wake();
        Ok(())
    }

    /// Closes the program's stdin once what was sent is written.
    pub fn close_stdin(&self) {
        self.shared.inbox.lock().unwrap_or_else(PoisonError::into_inner).stdin_closed = true;
        self.wake();
    }

    /// Sends `signal` to the program (the running stage's process; SIGKILL included).
    pub fn signal(&self, signal: Signal) {
        self.shared.inbox.lock().unwrap_or_else(PoisonError::into_inner).signals.push(signal);
        self.wake();
    }

    fn wake(&self) {
        let _ = self.shared.wake.write(1);
    }
}

/// The signals a caller may send, by name (`SIGINT` or `INT`, any case).
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    ALLOWED_SIGNALS.iter().copied().find(|s| s.as_str() == full)
}

/// Signals a caller may send to its program.
pub const ALLOWED_SIGNALS: [Signal; 9] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGKILL,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGSTOP,
    Signal::SIGCONT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_bounded_and_closes() {
        let (live, control, _rx) = Live::interactive(8).unwrap();
        control.stdin(b"hello").unwrap();
        assert_eq!(control.stdin(b"world"), Err(ControlError::StdinTooLarge(8)));
        control.signal(Signal::SIGINT);
        // the compiler does not take the program's stdin, but takes signals
        let (data, closed, signals) = live.stage("compile").take();
        assert!(data.is_empty() && !closed);
        assert_eq!(signals, [Signal::SIGINT]);
        control.close_stdin();
        assert_eq!(control.stdin(b"x"), Err(ControlError::StdinClosed));
        let (data, closed, signals) = live.stage("run").take();
        assert_eq!((data.as_slice(), closed, signals.len()), (&b"hello"[..], true, 0));
    }

    #[test]
    fn signals_are_parsed_by_name() {
        assert_eq!(parse_signal("SIGINT"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGSEGV"), None);
        assert_eq!(parse_signal("nope"), None);
    }
}
