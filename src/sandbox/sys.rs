//! Every `unsafe` operation of codeexec, each behind a safe function. Nothing else in the
//! crate may use `unsafe` (`unsafe_code = "deny"` crate-wide).
//!
//! The fork-like calls here (`fork_single_threaded`, `clone_into_namespaces`, `fork_child`)
//! are only sound in a single-threaded process: a child of a multi-threaded process may
//! find a lock (malloc's, stdio's) held by a thread that does not exist in the child. The
//! zygote checks it is alone before forking and never starts a thread; its clones and their
//! forks inherit that.

use std::ffi::c_int;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{ForkResult, Pid};

/// The result of a fork-like call, seen from either side.
#[derive(Debug)]
pub(super) enum Forked<P> {
    /// We are the new process.
    Child,
    /// We are the caller; here is what we know of the child.
    Parent(P),
}

/// A process made by `clone3` with `CLONE_PIDFD`.
#[derive(Debug)]
pub(super) struct Cloned {
    pub(super) pid: Pid,
    pub(super) pidfd: OwnedFd,
}

/// How many threads this process has, from `/proc/self/status`.
fn thread_count() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// `fork()`, refused (`EDEADLK`) unless the caller is the only thread of its process.
pub(super) fn fork_single_threaded() -> Result<Forked<Pid>, Errno> {
    if thread_count() != Some(1) {
        return Err(Errno::EDEADLK);
    }
    // SAFETY: the process has exactly one thread (checked just above, and no thread can
    // appear between the check and the call, since only this thread could create one), so
    // the child's copy of every lock is in a consistent, unlocked state.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => Ok(Forked::Child),
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
    }
}

/// `fork()` from a process that is already known to be single-threaded: our PID 1 inside
/// the sandbox, itself a clone of the single-threaded zygote.
pub(super) fn fork_child() -> Result<Forked<Pid>, Errno> {
    // SAFETY: only called by the sandbox's PID 1, a clone of the zygote, which checked it
    // was single-threaded before it was forked and never creates threads; a clone of a
    // single-threaded process is single-threaded too.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => Ok(Forked::Child),
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): born in the cgroup2 directory `clone_args.cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A fork-like `clone3(2)` with `flags` (namespace flags, `CLONE_PARENT`, ...), always with
/// `CLONE_PIDFD`, and into the cgroup2 directory `cgroup` if given. The child continues
/// from this call on a copy of the caller's memory.
/// <https://man7.org/linux/man-pages/man2/clone3.2.html>
pub(super) fn clone_into_namespaces(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked<Cloned>, Errno> {
    let mut pidfd: c_int = -1;
    let into = if cgroup.is_some() { CLONE_INTO_CGROUP } else { 0 };
    let mut args = libc::clone_args {
        flags: flags | libc::CLONE_PIDFD as u64 | into,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        // clone3 refuses an exit signal with CLONE_PARENT: the caller's own is used then
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 { 0 } else { libc::SIGCHLD as u64 },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |fd| u64::try_from(fd.as_raw_fd()).unwrap_or(0)),
    };
    // SAFETY: with no stack given, clone3 behaves like fork: the child runs on a copy of the
    // caller's memory, which is sound because the only caller, the zygote, is
    // single-threaded (checked when it was forked; it never starts threads), so no lock is
    // held by a thread missing in the child. Unlike glibc's fork, the raw syscall runs no
    // atfork handlers and leaves glibc's cached thread id stale in the child: nothing the
    // child runs (our code, then execve) registers atfork handlers or uses pthread ids.
    // `args` and `pidfd` outlive the call; the kernel reads `args` (its size passed
    // alongside) and writes `pidfd` before returning.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::addr_of_mut!(args), size_of::<libc::clone_args>()) };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => {
            // SAFETY: the kernel stored a new, open pidfd in `pidfd` (CLONE_PIDFD) and nothing
            // else owns it.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            let pid = i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?;
            Ok(Forked::Parent(Cloned { pid: Pid::from_raw(pid), pidfd }))
        }
    }
}

/// `pidfd_send_signal(2)`: signal the process `pidfd` refers to, never a recycled pid.
pub(super) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> Result<(), Errno> {
    // SAFETY: plain syscall on an fd we borrow for its duration; a null siginfo is allowed
    // and means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal as c_int, std::ptr::null::<u8>(), 0)
    };
    if ret == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// `pidfd_open(2)`: a descriptor for process `pid` of our pid namespace (close-on-exec),
/// which stays bound to that process even after its pid is freed and reused.
pub(super) fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `close_range(2)` over `[first, last]`; with `cloexec` the fds are only marked
/// close-on-exec (so a pipe meant to report an `execve` failure stays usable until then).
pub(super) fn close_range(first: u32, last: u32, cloexec: bool) -> Result<(), Errno> {
    let flags = if cloexec { libc::CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: closes (or marks) descriptors only; the callers hold no Rust object for a
    // descriptor in the range except ones they have already forgotten or are about to
    // exec past (the sandbox's PID 1 and the program, right after fork).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// Resets every signal, real-time ones included, to its default action and unblocks all
/// of them. `execve` keeps ignored signals ignored, and Rust's runtime ignores SIGPIPE, so
/// without this the program would start with SIGPIPE ignored (`yes | head` would never
/// end).
pub(super) fn reset_signals() -> Result<(), Errno> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context, so none of
        // sigaction's handler-safety concerns apply.
        unsafe { nix::sys::signal::sigaction(sig, &dfl) }?;
    }
    // nix names only the standard signals; the real-time ones start at 32. glibc keeps
    // 32 and 33 for itself and refuses sigaction on them, but a parent may have left them
    // ignored (seen under cargo test), and ignored signals survive execve: reset those
    // through the raw syscall.
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        reset_raw_signal(sig)?;
    }
    #[cfg(target_arch = "x86_64")]
    for sig in 32..libc::SIGRTMIN() {
        reset_reserved_signal(sig)?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// `rt_sigaction(sig, SIG_DFL)` without glibc, which refuses the signals it reserves.
#[cfg(target_arch = "x86_64")]
fn reset_reserved_signal(sig: c_int) -> Result<(), Errno> {
    // x86_64's struct kernel_sigaction: handler (SIG_DFL = 0), flags, restorer, mask
    let act = [0u64; 4];
    // SAFETY: `act` is a valid kernel_sigaction for x86_64 that outlives the call; the old
    // action pointer is null (not wanted); 8 is the size of the kernel's sigset_t. SIG_DFL
    // runs no code of ours in signal context.
    let ret = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, act.as_ptr(), std::ptr::null_mut::<u64>(), 8usize) };
    if ret == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// `sigaction(sig, SIG_DFL)` for a signal number nix has no name for.
fn reset_raw_signal(sig: c_int) -> Result<(), Errno> {
    // SAFETY: a zeroed sigaction is a valid one (handler SIG_DFL = 0, empty mask, no flags)
    // for the kernel; we only read it back through the syscall below.
    let act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `act` is a valid sigaction that outlives the call and installs SIG_DFL, so no
    // code of ours ever runs in signal context; a null old-action pointer is allowed.
    let ret = unsafe { libc::sigaction(sig, std::ptr::addr_of!(act), std::ptr::null_mut()) };
    if ret == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// `_exit(2)`: leave at once, running no destructors or atexit handlers (which belong to
/// the process we were cloned from).
pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers; nothing is left to run.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface of the current network namespace up, as `ip link set lo
/// up` does (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP). Needs CAP_NET_ADMIN over it.
pub(super) fn loopback_up() -> Result<(), Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(c"lo".to_bytes()) {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    let mut req = libc::ifreq { ifr_name: name, ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 } };
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a valid
    // ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, std::ptr::addr_of_mut!(req)) } == -1 {
        return Err(Errno::last());
    }
    // SAFETY: reading the union member SIOCGIFFLAGS just wrote.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::c_short::try_from(libc::IFF_UP).map_err(|_| Errno::EINVAL)?;
    // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, std::ptr::addr_of_mut!(req)) } == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag ([`interrupted`]) instead of killing the
