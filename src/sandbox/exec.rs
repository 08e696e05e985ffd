//! The program's side of PID 1's fork: everything that narrows what the process may do
//! happens while the sandbox is prepared, before any request is known; then the process
//! waits for its start request (argv, env, rlimits) and `execve`s. The order matters:
//! 1. own session, so `kill(0, ...)` by the program cannot reach PID 1's process group;
//! 2. standard descriptors from the runner's pipes;
//! 3. every signal back to its default (Rust ignores SIGPIPE, and ignored signals survive
//!    `execve`);
//! 4. empty the bounding, ambient and inheritable capability sets (needs CAP_SETPCAP, so
//!    while still root of the user namespace);
//! 5. switch to the program's uid/gid, which clears the permitted and effective sets;
//! 6. `no_new_privs`, which seccomp needs from an unprivileged process and which makes
//!    setuid files powerless;
//! 7. apply the Landlock ruleset, if the runner sent one (see `confine`): after
//!    `no_new_privs`, which an unprivileged process needs for it, and before seccomp, which
//!    does not allow its syscalls;
//! 8. mark every descriptor above 2 close-on-exec (the report pipe must live until then);
//!    install the seccomp filter, last of the privileged steps, so none of them is filtered;
//! 9. wait for the start request, which the runner sends straight here; write the input
//!    files into `/sandbox` (a fresh tmpfs owned by the program's id, so no privilege is
//!    needed); set the rlimits (only ever lowered, which needs no privilege either: core 0,
//!    file size, open files, stack, CPU backstop);
//! 10. `execve`, trying each `PATH` entry for a bare command name.
//!
//! A failure writes `[step, errno]` to the report pipe; `execve` success closes it.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use caps::CapSet;
use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setresgid, setresuid, setsid, write};

use super::channel::{self, Received};
use super::init::Stdio;
use super::spec::{Landlock, Rlimit, StartRequest};
use super::{confine, mounts, sys};

/// Step numbers in the report: 0 is `execve` itself (the command is the problem); the
/// others are ours (the sandbox is). Names are for PID 1's report.
pub(super) const STEP_NAMES: [&str; 13] = [
    "execve",
    "setsid",
    "set up standard descriptors",
    "reset signals",
    "set rlimits",
    "drop capabilities",
    "switch to the program's uid",
    "set no_new_privs",
    "mark descriptors close-on-exec",
    "install the seccomp filter",
    "receive the start request",
    "write the input files",
    "apply the Landlock ruleset",
];

/// Runs the steps, waits for the start request and `execve`s; on failure reports and exits
/// 127. Never returns.
pub(super) fn run(
    id: u32,
    landlock: Option<&Landlock>,
    filter: &seccompiler::BpfProgram,
    stdio: Stdio,
    start: OwnedFd,
    report: OwnedFd,
) -> ! {
    let (step, errno) = match prepare_and_exec(id, landlock, filter, stdio, start) {
        Err(failure) => failure,
        Ok(never) => match never {},
    };
    let mut msg = [0u8; 5];
    msg[0] = step;
    msg[1..].copy_from_slice(&(errno as i32).to_ne_bytes());
    let _ = write(&report, &msg);
    sys::exit_now(127)
}

