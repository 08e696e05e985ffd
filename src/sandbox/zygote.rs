//! The zygote: a single-threaded process forked from the runner before the runner starts
//! any thread. It prepares the root filesystems once, in a private mount namespace, and then
//! serves spawn requests with one `clone3` each: the clone, born in fresh namespaces,
//! becomes the sandbox's PID 1 and, thanks to `CLONE_PARENT`, a child of the runner, which
//! can wait for it and whose pid it keeps until then.
//!
//! This is how the multi-threaded daemon never runs Rust between fork and exec: all the
//! code after a fork runs in processes descended from this single-threaded one.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use super::channel::{self, Received};
use super::init::{self, Fds};
use super::netlink::Rtnl;
use super::spec::{HostMount, NetLink, RootSpec, SpawnRequest};
use super::sys::{self, Forked};
use super::{SandboxError, StepError, close_all_but, mounts};

/// What the zygote needs to know once, at start.
#[derive(Debug, Clone)]
pub struct ZygoteConfig {
    /// A directory the zygote may mount over in its private mount namespace (the runner's
    /// state dir); the prepared roots live there, invisible to the host.
    pub state_dir: PathBuf,
    /// The root filesystems; a spawn request names one by index.
    pub roots: Vec<RootSpec>,
    /// The seccomp program every program gets (one program: one JIT per run).
    pub filter: BpfProgram,
    /// Host directories a spawn request may ask for (by index), each bound once here.
    pub mounts: Vec<HostMount>,
    /// The `/etc/resolv.conf` of sandboxes with a network link (bound over their own).
    pub resolv_conf: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Ready,
    Spawned { pid: i32 },
    Failed { message: String },
}

/// The runner's handle on its zygote.
#[derive(Debug)]
pub struct Zygote {
    sock: Mutex<Option<OwnedFd>>,
    pid: Pid,
}

/// The descriptors a new sandbox starts with.
#[derive(Debug)]
pub struct SpawnFds<'a> {
    /// The sandbox's end of its [`super::Channel`].
    pub control: BorrowedFd<'a>,
    /// Read end of the stdin pipe.
    pub stdin: BorrowedFd<'a>,
    /// Write end of the stdout pipe.
    pub stdout: BorrowedFd<'a>,
    /// Write end of the stderr pipe.
    pub stderr: BorrowedFd<'a>,
    /// The sandbox's end of its [`super::Starter`].
    pub start: BorrowedFd<'a>,
    /// A cgroup2 directory to clone PID 1 into.
    pub cgroup_dir: Option<BorrowedFd<'a>>,
    /// `cgroup.procs` files (open for writing) to write PID 1's pid into.
    pub cgroup_procs: Vec<BorrowedFd<'a>>,
}

/// A sandbox's PID 1, a child of the calling process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid in our pid namespace.
    pub pid: Pid,
    /// A pidfd for it: signals and waits never hit a recycled pid.
    pub pidfd: OwnedFd,
}

impl Zygote {
    /// Forks the zygote and waits until its roots are prepared. The caller must be
    /// single-threaded (checked: `SandboxError::NotSingleThreaded`).
    pub fn start(config: ZygoteConfig) -> Result<Self, SandboxError> {
        let (ours, theirs) = channel::seqpacket_pair().map_err(|e| SandboxError::Zygote(format!("socketpair: {e}")))?;
        match sys::fork_single_threaded() {
            Err(Errno::EDEADLK) => Err(SandboxError::NotSingleThreaded),
            Err(e) => Err(SandboxError::Zygote(format!("fork: {e}"))),
            Ok(Forked::Child) => {
                drop(ours);
                serve(theirs, &config)
            }
            Ok(Forked::Parent(pid)) => {
                drop(theirs);
                let zygote = Zygote { sock: Mutex::new(Some(ours)), pid };
                match zygote.receive()? {
                    (Reply::Ready, _) => Ok(zygote),
                    (Reply::Failed { message }, _) => Err(SandboxError::Zygote(message)),
                    (other, _) => Err(SandboxError::Zygote(format!("unexpected reply {other:?}"))),
                }
            }
        }
    }