/// process, so a run in progress can be torn down cleanly (its cgroup removed). Without
/// SA_RESTART, a blocked `poll` returns EINTR and the supervisor notices at once.
pub fn catch_interrupts() -> Result<(), Errno> {
    let act = SigAction::new(SigHandler::Handler(note_interrupt), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { nix::sys::signal::sigaction(sig, &act) }?;
    }
    Ok(())
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Takes ownership of a descriptor that `SCM_RIGHTS` just installed in our table.
pub(super) fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed `fd` for the message we just received; no other object
    // owns it, and it is open until this OwnedFd closes it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn path_cstring(path: &std::path::Path) -> Result<std::ffi::CString, Errno> {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)`: a detached copy of the mount at
/// `path` (not its submounts), to be changed and attached elsewhere.
pub(super) fn open_tree_clone(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    let c = path_cstring(path)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: `c` is a NUL-terminated string that outlives the call, and open_tree only
    // reads it; the flags are the kernel's constants.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes a detached tree nosuid, nodev, read-only unless `writable` (which keeps the
/// source's own read-only flag, if it has one), and idmapped through `userns` (its owners
/// as that namespace maps them): `mount_setattr(tree, "", AT_EMPTY_PATH, …)`.
pub(super) fn idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>, writable: bool) -> Result<(), Errno> {
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let mode = if writable { 0 } else { libc::MOUNT_ATTR_RDONLY };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | mode | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: `tree` is an open descriptor for the call's length, the empty path is a
    // static NUL-terminated string, and `attr` is a valid mount_attr whose size is passed;
    // the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            std::ptr::addr_of!(attr),
            size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Attaches a detached tree on top of `target`: `move_mount(tree, "", AT_FDCWD, target,
/// MOVE_MOUNT_F_EMPTY_PATH)`.
pub(super) fn move_mount_onto(tree: BorrowedFd<'_>, target: &std::path::Path) -> Result<(), Errno> {
    let c = path_cstring(target)?;
    // SAFETY: `tree` is open for the call's length; both paths are NUL-terminated strings
    // that outlive the call and are only read.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}
