//! PID 1 of a sandbox: a clone of the zygote, born in fresh user, pid, mount, net, ipc and
//! uts namespaces. Its life has two phases, so that everything but the program itself can
//! be done before a request arrives (a warm sandbox), and the same code serves both a warm
//! and a cold start.
//!
//! Prepare, in order:
//! 1. keep only our descriptors: the zygote's socket to the runner must not leak inside;
//! 2. wait for the zygote's byte on the release pipe: it writes our uid/gid maps and puts
//!    us in the run's cgroups first (a cgroup joined later would miss our children; ids are
//!    unmapped until then);
//! 3. become root of the user namespace (`setresuid(0)`; until then we are the overflow id);
//! 4. die with the runner (`PR_SET_PDEATHSIG`), so a crashed runner leaves no sandbox. Only
//!    now: changing credentials clears the parent-death signal (prctl(2)). Should the runner
//!    die before this, our control socket says so: every wait below watches it;
//! 5. unshare the cgroup namespace, now that we are in the run's cgroup, so it is our root;
//! 6. mounts (the image's idmapped directories, the host mounts it was given at
//!    `/mnt/<name>`, with a network link the resolver's `resolv.conf`) and pivot_root (see
//!    `mounts`), hostname, loopback, and with a link its address and default route;
//! 7. fork the program's process, which drops everything and waits (see `exec`);
//! 8. report `Ready`.
//!
//! Start (the runner hands the program process its start request directly, so PID 1 is
//! not on that path):
//! 9. until the program's `execve` succeeds or fails (its report pipe), resize the tmpfs
//!    mounts when the runner asks (`Resize`, before it starts the program); report
//!    `Started` (with the program's pidfd) or the failure;
//! 10. reap until the program exits, kill the rest, reap them, report `Exited`, with what
//!     `/sandbox` holds when the runner asked for it (`Collect`, see `collect`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, read, setresgid, setresuid};

use super::channel::{self, Command, ExitStatus, Received, Report};
use super::collect::{self, CollectSpec};
use super::netlink::{NetlinkError, Rtnl};
use super::spec::{NetLink, SpawnRequest};
use super::sys::{self, Forked};
use super::zygote::Release;
use super::{StepError, close_all_but, exec, mounts};

/// The descriptors a sandbox is born with, passed by the runner through the zygote.
#[derive(Debug)]
pub(super) struct Fds {
    pub(super) control: OwnedFd,
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) start: OwnedFd,
}