    /// Clones a sandbox's PID 1, writes its id maps, puts it into its cgroup and releases
    /// it; it sets itself up and reports `Ready`; its program process then waits for
    /// [`super::Starter::start`].
    pub fn spawn(&self, req: &SpawnRequest, fds: &SpawnFds<'_>) -> Result<Spawned, SandboxError> {
        let mut raw: Vec<RawFd> =
            [fds.control, fds.stdin, fds.stdout, fds.stderr, fds.start].iter().map(AsRawFd::as_raw_fd).collect();
        raw.extend(fds.cgroup_dir.iter().chain(&fds.cgroup_procs).map(AsRawFd::as_raw_fd));
        if req.into_cgroup != fds.cgroup_dir.is_some() || req.cgroup_procs != fds.cgroup_procs.len() {
            return Err(SandboxError::Spawn("the request and its cgroup descriptors disagree".into()));
        }
        let guard = self.sock.lock().map_err(|_| SandboxError::Zygote("zygote lock poisoned".into()))?;
        let sock = guard.as_ref().ok_or_else(|| SandboxError::Zygote("zygote stopped".into()))?;
        channel::send(sock.as_fd(), req, &raw).map_err(|e| SandboxError::Zygote(format!("send to zygote: {e}")))?;
        let (reply, mut got) = receive_on(sock.as_fd())?;
        drop(guard);
        match reply {
            Reply::Spawned { pid } if got.len() == 1 => Ok(Spawned { pid: Pid::from_raw(pid), pidfd: got.remove(0) }),
            Reply::Failed { message } => {
                // a child that was made and killed is ours to reap
                for pidfd in got {
                    let _ = super::reap(pidfd.as_fd());
                }
                Err(SandboxError::Spawn(message))
            }
            other => Err(SandboxError::Zygote(format!("unexpected reply {other:?}"))),
        }
    }

    fn receive(&self) -> Result<(Reply, Vec<OwnedFd>), SandboxError> {
        let guard = self.sock.lock().map_err(|_| SandboxError::Zygote("zygote lock poisoned".into()))?;
        let sock = guard.as_ref().ok_or_else(|| SandboxError::Zygote("zygote stopped".into()))?;
        receive_on(sock.as_fd())
    }
}

