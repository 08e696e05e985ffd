//! Two runs cross-connected: what one writes to its stdout reaches the other's stdin, both
//! ways, through the pipes the daemon already owns for each sandbox (a run's stdin writer
//! and stdout reader). Each run hands its two ends over through its [`Plug`] once its
//! program is released, instead of feeding stdin and capturing stdout itself; the
//! [`Relay`] copies between them on the caller's thread and keeps what passed (the
//! transcript) up to a bound.
//!
//! Copying through the daemon costs a read and a write per message, and gives the
//! transcript and the order in which the two sides' output ended (who finished first)
//! without any change to the sandbox: both sandboxes stay as they are, warm or not.
//!
//! The relay never blocks on either program: its buffers are bounded (a side whose
//! buffered output is not yet taken is not read from), writes are non-blocking, and it
//! ends when both sides' output is over, or when told to stop (both runs returned).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::{read, write};

use super::{Cancel, RunError};

/// Bytes buffered for a side before its writer is read from no more until it takes them.
const BUFFERED: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;

/// One side of a crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first run given to [`cross`].
    A,
    /// The second.
    B,
}

/// A run's stdin writer and stdout reader, as its sandbox made them.
#[derive(Debug)]
pub(super) struct Ends {
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
}

/// Given in a [`super::RunRequest`]: the run hands its stdin and stdout to the relay
/// instead of feeding and capturing them. Used once; a clone shares the one handover.
#[derive(Debug, Clone)]
pub struct Plug {
    tx: Arc<Mutex<Option<SyncSender<Ends>>>>,
}

impl Plug {
    /// Hands the ends over (a plug already used, or a relay gone, drops them: the program
    /// then reads EOF and its writes fail).
    pub(super) fn hand(&self, ends: Ends) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(tx) = tx {
            let _ = tx.send(ends);
        }
    }
}

/// What passed between the two sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Each message: who wrote it and its bytes (consecutive reads from one side are one
    /// message), the first `limit` bytes of all together.
    pub messages: Vec<(Side, Vec<u8>)>,
    /// More passed than was kept.
    pub truncated: bool,
    /// When each side's output ended (`[A, B]`; None: never, or it was never handed over).
    pub ended: [Option<Instant>; 2],
}