/// The program's standard descriptors, held until the fork.
#[derive(Debug)]
pub(super) struct Stdio {
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// The waiting program process, as PID 1 holds it.
struct Program {
    pid: Pid,
    /// `[step, errno]` on a failure before or at `execve`; EOF when `execve` succeeded.
    report: OwnedFd,
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

fn step(name: &'static str) -> impl Fn(Errno) -> StepError {
    move |e| StepError::new(name, Some(e), String::new())
}

/// Runs PID 1 to the end. Never returns.
pub(super) fn run(
    req: &SpawnRequest,
    root: &std::path::Path,
    filter: &seccompiler::BpfProgram,
    fds: Fds,
    released: OwnedFd,
) -> ! {
    let raw: [RawFd; 6] = [
        fds.control.as_raw_fd(),
        fds.stdin.as_raw_fd(),
        fds.stdout.as_raw_fd(),
        fds.stderr.as_raw_fd(),
        fds.start.as_raw_fd(),
        released.as_raw_fd(),
    ];
    let kept = close_all_but(&raw).map_err(step("close inherited descriptors"));
    let Fds { control, stdin, stdout, stderr, start } = fds;
    let mut collect_spec: Option<CollectSpec> = None;
    let result = kept
        .map_err(Failure::Setup)
        .and_then(|()| prepare(req, root, released))
        .and_then(|()| fork_program(req, filter, Stdio { stdin, stdout, stderr }, start))
        .and_then(|program| {
            let _ = channel::send(control.as_fd(), &Report::Ready, &[]);
            wait_for_exec(&control, program, &mut collect_spec)
        });
    let mut attached = None;
    let (report, code) = match result {
        Ok((pid, forked_at)) => {
            // the runner starts its wall clock and CPU baseline on this; the program's pidfd
            // comes with it, so the runner can signal the program itself (a live run's
            // SIGINT). Opened before any `waitpid`: the unreaped pid cannot be reused.
            let pidfd = sys::pidfd_open(pid).ok();
            let raw: Vec<RawFd> = pidfd.iter().map(AsRawFd::as_raw_fd).collect();
            let _ = channel::send(control.as_fd(), &Report::Started, &raw);
            drop(pidfd);
            let (status, wall_us) = supervise(pid, forked_at);
            // a Collect sent before the start may still wait in the socket
            while let Ok(Received::Message(Command::Collect(spec), _)) = channel::recv::<Command>(control.as_fd(), true)
            {
                collect_spec = Some(spec);
            }
            let files = collect_spec.map(|spec| match collect::collect("/sandbox", spec) {
                Ok((found, memfd)) => {
                    attached = Some(memfd);
                    Ok(found)
                }
                Err(e) => Err(format!("collecting /sandbox: {}", e.desc())),
            });
            (Report::Exited { status, wall_us, files }, 0)
        }
        Err(Failure::Setup(e)) => {
            (Report::SetupFailed { step: e.step.into(), errno: e.errno.map(|e| e as i32), detail: e.detail }, 1)
        }
        Err(Failure::Exec(errno)) => (Report::ExecFailed { errno: errno as i32 }, 1),
    };
    let fds: Vec<RawFd> = attached.iter().map(AsRawFd::as_raw_fd).collect();
    if channel::send(control.as_fd(), &report, &fds).is_err() {
        // the report must arrive: again without the files, saying why
        if let Report::Exited { status, wall_us, files: Some(_) } = report {
            let files = Some(Err("the collected files could not be sent".to_owned()));
            let _ = channel::send(control.as_fd(), &Report::Exited { status, wall_us, files }, &[]);
        }
    }
    sys::exit_now(code)
}

fn prepare(req: &SpawnRequest, root: &std::path::Path, released: OwnedFd) -> Result<(), Failure> {
    let got = loop {
        match channel::recv::<Release>(released.as_fd(), false) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(step("wait for the zygote"))?,
        }
    };
    let Received::Message(release, trees) = got else {
        // the zygote could not place us; it has killed us already, or is about to
        return Err(StepError::new("wait for the zygote", Some(Errno::EPIPE), "not released".into()).into());
    };
    drop(released);
    become_root().map_err(step("become root of the user namespace"))?;
    if release.idmapped.len() + release.mounts.len() != trees.len() {
        return Err(StepError::new("idmapped image", None, "names and trees differ".into()).into());
    }
    let mut trees = trees.into_iter();
    let image: Vec<OwnedFd> = trees.by_ref().take(release.idmapped.len()).collect();
    let extras: Vec<(String, OwnedFd)> = release.mounts.into_iter().zip(trees).collect();
    // the image's directories, root's inside: each covers the plain bind of its name
    for (name, tree) in release.idmapped.iter().zip(&image) {
        super::check_relative_path(name).map_err(|why| StepError::new("idmapped image", None, why))?;
        let target = root.join(name);
        sys::move_mount_onto(tree.as_fd(), &target)
            .map_err(|e| StepError::new("attach an idmapped image directory", Some(e), target.display().to_string()))?;
    }
    drop(image);
    mounts::attach_extras(root, &extras, req.network.is_some())?;
    drop(extras);
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set parent-death signal"))?;
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(step("unshare the cgroup namespace"))?;
    mounts::enter_root(root, req)?;
    nix::unistd::sethostname(&req.hostname).map_err(step("sethostname"))?;
    sys::loopback_up().map_err(step("bring up loopback"))?;
    if let Some(link) = &req.network {
        configure_eth0(link)?;
    }
    Ok(())
}

/// Our end of the veth pair the zygote made: address, up, default route through the host
/// end. As root of the user namespace that owns this network namespace we may; the
/// program, unprivileged, may not change any of it.
fn configure_eth0(link: &NetLink) -> Result<(), StepError> {
    let fail = |what: &'static str| move |e: NetlinkError| StepError::new(what, Some(e.errno), "eth0".into());
    let mut rtnl = Rtnl::open().map_err(fail("open a netlink socket"))?;
    let index = rtnl
        .link_index("eth0")
        .map_err(fail("find the network link"))?
        .ok_or_else(|| StepError::new("find the network link", Some(Errno::ENODEV), "eth0".into()))?;
    // IPv4 only: the host drops IPv6 from sandboxes anyway; none is sent from here either
    let v6 = std::path::Path::new("/proc/sys/net/ipv6/conf/eth0/disable_ipv6");
    if v6.exists() {
        std::fs::write(v6, "1").map_err(|e| {
            StepError::new("turn IPv6 off on the network link", e.raw_os_error().map(Errno::from_raw), e.to_string())
        })?;
    }
    rtnl.add_address_v4(index, link.sandbox_addr, link.prefix_len).map_err(fail("address the network link"))?;
    rtnl.set_up(index).map_err(fail("bring up the network link"))?;
    rtnl.add_default_route_v4(link.host_addr).map_err(fail("add the default route"))
}

fn next_command(control: &OwnedFd) -> Result<(Command, Vec<OwnedFd>), StepError> {
    match channel::recv::<Command>(control.as_fd(), false) {
        Ok(Received::Message(c, fds)) => Ok((c, fds)),
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

fn fork_program(
    req: &SpawnRequest,
    filter: &seccompiler::BpfProgram,
    stdio: Stdio,
    start: OwnedFd,
) -> Result<Program, Failure> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(step("create a pipe"))?;
    match sys::fork_child().map_err(step("fork the program"))? {
        Forked::Child => {
            drop(report_r);
            exec::run(req.program_id, filter, stdio, start, report_w)
        }
        Forked::Parent(pid) => {
            // Our copies would keep the pipes open after the program's tree is gone.
            drop((stdio, start, report_w));
            Ok(Program { pid, report: report_r })
        }
    }
}

/// Until the program's `execve` succeeds (its report pipe reaches EOF) or fails, serves
/// the runner's resize requests and notes a collect request. Returns the program's pid and
/// when it started.
fn wait_for_exec(
    control: &OwnedFd,
    program: Program,
    collect: &mut Option<CollectSpec>,
) -> Result<(Pid, Instant), Failure> {
    loop {
        let mut fds =
            [PollFd::new(control.as_fd(), PollFlags::POLLIN), PollFd::new(program.report.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(step("poll")(e).into()),
        }
        if fds[1].any().unwrap_or(false) {
            return exec_result(&program);
        }
        if fds[0].any().unwrap_or(false) {
            match next_command(control)?.0 {
                Command::Resize(sizes) => {
                    mounts::resize(&sizes)?;
                    let _ = channel::send(control.as_fd(), &Report::Resized, &[]);
                }
                Command::Collect(spec) => *collect = Some(spec),
            }
        }
    }
}

/// Reads the program's report pipe: EOF means its `execve` succeeded.
fn exec_result(program: &Program) -> Result<(Pid, Instant), Failure> {
    let mut msg = [0u8; 5];
    let n = loop {
        match read(&program.report, &mut msg) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(step("read the exec report"))?,
        }
    };
    if n == 0 {
        return Ok((program.pid, Instant::now()));
    }
    let _ = waitpid(program.pid, None);
    let errno = Errno::from_raw(i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]));
    match exec::STEP_NAMES.get(usize::from(msg[0])) {
        Some(_) if msg[0] == 0 => Err(Failure::Exec(errno)),
        Some(name) => Err(Failure::Setup(StepError::new(name, Some(errno), String::new()))),
        None => Err(Failure::Setup(StepError::new("prepare the program", Some(errno), String::new()))),
    }
}

/// Reaps every child until the program itself exits; then kills the whole namespace
/// (background children, stopped ones) and reaps the rest. `kill(-1)` from PID 1 reaches
/// every other process in its pid namespace.
fn supervise(program: Pid, released: Instant) -> (ExitStatus, u64) {
    let status = loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == program => break ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == program => break ExitStatus::Signal(sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            // cannot happen while the program is our child; report as killed
            Err(_) => break ExitStatus::Signal(Signal::SIGKILL as i32),
        }
    };
    let wall_us = u64::try_from(released.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(waitpid(None, None), Err(Errno::ECHILD)) {}
    (status, wall_us)
}
