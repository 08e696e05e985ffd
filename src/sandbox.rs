//! The sandbox's processes: the zygote (forked once, before the runner has threads), each
//! run's PID 1 (a clone of the zygote in fresh namespaces) and the program's last steps
//! before `execve`, with the mounts they make.
//!
//! This module owns processes, namespaces, mounts, id maps, rlimits, capabilities and the
//! installing of seccomp filters. It must not touch cgroups or choose policies: the runner
//! hands it the BPF programs to install, and for each spawn a cgroup2 directory to clone
//! into and `cgroup.procs` files to write the new pid into. `sys` is the crate's only module
//! with `unsafe`.

mod channel;
mod collect;
mod exec;
mod init;
mod mounts;
mod netlink;
mod spec;
#[allow(unsafe_code)]
mod sys;
mod zygote;

use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

pub use channel::{Channel, ExitStatus, MAX_MESSAGE, Report, Starter};
pub use collect::{CollectSpec, Collected, CollectedFile, read_collected};
pub use spec::{
    FileEntry, HostMount, IdMap, NetLink, Rlimit, RootSpec, SpawnRequest, StartRequest, TmpfsSizes, check_relative_path,
};
pub use sys::{catch_interrupts, interrupted};
pub use zygote::{SpawnFds, Spawned, Zygote, ZygoteConfig};

/// Errors of the sandbox machinery (never of the program: that is a `Report`).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The zygote must be forked while the process has one thread.
    #[error("the zygote must be started before any thread (this process has several)")]
    NotSingleThreaded,
    /// The zygote failed to start, or stopped answering.
    #[error("zygote: {0}")]
    Zygote(String),
    /// The zygote could not clone a sandbox.
    #[error("spawn: {0}")]
    Spawn(String),
    /// Writing a sandbox's uid/gid map failed.
    #[error("failed to write {path}")]
    IdMap {
        /// The map file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A syscall on a sandbox's PID 1 failed.
    #[error("{op} failed")]
    Sys {
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: Errno,
    },
}

/// A failed setup step inside the sandbox, carried to the runner as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepError {
    pub(crate) step: &'static str,
    pub(crate) errno: Option<Errno>,
    pub(crate) detail: String,
}

impl StepError {
    pub(crate) fn new(step: &'static str, errno: Option<Errno>, detail: String) -> Self {
        Self { step, errno, detail }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.step)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        if let Some(e) = self.errno {
            write!(f, ": {}", e.desc())?;
        }
        Ok(())
    }
}

/// Writes `uid_map` and `gid_map` of a sandbox's PID 1 (which waits for them). `pid` is
/// the caller's child or the runner's (`CLONE_PARENT`), not yet reaped, so it cannot have
/// been recycled.
fn write_id_maps(pid: Pid, map: &IdMap) -> Result<(), SandboxError> {
    let lines = map.lines();
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &lines).map_err(|source| SandboxError::IdMap { path, source })?;
    }
    Ok(())
}

/// SIGKILL to a sandbox's PID 1 through its pidfd: the kernel then kills every process of
/// its pid namespace, whatever they do (stopped, ignoring signals, setsid'd).
pub fn kill(pidfd: BorrowedFd<'_>) -> Result<(), SandboxError> {
    match sys::pidfd_send_signal(pidfd, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(SandboxError::Sys { op: "pidfd_send_signal", source }),
    }
}

/// Sends `signal` to the program through the pidfd its PID 1 sent with `Started`: only
/// that process gets it (a program that exited already is no error).
pub fn signal(pidfd: BorrowedFd<'_>, signal: Signal) -> Result<(), SandboxError> {
    match sys::pidfd_send_signal(pidfd, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(SandboxError::Sys { op: "pidfd_send_signal", source }),
    }
}

/// Deletes a sandbox's network link by its host end's name (both ends go); `false` when
/// there was none (the kernel removed it with the sandbox's network namespace).
pub fn remove_link(host_if: &str) -> Result<bool, SandboxError> {
    let mut rtnl = netlink::Rtnl::open().map_err(|e| SandboxError::Sys { op: e.op, source: e.errno })?;
    rtnl.delete_link(host_if).map_err(|e| SandboxError::Sys { op: e.op, source: e.errno })
}

/// The names of the links of the host's network namespace starting with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>, SandboxError> {
    let mut rtnl = netlink::Rtnl::open().map_err(|e| SandboxError::Sys { op: e.op, source: e.errno })?;
    rtnl.links_with_prefix(prefix).map_err(|e| SandboxError::Sys { op: e.op, source: e.errno })
}

/// Waits for a sandbox's PID 1 (our child, through `CLONE_PARENT`) and reaps it.
pub fn reap(pidfd: BorrowedFd<'_>) -> Result<WaitStatus, SandboxError> {
    loop {
        match waitid(Id::PIDFd(pidfd), WaitPidFlag::WEXITED) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(|source| SandboxError::Sys { op: "waitid", source }),
        }
    }
}

/// Closes every descriptor above 2 except `keep`.
fn close_all_but(keep: &[RawFd]) -> Result<(), Errno> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        if fd > next {
            sys::close_range(next, fd - 1, false)?;
        }
        next = next.max(fd.saturating_add(1));
    }
    sys::close_range(next, u32::MAX, false)
}
