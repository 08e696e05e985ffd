//! PID 1 of a sandbox: a clone of the zygote, born in fresh user, pid, mount, net, ipc and
//! uts namespaces. It finishes the setup, forks the program, reaps every process of the
//! namespace, reports how the program ended, and exits (taking the namespace with it).
//!
//! The steps, in order, and why that order:
//! 1. keep only our descriptors: the zygote's socket to the runner must not leak inside;
//! 2. die with the runner (`PR_SET_PDEATHSIG`), so a crashed runner leaves no sandbox;
//! 3. wait for `Go`: the runner writes our uid/gid maps and puts us in the cgroup first
//!    (a cgroup joined later would miss our children; ids are unmapped until then);
//! 4. become root of the user namespace (`setresuid(0)`; until then we are the overflow id);
//! 5. unshare the cgroup namespace, now that we are in the run's cgroup, so it is our root;
//! 6. mounts and pivot_root (see `mounts`), then the input files;
//! 7. hostname and loopback;
//! 8. fork the program (see `exec`), learn whether its `execve` worked, report `Started`;
//! 9. reap until the program exits, kill the rest, reap them, report `Exited`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, read, setresgid, setresuid};

use super::channel::{self, Command, ExitStatus, Received, Report};
use super::spec::SpawnRequest;
use super::sys::{self, Forked};
use super::{StepError, close_all_but, exec, mounts};

/// The descriptors a sandbox is born with, passed by the runner through the zygote.
#[derive(Debug)]
pub(super) struct Fds {
    pub(super) control: OwnedFd,
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) files: Option<OwnedFd>,
}

impl Fds {
    fn raw(&self) -> Vec<RawFd> {
        let mut v =
            vec![self.control.as_raw_fd(), self.stdin.as_raw_fd(), self.stdout.as_raw_fd(), self.stderr.as_raw_fd()];
        v.extend(self.files.as_ref().map(AsRawFd::as_raw_fd));
        v
    }
}

/// Runs PID 1 to the end. Never returns.
pub(super) fn run(req: &SpawnRequest, root: &std::path::Path, filters: &[seccompiler::BpfProgram], fds: Fds) -> ! {
    let kept = close_all_but(&fds.raw()).map_err(step("close inherited descriptors"));
    let Fds { control, stdin, stdout, stderr, files } = fds;
    let result = kept
        .map_err(Failure::Setup)
        .and_then(|()| setup(req, root, &control, files))
        .and_then(|()| start_program(req, filters, Stdio { stdin, stdout, stderr }));
    let (report, code) = match result {
        Ok(child) => {
            // the runner starts its wall clock and CPU baseline on this
            let _ = channel::send(control.as_fd(), &Report::Started, &[]);
            (supervise(child), 0)
        }
        Err(Failure::Setup(e)) => {
            (Report::SetupFailed { step: e.step.into(), errno: e.errno.map(|e| e as i32), detail: e.detail }, 1)
        }
        Err(Failure::Exec(errno)) => (Report::ExecFailed { errno: errno as i32 }, 1),
    };
    let _ = channel::send(control.as_fd(), &report, &[]);
    sys::exit_now(code)
}

enum Failure {
    Setup(StepError),
    Exec(Errno),
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure::Setup(e)
    }
}

/// The program's standard descriptors, held until the fork.
pub(super) struct Stdio {
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

fn step(name: &'static str) -> impl Fn(Errno) -> StepError {
    move |e| StepError::new(name, Some(e), String::new())
}

fn setup(req: &SpawnRequest, root: &std::path::Path, control: &OwnedFd, files: Option<OwnedFd>) -> Result<(), Failure> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set parent-death signal"))?;
    wait_for_go(control)?;
    become_root().map_err(step("become root of the user namespace"))?;
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(step("unshare the cgroup namespace"))?;
    mounts::enter_root(root, req)?;
    mounts::write_files(files, &req.files, req.program_id)?;
    nix::unistd::sethostname(&req.hostname).map_err(step("sethostname"))?;
    sys::loopback_up().map_err(step("bring up loopback"))?;
    Ok(())
}

fn wait_for_go(control: &OwnedFd) -> Result<(), StepError> {
    match channel::recv::<Command>(control.as_fd(), false) {
        Ok(Received::Message(Command::Go, _)) => Ok(()),
        Ok(_) => Err(StepError::new("wait for the runner", Some(Errno::EPIPE), "runner went away".into())),
        Err(e) => Err(StepError::new("wait for the runner", Some(e), String::new())),
    }
}

/// Until `setresuid(0)` we run with the overflow id (our host id, 0, is not in the map)
/// and root's supplementary groups; after it we are the user namespace's root.
fn become_root() -> Result<(), Errno> {
    let (root_u, root_g) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(root_g, root_g, root_g)?;
    nix::unistd::setgroups(&[])?;
    setresuid(root_u, root_u, root_u)
}

struct Child {
    pid: Pid,
    forked_at: Instant,
}

fn start_program(req: &SpawnRequest, filters: &[seccompiler::BpfProgram], stdio: Stdio) -> Result<Child, Failure> {
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(step("create the exec report pipe"))?;
    let forked_at = Instant::now();
    match sys::fork_child().map_err(step("fork the program"))? {
        Forked::Child => {
            drop(report_r);
            exec::run(req, filters, stdio, report_w)
        }
        Forked::Parent(pid) => {
            // Our copies would keep the pipes open after the program's tree is gone.
            drop((stdio, report_w));
            let mut msg = [0u8; 5];
            let n = loop {
                match read(&report_r, &mut msg) {
                    Err(Errno::EINTR) => continue,
                    other => break other.map_err(step("read the exec report"))?,
                }
            };
            if n == 0 {
                return Ok(Child { pid, forked_at });
            }
            let _ = waitpid(pid, None);
            let errno = Errno::from_raw(i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]));
            match exec::STEP_NAMES.get(usize::from(msg[0])) {
                Some(_) if msg[0] == 0 => Err(Failure::Exec(errno)),
                Some(name) => Err(Failure::Setup(StepError::new(name, Some(errno), String::new()))),
                None => Err(Failure::Setup(StepError::new("prepare the program", Some(errno), String::new()))),
            }
        }
    }
}

/// Reaps every child until the program itself exits; then kills the whole namespace
/// (background children, stopped ones) and reaps the rest. `kill(-1)` from PID 1 reaches
/// every other process in its pid namespace.
fn supervise(child: Child) -> Report {
    let status = loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == child.pid => break ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == child.pid => break ExitStatus::Signal(sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            // cannot happen while the program is our child; report as killed
            Err(_) => break ExitStatus::Signal(Signal::SIGKILL as i32),
        }
    };
    let wall_us = u64::try_from(child.forked_at.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(waitpid(None, None), Err(Errno::ECHILD)) {}
    Report::Exited { status, wall_us }
}