fn receive_on(sock: BorrowedFd<'_>) -> Result<(Reply, Vec<OwnedFd>), SandboxError> {
    match channel::recv::<Reply>(sock, false) {
        Ok(Received::Message(r, fds)) => Ok((r, fds)),
        Ok(_) => Err(SandboxError::Zygote("the zygote exited".into())),
        Err(e) => Err(SandboxError::Zygote(format!("receive from zygote: {e}"))),
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // closing the socket ends the zygote's loop; then reap it
        if let Ok(mut g) = self.sock.lock() {
            g.take();
        }
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// The zygote's main: prepare, report, serve. Never returns.
fn serve(sock: OwnedFd, config: &ZygoteConfig) -> ! {
    let mut state = match prepare(&sock, config) {
        Ok(state) => state,
        Err(e) => {
            let _ = channel::send(sock.as_fd(), &Reply::Failed { message: e.to_string() }, &[]);
            sys::exit_now(1)
        }
    };
    if channel::send(sock.as_fd(), &Reply::Ready, &[]).is_err() {
        sys::exit_now(1);
    }
    loop {
        let (req, fds) = match channel::recv::<SpawnRequest>(sock.as_fd(), false) {
            Ok(Received::Message(req, fds)) => (req, fds),
            Ok(_) => sys::exit_now(0),
            Err(Errno::EBADMSG) => {
                let _ = channel::send(sock.as_fd(), &Reply::Failed { message: "malformed spawn request".into() }, &[]);
                continue;
            }
            Err(_) => sys::exit_now(0),
        };
        let sent = match spawn(&req, fds, &mut state, &config.filter) {
            Ok(child) => {
                let reply = Reply::Spawned { pid: child.pid.as_raw() };
                channel::send(sock.as_fd(), &reply, &[child.pidfd.as_raw_fd()])
            }
            // the runner reaps the killed child through the pidfd that comes along
            Err(Ok(Broken { message, child })) => {
                channel::send(sock.as_fd(), &Reply::Failed { message }, &[child.pidfd.as_raw_fd()])
            }
            Err(Err(message)) => channel::send(sock.as_fd(), &Reply::Failed { message }, &[]),
        };
        if sent.is_err() {
            sys::exit_now(0);
        }
    }
}

/// What the zygote made once and serves every spawn from.
struct State {
    roots: Vec<Prepared>,
    /// Where each host mount is bound (in the zygote's mount namespace), and whether it
    /// is writable.
    mounts: Vec<(PathBuf, bool)>,
    /// Names of the host mounts, their mount points under `/mnt`.
    mount_names: Vec<String>,
    /// A route netlink socket in the host's network namespace, opened on first use.
    rtnl: Option<Rtnl>,
}

/// Detach from the runner's session and descriptors, take a private mount namespace, and
/// build every root under a tmpfs over the state dir, with the host mounts and the
/// network sandboxes' `resolv.conf` beside them.
fn prepare(sock: &OwnedFd, config: &ZygoteConfig) -> Result<State, StepError> {
    let step = |name: &'static str| move |e: Errno| StepError::new(name, Some(e), String::new());
    nix::unistd::setsid().map_err(step("setsid"))?;
    // the runner's handlers (e.g. the CLI's SIGINT flag) mean nothing here or in PID 1
    sys::reset_signals().map_err(step("reset signals"))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set parent-death signal"))?;
    let devnull =
        std::fs::File::open("/dev/null").map_err(|e| StepError::new("open /dev/null", None, e.to_string()))?;
    nix::unistd::dup2_stdin(&devnull).map_err(step("redirect stdin"))?;
    nix::unistd::dup2_stdout(&devnull).map_err(step("redirect stdout"))?;
    drop(devnull);
    close_all_but(&[sock.as_raw_fd()]).map_err(step("close inherited descriptors"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(step("unshare the mount namespace"))?;
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(step("make mounts private"))?;
    let state = &config.state_dir;
    mount(
        Some("codeexec-zygote"),
        state,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .map_err(|e| StepError::new("mount the zygote's tmpfs", Some(e), state.display().to_string()))?;
    let mount_names: Vec<String> = config.mounts.iter().map(|m| m.name.clone()).collect();
    let mut dirs = Vec::with_capacity(config.roots.len());
    for (i, spec) in config.roots.iter().enumerate() {
        let name = format!("root-{i}");
        mounts::prepare_root(&state.join(&name), spec, &mount_names)?;
        dirs.push(Prepared { path: Path::new("/").join(name), idmapped: mounts::idmapped_dirs(spec)? });
    }
    let mut binds = Vec::with_capacity(config.mounts.len());
    for (i, m) in config.mounts.iter().enumerate() {
        let name = format!("mount-{i}");
        mounts::bind_host_dir(&m.path, &state.join(&name))?;
        binds.push((Path::new("/").join(name), m.writable));
    }
    if let Some(text) = &config.resolv_conf {
        mounts::prepare_net_etc(&state.join(mounts::NET_ETC), text)?;
    }
    mounts::prepare_masks(&state.join(mounts::MASKS))?;
    mounts::shrink_to(state)?;
    Ok(State { roots: dirs, mounts: binds, mount_names, rtnl: None })
}

/// A root as the zygote prepared it.
struct Prepared {
    /// Where it is (in the zygote's mount namespace, which every sandbox starts from).
    path: PathBuf,
    /// Its top-level directories each sandbox gets idmapped (an image's).
    idmapped: Vec<String>,
}

/// What the zygote sends PID 1 to let it go on: the names of the idmapped trees that come
/// with the message, in order (each goes on top of the root's entry of that name), then
/// the names of the host mounts that follow them (each goes on `/mnt/<name>`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Release {
    pub(super) idmapped: Vec<String>,
    pub(super) mounts: Vec<String>,
}

/// A spawn that went wrong after the clone: the child exists (and is killed); the runner,
/// its parent, must reap it.
struct Broken {
    message: String,
    child: sys::Cloned,
}

/// One clone into fresh namespaces; the child runs PID 1 and never comes back here. The
/// zygote then writes the child's id maps and puts it in its cgroups (unless it was born in
/// the only one, `CLONE_INTO_CGROUP`) and releases it through a pipe. Doing this here, not
/// in the runner, saves a round trip through the runner before PID 1 may go on.
fn spawn(
    req: &SpawnRequest,
    fds: Vec<OwnedFd>,
    state: &mut State,
    filter: &BpfProgram,
) -> Result<sys::Cloned, Result<Broken, String>> {
    let prepared = state.roots.get(req.root).ok_or_else(|| Err(format!("no root {}", req.root)))?;
    if let Some(&bad) = req.mounts.iter().find(|&&i| i >= state.mounts.len()) {
        return Err(Err(format!("no host mount {bad}")));
    }
    let root: &Path = &prepared.path;
    let want = 5 + usize::from(req.into_cgroup) + req.cgroup_procs;
    if fds.len() != want {
        return Err(Err(format!("a spawn request carries {want} descriptors, not {}", fds.len())));
    }
    let mut fds = fds.into_iter();
    let mut next = || fds.next().ok_or_else(|| Err("missing descriptor".to_string()));
    let pid1_fds = Fds { control: next()?, stdin: next()?, stdout: next()?, stderr: next()?, start: next()? };
    let cgroup_dir = if req.into_cgroup { Some(next()?) } else { None };
    let procs: Vec<OwnedFd> = fds.collect();
    let (go_r, go_w) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Err(format!("socketpair: {e}")))?;
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_PARENT;
    let flags = u64::try_from(flags).map_err(|e| Err(e.to_string()))?;
    let child = match sys::clone_into_namespaces(flags, cgroup_dir.as_ref().map(AsFd::as_fd)) {
        Ok(Forked::Child) => {
            drop(go_w);
            init::run(req, root, filter, pid1_fds, go_r)
        }
        Ok(Forked::Parent(child)) => child,
        Err(e) => return Err(Err(format!("clone3 into new namespaces: {e}"))),
    };
    drop((pid1_fds, go_r));
    let placed = place(&child, req, &procs)
        .and_then(|()| match &req.network {
            Some(link) => connect(&mut state.rtnl, &child, link),
            None => Ok(()),
        })
        .and_then(|()| release(&child, req, state, &go_w));
    match placed {
        Ok(()) => Ok(child),
        Err(message) => {
            let _ = super::kill(child.pidfd.as_fd());
            Err(Ok(Broken { message, child }))
        }
    }
}

/// Id maps, then the v1 `cgroup.procs` writes (the cgroup namespace PID 1 makes next must
/// be rooted at the run's cgroups, so this comes before its release).
fn place(child: &sys::Cloned, req: &SpawnRequest, procs: &[OwnedFd]) -> Result<(), String> {
    super::write_id_maps(child.pid, &req.ids).map_err(|e| crate::error_chain(&e))?;
    let pid = child.pid.as_raw().to_string();
    for fd in procs {
        nix::unistd::write(fd, pid.as_bytes()).map_err(|e| format!("writing the pid into cgroup.procs: {e}"))?;
    }
    Ok(())
}

/// Gives PID 1 its link out: the veth pair, its host end addressed and up, forwarding on
/// it and IPv6 off (the host's firewall filters IPv4 only, so no IPv6 may pass at all).
/// A leftover of the same name (a runner that died before deleting it) is replaced.
fn connect(rtnl: &mut Option<Rtnl>, child: &sys::Cloned, link: &NetLink) -> Result<(), String> {
    let rtnl = match rtnl {
        Some(r) => r,
        None => rtnl.insert(Rtnl::open().map_err(|e| crate::error_chain(&e))?),
    };
    let name = &link.host_if;
    let index = match rtnl.add_veth(name, "eth0", child.pid.as_raw()) {
        Err(e) if e.errno == Errno::EEXIST => {
            rtnl.delete_link(name).map_err(|e| format!("deleting a leftover {name}: {}", crate::error_chain(&e)))?;
            rtnl.add_veth(name, "eth0", child.pid.as_raw())
        }
        other => other,
    }
    .map_err(|e| format!("creating the veth pair {name}: {}", crate::error_chain(&e)))?;
    let configured = host_end_sysctls(name)
        .and_then(|()| rtnl.add_address_v4(index, link.host_addr, link.prefix_len).map_err(|e| crate::error_chain(&e)))
        .and_then(|()| rtnl.set_up(index).map_err(|e| crate::error_chain(&e)));
    if let Err(e) = configured {
        let _ = rtnl.delete_link(name);
        return Err(format!("configuring {name}: {e}"));
    }
    Ok(())
}

/// Forwarding on (the packets a sandbox sends arrive on this interface; forwarding is
/// decided per incoming interface), IPv6 off.
fn host_end_sysctls(name: &str) -> Result<(), String> {
    let write = |path: String| std::fs::write(&path, "1").map_err(|e| format!("{path}: {e}"));
    write(format!("/proc/sys/net/ipv4/conf/{name}/forwarding"))?;
    let v6 = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    // a host without IPv6 has no such file, and nothing to disable
    if Path::new(&v6).exists() { write(v6) } else { Ok(()) }
}

/// Lets PID 1 go on: a message on the socket it waits on, with the idmapped copies of
/// its image's directories and of the host mounts it asked for, made here (an idmapped
/// mount needs the initial user namespace's privileges) through PID 1's user namespace,
/// whose maps are written by now.
fn release(child: &sys::Cloned, req: &SpawnRequest, state: &State, go: &OwnedFd) -> Result<(), String> {
    let root = state.roots.get(req.root).ok_or_else(|| format!("no root {}", req.root))?;
    let idmapped = &root.idmapped;
    let mut trees = Vec::with_capacity(idmapped.len() + req.mounts.len());
    let mut names = Vec::with_capacity(req.mounts.len());
    if !idmapped.is_empty() || !req.mounts.is_empty() {
        let ns = format!("/proc/{}/ns/user", child.pid);
        let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
        let userns = nix::fcntl::open(ns.as_str(), flags, nix::sys::stat::Mode::empty())
            .map_err(|e| format!("opening {ns}: {e}"))?;
        // the image's directories: copies of the root's read-only binds of them (the
        // image's own path is not in the zygote's mount namespace); then the host mounts,
        // whose owners 0 and 1000 become root and the program inside
        let wanted = req.mounts.iter().map(|&i| (&state.mounts[i].0, state.mounts[i].1));
        let sources = idmapped.iter().map(|name| (root.path.join(name), false));
        for (src, writable) in sources.chain(wanted.map(|(p, w)| (p.clone(), w))) {
            let tree = sys::open_tree_clone(&src).map_err(|e| format!("open_tree {}: {e}", src.display()))?;
            sys::idmap(tree.as_fd(), userns.as_fd(), writable)
                .map_err(|e| format!("idmapping {}: {e}", src.display()))?;
            trees.push(tree);
        }
        names.extend(req.mounts.iter().map(|&i| state.mount_names[i].clone()));
    }
    let msg = Release { idmapped: idmapped.clone(), mounts: names };
    let fds: Vec<RawFd> = trees.iter().map(AsRawFd::as_raw_fd).collect();
    channel::send(go.as_fd(), &msg, &fds).map_err(|e| format!("releasing PID 1: {e}"))
}