fn prepare_and_exec(
    id: u32,
    landlock: Option<&Landlock>,
    filter: &seccompiler::BpfProgram,
    stdio: Stdio,
    start: OwnedFd,
) -> Result<Infallible, (u8, Errno)> {
    setsid().map_err(|e| (1, e))?;
    nix::unistd::dup2_stdin(&stdio.stdin).map_err(|e| (2, e))?;
    nix::unistd::dup2_stdout(&stdio.stdout).map_err(|e| (2, e))?;
    nix::unistd::dup2_stderr(&stdio.stderr).map_err(|e| (2, e))?;
    drop(stdio);
    sys::reset_signals().map_err(|e| (3, e))?;
    drop_capabilities().map_err(|e| (5, e))?;
    let (uid, gid) = (Uid::from_raw(id), Gid::from_raw(id));
    setresgid(gid, gid, gid).map_err(|e| (6, e))?;
    setresuid(uid, uid, uid).map_err(|e| (6, e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| (7, e))?;
    if let Some(spec) = landlock {
        confine::apply(spec).map_err(|e| (12, e))?;
    }
    sys::close_range(3, u32::MAX, true).map_err(|e| (8, e))?;
    seccompiler::apply_filter(filter).map_err(|_| (9, Errno::last()))?;

    let (req, memfd) = receive_request(start).map_err(|e| (10, e))?;
    mounts::write_files(memfd, &req.files, None).map_err(|e| (11, e.errno.unwrap_or(Errno::EIO)))?;
    let argv = cstrings(&req.argv).map_err(|e| (0, e))?;
    let env = cstrings(&req.env).map_err(|e| (0, e))?;
    let path_var = req.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let first = req.argv.first().map(String::as_str).unwrap_or_default();
    let candidates = candidates(first, path_var).map_err(|e| (0, e))?;
    set_rlimits(&req.rlimits).map_err(|e| (4, e))?;
    Err((0, exec_first(&candidates, &argv, &env)))
}

/// Waits for the start request (and the files' memfd, if any) from the runner.
fn receive_request(start: OwnedFd) -> Result<(StartRequest, Option<OwnedFd>), Errno> {
    match channel::recv::<StartRequest>(start.as_fd(), false)? {
        Received::Message(req, mut fds) => Ok((req, fds.pop())),
        Received::Empty | Received::Closed => Err(Errno::EPIPE),
    }
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, Errno> {
    items.iter().map(|s| CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL)).collect()
}

/// The paths to try for `cmd`: itself if it has a `/`, else each `PATH` entry joined to it.
fn candidates(cmd: &str, path_var: &str) -> Result<Vec<CString>, Errno> {
    if cmd.is_empty() {
        return Err(Errno::ENOENT);
    }
    if cmd.contains('/') {
        return Ok(vec![CString::new(cmd).map_err(|_| Errno::EINVAL)?]);
    }
    path_var
        .split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| CString::new(format!("{dir}/{cmd}")).map_err(|_| Errno::EINVAL))
        .collect()
}

/// `execve`s the first candidate that exists, like `execvp`: ENOENT and ENOTDIR go on to
/// the next; EACCES is remembered but also goes on; anything else stops.
fn exec_first(candidates: &[CString], argv: &[CString], env: &[CString]) -> Errno {
    let mut seen_eacces = false;
    for path in candidates {
        let Err(e) = nix::unistd::execve(path, argv, env);
        match e {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => seen_eacces = true,
            other => return other,
        }
    }
    if seen_eacces { Errno::EACCES } else { Errno::ENOENT }
}

fn set_rlimits(limits: &[Rlimit]) -> Result<(), Errno> {
    for l in limits {
        let (res, v) = match *l {
            Rlimit::Core(v) => (Resource::RLIMIT_CORE, v),
            Rlimit::FileSize(v) => (Resource::RLIMIT_FSIZE, v),
            Rlimit::OpenFiles(v) => (Resource::RLIMIT_NOFILE, v),
            Rlimit::Stack(v) => (Resource::RLIMIT_STACK, v),
            Rlimit::CpuSeconds(v) => (Resource::RLIMIT_CPU, v),
        };
        // Without CAP_SYS_RESOURCE a hard limit can only go down: never above the current.
        let (_, hard) = nix::sys::resource::getrlimit(res)?;
        let v = v.min(hard);
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL a second later (if it is caught)
        let h = if res == Resource::RLIMIT_CPU { v.saturating_add(1).min(hard) } else { v };
        setrlimit(res, v, h)?;
    }
    Ok(())
}

fn drop_capabilities() -> Result<(), Errno> {
    for set in [CapSet::Bounding, CapSet::Ambient, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|_| Errno::EPERM)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_searched_in_path_order() {
        let c = candidates("python3", "/usr/local/bin:/usr/bin::/bin").unwrap();
        let c: Vec<_> = c.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(c, ["/usr/local/bin/python3", "/usr/bin/python3", "./python3", "/bin/python3"]);
        assert_eq!(candidates("./a.out", "/x").unwrap()[0].to_str().unwrap(), "./a.out");
        assert_eq!(candidates("", "/x").unwrap_err(), Errno::ENOENT);
    }
}
