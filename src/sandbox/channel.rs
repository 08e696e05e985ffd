//! Typed messages over `SOCK_SEQPACKET` socket pairs (one message per packet, JSON, with
//! file descriptors attached as `SCM_RIGHTS`): runner <-> zygote and runner <-> PID 1.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::collect::{CollectSpec, Packed};
use super::spec::{StartRequest, TmpfsSizes};

/// Largest message accepted: a start request with its argv, env and file list.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Messages up to this size are received into a stack buffer.
const SMALL_MESSAGE: usize = 8 * 1024;
/// Most descriptors one message carries (a spawn request: five, a cgroup directory and up
/// to four `cgroup.procs` files).
const MAX_FDS: usize = 16;

/// How the program ended, as PID 1 saw it in `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// What the sandbox's PID 1 tells the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The sandbox is set up and waits for its start request.
    Ready,
    /// The tmpfs mounts have the sizes asked for.
    Resized,
    /// The program's `execve` succeeded: the run has started. The program's pidfd comes
    /// with it (when `pidfd_open` worked).
    Started,
    /// The program's `execve` failed with this errno (e.g. ENOENT for an unknown command).
    ExecFailed {
        /// The errno of the last `execve` tried.
        errno: i32,
    },
    /// A setup step failed; nothing of the program ran.
    SetupFailed {
        /// The step's name.
        step: String,
        /// The errno, when the step failed in a syscall.
        errno: Option<i32>,
        /// More context (a path, an argument).
        detail: String,
    },
    /// The program exited; everything else in the sandbox has been killed and reaped.
    Exited {
        /// Its wait status.
        status: ExitStatus,
        /// Wall time from its fork to its exit, as PID 1 measured it.
        wall_us: u64,
        /// What `/sandbox` held, when the runner asked (bytes and manifest come in a
        /// memfd with this message); `Err` says why collecting failed.
        files: Option<Result<Packed, String>>,
    },
}

/// Runner -> PID 1, as sent (borrowing; the same JSON as [`Command`]).
#[derive(Debug, Serialize)]
enum CommandRef<'a> {
    Resize(&'a TmpfsSizes),
    Collect(&'a CollectSpec),
}

/// Runner -> PID 1, as received.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) enum Command {
    /// Give the writable tmpfs mounts these sizes (before the start request).
    Resize(TmpfsSizes),
    /// When the program is over, send what `/sandbox` holds with `Exited` (sent before the
    /// start request; no answer).
    Collect(CollectSpec),
}

/// A new `SOCK_SEQPACKET` pair, close-on-exec on both ends.
pub(super) fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
}

/// Sends `msg` with `fds` attached, as one packet.
pub(super) fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> Result<(), Errno> {
    let bytes = serde_json::to_vec(msg).map_err(|_| Errno::EINVAL)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(Errno::EMSGSIZE);
    }
    let iov = [IoSlice::new(&bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// What a receive found.
#[derive(Debug)]
pub(super) enum Received<T> {
    /// A message and the descriptors that came with it (close-on-exec).
    Message(T, Vec<OwnedFd>),
    /// Nothing to read (non-blocking receive only).
    Empty,
    /// The peer closed its end.
    Closed,
}

/// Receives one packet; `nonblocking` returns [`Received::Empty`] instead of waiting.
///
/// The packet's length is peeked first (`MSG_PEEK | MSG_TRUNC` returns a packet's full
/// length without consuming it), so the message lands in a buffer of its own size: every
/// control message in a small stack buffer, a large start request in an exact allocation.
/// Zeroing a maximal buffer for every message cost more than the rest of the channel.
pub(super) fn recv<T: DeserializeOwned>(sock: BorrowedFd<'_>, nonblocking: bool) -> Result<Received<T>, Errno> {
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let size = loop {
        let peek = flags | MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC;
        match nix::sys::socket::recv(sock.as_raw_fd(), &mut [], peek) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if nonblocking => return Ok(Received::Empty),
            Err(e) => return Err(e),
            Ok(0) => return Ok(Received::Closed),
            Ok(n) if n > MAX_MESSAGE => return Err(Errno::EMSGSIZE),
            Ok(n) => break n,
        }
    };
    let mut small = [0u8; SMALL_MESSAGE];
    let mut large = Vec::new();
    let buf: &mut [u8] = if size <= SMALL_MESSAGE {
        &mut small[..size]
    } else {
        large.resize(size, 0);
        &mut large
    };
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        fds.extend(raw.into_iter().map(super::sys::adopt_received_fd));
                    }
                }
                if msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                    return Err(Errno::EMSGSIZE);
                }
                break (msg.bytes, fds);
            }
        }
    };
    if len == 0 {
        return Ok(Received::Closed);
    }
    let bytes = if size <= SMALL_MESSAGE { &small[..len] } else { &large[..len] };
    let msg = serde_json::from_slice(bytes).map_err(|_| Errno::EBADMSG)?;
    Ok(Received::Message(msg, fds))
}

/// The runner's end of the channel to a sandbox's PID 1.
#[derive(Debug)]
pub struct Channel {
    sock: OwnedFd,
}

impl Channel {
    /// A new channel, and the end to hand to the sandbox.
    pub fn pair() -> Result<(Channel, OwnedFd), Errno> {
        let (ours, theirs) = seqpacket_pair()?;
        Ok((Channel { sock: ours }, theirs))
    }

    /// Asks PID 1 to resize the writable tmpfs mounts; it answers `Resized`.
    pub fn send_resize(&self, sizes: &TmpfsSizes) -> Result<(), Errno> {
        send(self.sock.as_fd(), &CommandRef::Resize(sizes), &[])
    }

    /// Asks PID 1 to send `/sandbox`'s files with its `Exited` report.
    pub fn send_collect(&self, spec: &CollectSpec) -> Result<(), Errno> {
        send(self.sock.as_fd(), &CommandRef::Collect(spec), &[])
    }

    /// Waits for the next report (for a sandbox being prepared).
    pub fn recv(&self) -> Result<Report, Errno> {
        match recv::<Report>(self.sock.as_fd(), false)? {
            Received::Message(r, _) => Ok(r),
            Received::Empty | Received::Closed => Err(Errno::EPIPE),
        }
    }

    /// The next report and the descriptors that came with it, without waiting: `Ok(None)`
    /// when there is none yet, and `Err(Errno::EPIPE)` once PID 1 has closed its end.
    pub fn try_recv(&self) -> Result<Option<(Report, Vec<OwnedFd>)>, Errno> {
        match recv::<Report>(self.sock.as_fd(), true)? {
            Received::Message(r, fds) => Ok(Some((r, fds))),
            Received::Empty => Ok(None),
            Received::Closed => Err(Errno::EPIPE),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The runner's end of the socket the waiting program process reads its start request
/// from: the one hand-off on a run's path (PID 1 is not in the way).
#[derive(Debug)]
pub struct Starter {
    sock: OwnedFd,
}

impl Starter {
    /// A new start socket, and the end to hand to the sandbox.
    pub fn pair() -> Result<(Starter, OwnedFd), Errno> {
        let (ours, theirs) = seqpacket_pair()?;
        // A packet must fit the sender's buffer (212992 bytes by default): make room for the
        // largest start request (SO_SNDBUFFORCE: root may pass net.core.wmem_max).
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::SndBufForce, &(2 * MAX_MESSAGE))?;
        Ok((Starter { sock: ours }, theirs))
    }

    /// Releases the program; `files` is the memfd holding the input files' bytes.
    pub fn start(&self, req: &StartRequest, files: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
        let fds: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        send(self.sock.as_fd(), req, &fds)
    }
}