impl Transcript {
    fn record(&mut self, from: Side, bytes: &[u8], limit: usize) {
        let kept: usize = self.messages.iter().map(|(_, m)| m.len()).sum();
        let room = limit.saturating_sub(kept);
        if bytes.len() > room {
            self.truncated = true;
        }
        let bytes = &bytes[..bytes.len().min(room)];
        if bytes.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some((side, m)) if *side == from => m.extend_from_slice(bytes),
            _ => self.messages.push((from, bytes.to_vec())),
        }
    }

    /// Whether `side`'s output ended before the other's (a side whose output never ended
    /// did not).
    pub fn ended_first(&self, side: Side) -> bool {
        let (mine, other) = match side {
            Side::A => (self.ended[0], self.ended[1]),
            Side::B => (self.ended[1], self.ended[0]),
        };
        match (mine, other) {
            (Some(m), Some(o)) => m < o,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Copies between the two runs of a crossing (see the module's comment).
#[derive(Debug)]
pub struct Relay {
    a: Receiver<Ends>,
    b: Receiver<Ends>,
    limit: usize,
    stop: Cancel,
}

/// Two plugs to give two runs, and the relay between them that keeps a transcript of up
/// to `limit` bytes.
pub fn cross(limit: usize) -> Result<(Plug, Plug, Relay), RunError> {
    let (ta, a) = sync_channel(1);
    let (tb, b) = sync_channel(1);
    let plug = |tx| Plug { tx: Arc::new(Mutex::new(Some(tx))) };
    Ok((plug(ta), plug(tb), Relay { a, b, limit, stop: Cancel::new()? }))
}

/// One direction: from a side's stdout to the other's stdin.
#[derive(Debug)]
struct Flow {
    from: Side,
    reader: Option<OwnedFd>,
    writer: Option<OwnedFd>,
    pending: Vec<u8>,
}

impl Relay {
    /// Fires to end the relay: whatever is readable then is still taken into the
    /// transcript. Fire it once both runs have returned.
    pub fn stopper(&self) -> Cancel {
        self.stop.clone()
    }

    /// Relays until both sides' output has ended (or the stopper fired); the transcript.
    /// Blocks until each run has handed its ends over or returned without.
    pub fn run(self) -> Transcript {
        let (a, b) = (self.a.recv().ok(), self.b.recv().ok());
        let (a_in, a_out) = a.map_or((None, None), |e| (Some(e.stdin), Some(e.stdout)));
        let (b_in, b_out) = b.map_or((None, None), |e| (Some(e.stdin), Some(e.stdout)));
        let mut t = Transcript::default();
        let now = Instant::now();
        // a side that never came ended now (its peer reads EOF)
        t.ended = [a_out.is_none().then_some(now), b_out.is_none().then_some(now)];
        let mut flows = [
            Flow { from: Side::A, reader: a_out, writer: b_in, pending: Vec::new() },
            Flow { from: Side::B, reader: b_out, writer: a_in, pending: Vec::new() },
        ];
        for f in &mut flows {
            f.close_if_over();
        }
        loop {
            if flows.iter().all(|f| f.reader.is_none() && f.writer.is_none()) {
                break;
            }
            if self.stop.is_cancelled() {
                // the runs are over: take what is still readable, once
                let now = Instant::now();
                for f in &mut flows {
                    f.pump(&mut t, self.limit);
                    t.ended[side_index(f.from)].get_or_insert(now);
                }
                break;
            }
            let stopped = self.turn(&mut flows, &mut t);
            if stopped {
                self.stop.cancel();
            }
        }
        t
    }

    /// One poll and what it found; true when the stopper fired.
    fn turn(&self, flows: &mut [Flow; 2], t: &mut Transcript) -> bool {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        let mut slots = [[None; 2]; 2];
        for (i, f) in flows.iter().enumerate() {
            if let Some(r) = f.reader.as_ref().filter(|_| f.pending.len() < BUFFERED) {
                slots[i][0] = Some(fds.len());
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            if let Some(w) = f.writer.as_ref().filter(|_| !f.pending.is_empty()) {
                slots[i][1] = Some(fds.len());
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
            }
        }
        let stop_at = fds.len();
        fds.push(PollFd::new(self.stop.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                tracing::error!(?e, "poll failed; the relay stops");
                return true;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(false)).collect();
        drop(fds);
        for (i, f) in flows.iter_mut().enumerate() {
            if slots[i][0].is_some_and(|k| ready[k]) {
                f.take(t, self.limit);
            }
            if slots[i][1].is_some_and(|k| ready[k]) {
                f.give();
            }
            if f.reader.is_none() && t.ended[side_index(f.from)].is_none() {
                t.ended[side_index(f.from)] = Some(Instant::now());
            }
        }
        ready[stop_at]
    }
}

fn side_index(s: Side) -> usize {
    match s {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Flow {
    /// Reads what is there (up to the buffer's room); EOF closes the reader.
    fn take(&mut self, t: &mut Transcript, limit: usize) {
        let Some(r) = self.reader.as_ref() else { return };
        let mut buf = [0u8; CHUNK];
        let room = BUFFERED.saturating_sub(self.pending.len()).min(CHUNK);
        match read(r, &mut buf[..room.max(1)]) {
            Ok(0) => self.reader = None,
            Ok(n) => {
                t.record(self.from, &buf[..n], limit);
                // nobody to give it to: the other side is gone, its bytes are dropped
                if self.writer.is_some() {
                    self.pending.extend_from_slice(&buf[..n]);
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => {
                tracing::warn!(?e, "reading a crossed run's output failed");
                self.reader = None;
            }
        }
        self.close_if_over();
    }

    /// Writes what the pipe takes; a reader gone (EPIPE) drops the rest.
    fn give(&mut self) {
        let Some(w) = self.writer.as_ref() else { return };
        match write(w, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => {
                self.writer = None;
                self.pending.clear();
            }
        }
        self.close_if_over();
    }

    /// Takes everything readable now, without waiting (the runs are over).
    fn pump(&mut self, t: &mut Transcript, limit: usize) {
        for _ in 0..64 {
            if self.reader.is_none() {
                break;
            }
            self.writer = None;
            self.pending.clear();
            let before = t.messages.iter().map(|(_, m)| m.len()).sum::<usize>();
            self.take(t, limit);
            let after = t.messages.iter().map(|(_, m)| m.len()).sum::<usize>();
            if after == before && self.reader.is_some() {
                break;
            }
        }
    }

    /// Once the output is over and all of it given, the other side's stdin is closed: it
    /// reads EOF.
    fn close_if_over(&mut self) {
        if self.reader.is_none() && self.pending.is_empty() {
            self.writer = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_joins_a_side_s_reads_and_keeps_the_first_bytes() {
        let mut t = Transcript::default();
        t.record(Side::A, b"1 ", 10);
        t.record(Side::A, b"2\n", 10);
        t.record(Side::B, b"< 3\n", 10);
        t.record(Side::A, b"4 5\n", 10);
        assert_eq!(t.messages, [(Side::A, b"1 2\n".to_vec()), (Side::B, b"< 3\n".to_vec()), (Side::A, b"4 ".to_vec())]);
        assert!(t.truncated);
    }

    #[test]
    fn who_ended_first() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_millis(5);
        let t = Transcript { ended: [Some(now), Some(later)], ..Transcript::default() };
        assert!(t.ended_first(Side::A) && !t.ended_first(Side::B));
        let t = Transcript { ended: [None, Some(later)], ..Transcript::default() };
        assert!(t.ended_first(Side::B) && !t.ended_first(Side::A));
    }

    /// Two pipes stand for the two sandboxes' own: what A writes reaches B and back.
    #[test]
    fn the_relay_carries_both_ways_and_ends_with_both_outputs() {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        use nix::unistd::pipe2;
        let nonblocking = |fd: &OwnedFd| {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        };
        let (pa, pb, relay) = cross(1 << 20).unwrap();
        // each side: (its stdin's reader, our writer), (our reader, its stdout's writer)
        let side = |plug: &Plug| {
            let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).unwrap();
            let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).unwrap();
            nonblocking(&in_w);
            nonblocking(&out_r);
            plug.hand(Ends { stdin: in_w, stdout: out_r });
            (in_r, out_w)
        };
        let (a_in, a_out) = side(&pa);
        let (b_in, b_out) = side(&pb);
        let relayed = std::thread::spawn(move || relay.run());
        write(&a_out, b"ping\n").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read(&b_in, &mut buf).unwrap(), 5);
        write(&b_out, b"pong\n").unwrap();
        drop(b_out);
        assert_eq!(read(&a_in, &mut buf).unwrap(), 5);
        assert_eq!(read(&a_in, &mut buf).unwrap(), 0, "B's output ended: A reads EOF");
        drop(a_out);
        assert_eq!(read(&b_in, &mut buf).unwrap(), 0);
        let t = relayed.join().unwrap();
        assert_eq!(t.messages, [(Side::A, b"ping\n".to_vec()), (Side::B, b"pong\n".to_vec())]);
        assert!(t.ended_first(Side::B));
    }
}
