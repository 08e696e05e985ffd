//! Orchestration of runs: a request becomes a prepared sandbox (taken warm from the pool
//! or prepared on demand), a start request, a supervised run and a verdict; every resource
//! is released whatever happened. The steps of one run, in order:
//! 1. validate the request and plan the start (env, rlimits, files: `plan`);
//! 2. take a prepared sandbox: slot (host-wide lock), cgroup, PID 1 spawned through the
//!    zygote, id maps, cgroup attach, setup (`prepared`, `pool`);
//! 3. set the cgroup limits, send the start request, watch until the program is done
//!    (`supervise`), read the cgroup's accounting and decide (`verdict`);
//! 4. kill and reap PID 1, remove the cgroup, release the slot (on this thread, or on
//!    the cleaner's when sandboxes are kept warm).

mod cross;
mod gate;
mod live;
mod outcome;
mod plan;
mod pool;
mod prepared;
mod slot;
mod supervise;
mod verdict;

use std::path::PathBuf;
use std::sync::Arc;

pub use cross::{Plug, Relay, Side, Transcript, cross};
pub use live::{ALLOWED_SIGNALS, Control, ControlError, Event, Live, parse_signal};
pub use outcome::{Exceeded, FileContent, OutputFile, RunOutcome, Status};
pub use plan::check_files;
pub use prepared::{MAX_OUTPUT_BYTES, MAX_OUTPUT_FILES};
pub use verdict::signal_name;

use crate::cgroup::{CgroupError, Hierarchy};
use crate::error_chain as chain;
use crate::limit::{LimitError, Limits};
use crate::network::{AllowEntry, Egress, EgressConfig, NetError};
use crate::sandbox::{HostMount, SandboxError, TmpfsSizes, Zygote, ZygoteConfig};
use crate::seccomp::{self, SeccompError};

/// How a runner is set up; every host path is here, so tests can move them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Slot locks and the zygote's private mounts live here.
    pub state_dir: PathBuf,
    /// Name of our parent cgroup in each hierarchy.
    pub cgroup_parent: String,
    /// The mount table to find cgroup hierarchies in.
    pub mountinfo: PathBuf,
    /// First host uid/gid of ours; slot `n` uses `uid_base + 2n` (root inside) and `+ 1`.
    pub uid_base: u32,
    /// How many runs may exist at once on this host (all codeexec processes together).
    pub slots: u32,
    /// A directory to use as the root instead of the host's own.
    pub rootfs: Option<PathBuf>,
    /// `rootfs` is an image's unpacked tree (see `extra_roots`).
    pub rootfs_is_image: bool,
    /// More roots a request may ask for (`RunRequest::root` 1, 2, …): images' unpacked
    /// trees. The zygote prepares each once; every run on one shares it, read-only, its
    /// directories idmapped per sandbox so that the image's files are root's inside.
    pub extra_roots: Vec<PathBuf>,
    /// The seccomp profile (a `seccomp/<name>.json` compiled in).
    pub seccomp_profile: String,
    /// Sandboxes kept prepared ahead of requests (0: prepare each on demand). With any,
    /// a background thread refills them and another tears used ones down, so neither
    /// preparing nor tearing down is on a request's path.
    pub warm: usize,
    /// Network runs: how their traffic leaves, and how many may run at once (`None`: a
    /// request asking for the network is refused).
    pub network: Option<(EgressConfig, usize)>,
    /// Host directories runs may ask for by name, at `/mnt/<name>`.
    pub mounts: Vec<HostMount>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/run/codeexec"),
            cgroup_parent: "codeexec".into(),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            uid_base: 2_000_000_000,
            slots: 1024,
            rootfs: None,
            rootfs_is_image: false,
            extra_roots: Vec::new(),
            seccomp_profile: "default".into(),
            warm: 0,
            network: None,
            mounts: Vec::new(),
        }
    }
}

/// A file to put in `/sandbox` before the program starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to `/sandbox`.
    pub path: String,
    /// Its bytes.
    pub contents: Vec<u8>,
    /// Mode 0755 instead of 0644.
    pub executable: bool,
}

/// Cancels a run from another thread (a client that went away, a shutdown): the run's
/// supervision loop polls this eventfd and kills the sandbox when it fires.
#[derive(Debug, Clone)]
pub struct Cancel {
    fd: Arc<nix::sys::eventfd::EventFd>,
    /// Set with the eventfd, so work between runs can ask without polling.
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl Cancel {
    /// A new, unfired token.
    pub fn new() -> Result<Self, RunError> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let fd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(sys("eventfd"))?;
        Ok(Cancel { fd: Arc::new(fd), fired: Arc::default() })
    }

    /// Fires the token; a run watching it is killed (its outcome: `internal_error`).
    pub fn cancel(&self) {
        self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.fd.write(1);
    }

    /// Whether it has fired (then no new run should start).
    pub fn is_cancelled(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.fd)
    }
}

/// One program to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The command and its arguments; a bare name is looked up in `PATH` inside.
    pub argv: Vec<String>,
    /// Environment on top of the base one (`PATH`, `HOME=/sandbox`, `LANG=C.UTF-8`).
    pub env: Vec<(String, String)>,
    /// Bytes fed to the program's stdin (then EOF).
    pub stdin: Vec<u8>,
    /// Files created in `/sandbox`.
    pub files: Vec<InputFile>,
    /// The limits.
    pub limits: Limits,
    /// Fires to kill the run early.
    pub cancel: Option<Cancel>,
    /// Return what `/sandbox` holds when the program is over ([`RunOutcome::files`]).
    pub collect_files: bool,
    /// Which root: 0 is the runner's own (`RunnerConfig::rootfs`), `n` the
    /// `RunnerConfig::extra_roots[n - 1]`.
    pub root: usize,
    /// A network link, host mounts.
    pub access: Access,
    /// A live run: output forwarded as it comes, stdin and signals from the caller.
    pub live: Option<Live>,
    /// Cross-connected with another run ([`cross`]): the program's stdin and stdout go to
    /// the relay (then `stdin` is not fed and its stdout not captured).
    pub plug: Option<Plug>,
}

/// What a run may reach beyond its sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// A network link (only when the runner has `network`).
    pub network: Option<NetAccess>,
    /// Host directories to attach, by name (each at `/mnt/<name>`).
    pub mounts: Vec<String>,
}

/// A run's network access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetAccess {
    /// Reach only these (and the resolver); `None`: whatever the egress allows.
    pub allow: Option<Vec<AllowEntry>>,
}
/// The uid and gid the program runs as inside the sandbox.
pub const PROGRAM_ID: u32 = 1000;

/// Why a run could not even be attempted, or a runner not started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not root, or missing a capability the sandbox needs.
    #[error("not enough privileges: {0}; run codeexec as root (it needs CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID)")]
    NotPrivileged(String),
    /// The request is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A limit is out of range.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Every slot is taken.
    #[error("all {0} run slots are in use")]
    Busy(u32),
    /// The rootfs is unusable.
    #[error("rootfs {path}: {why}")]
    Rootfs {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// cgroups are unusable.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The zygote could not start.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The seccomp profile does not exist.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// A thread could not be started.
    #[error("failed to start a thread")]
    Thread(#[source] std::io::Error),
    /// The network egress could not be set up.
    #[error("network runs could not be set up")]
    Network(#[from] NetError),
    /// The state directory is unusable.
    #[error("state directory {path}")]
    State {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a runner was set up with.
#[derive(Debug, Clone)]
pub struct RunnerInfo {
    /// `host`, or the root directory.
    pub rootfs: String,
    /// The seccomp profile.
    pub seccomp_profile: String,
    /// Its program's length.
    pub seccomp_instructions: usize,
}

/// Runs programs in sandboxes. Start it while the process is single-threaded (it forks
/// the zygote); after that it may be shared by any number of threads.
#[derive(Debug)]
pub struct Runner {
    // Fields drop in this order: the pool's sandboxes, then every used one (the cleaner
    // joins), and only then the zygote and our parent cgroups (in `Inner`).
    /// One pool of warm sandboxes per root (none when `warm` is 0).
    pools: Vec<pool::Pool>,
    cleaner: pool::Cleaner,
    inner: Arc<Inner>,
}

/// What preparing and running sandboxes needs; shared with the pool's threads.
#[derive(Debug)]
struct Inner {
    zygote: Zygote,
    cgroups: Hierarchy,
    slots: slot::SlotPool,
    config: RunnerConfig,
    /// CPUs of the host: a run's CPU time grows at most this fast (or its quota's).
    host_cores: f64,
    /// Length of the installed seccomp program.
    seccomp_instructions: usize,
    /// The network egress (its table lives as long as this).
    egress: Option<Egress>,
    /// Network runs at once.
    net_gate: gate::Gate,
}

impl Runner {
    /// Checks privileges, finds and prepares the cgroups, loads the seccomp profile and
    /// forks the zygote, which prepares the root filesystem; then starts the thread that
    /// tears used sandboxes down and, with `warm` > 0, the one that keeps some prepared.
    pub fn start(config: RunnerConfig) -> Result<Self, RunError> {
        check_privileges()?;
        let mut roots = vec![plan::root_spec(config.rootfs.as_deref(), config.rootfs_is_image)?];
        for r in &config.extra_roots {
            roots.push(plan::root_spec(Some(r), true)?);
        }
        let state = |source| RunError::State { path: config.state_dir.clone(), source };
        std::fs::create_dir_all(&config.state_dir).map_err(state)?;
        let slots = slot::SlotPool::new(config.state_dir.join("slots"), config.slots).map_err(state)?;
        let cgroups = Hierarchy::detect(&config.mountinfo, &config.cgroup_parent)?;
        cgroups.prepare()?;
        tracing::info!(layout = %cgroups.describe(), "cgroups");
        collect_leftovers(&cgroups, &slots);
        let filter = seccomp::program(&config.seccomp_profile)?;
        let seccomp_instructions = filter.len();
        let mut egress = match &config.network {
            Some((net, _)) => {
                warn_without_resolv_conf(&roots);
                remove_leftover_links(&slots);
                let egress = Egress::install(net.clone())?;
                tracing::info!(uplink = egress.uplink(), subnet = %net.subnet, resolver = %net.resolver, "network runs enabled");
                Some(egress)
            }
            None => None,
        };
        let zygote = Zygote::start(ZygoteConfig {
            state_dir: config.state_dir.clone(),
            roots,
            filter,
            mounts: config.mounts.clone(),
            resolv_conf: egress.as_ref().map(|e| e.config().resolv_conf()),
        })?;
        if let Some(e) = egress.as_mut() {
            // threads only now: the zygote is forked
            e.watch(cut_every_link).map_err(RunError::Thread)?;
        }
        let net_gate = gate::Gate::new(config.network.as_ref().map_or(1, |n| n.1));
        let host_cores = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
        let warm = config.warm;
        let inner =
            Arc::new(Inner { zygote, cgroups, slots, config, host_cores, seccomp_instructions, egress, net_gate });
        inner.try_extras()?;
        let cleaner = pool::Cleaner::start()?;
        let roots = if warm > 0 { inner.config.extra_roots.len() + 1 } else { 0 };
        let pools =
            (0..roots).map(|root| pool::Pool::start(Arc::clone(&inner), warm, root)).collect::<Result<_, _>>()?;
        Ok(Runner { pools, cleaner, inner })
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> &Hierarchy {
        &self.inner.cgroups
    }

    /// What this runner was set up with, for health reports.
    pub fn info(&self) -> RunnerInfo {
        let c = &self.inner.config;
        RunnerInfo {
            rootfs: c.rootfs.as_ref().map_or_else(|| "host".to_owned(), |p| p.display().to_string()),
            seccomp_profile: c.seccomp_profile.clone(),
            seccomp_instructions: self.inner.seccomp_instructions,
        }
    }

    /// Runs one program to the end. `Err` only when the run could not be attempted (bad
    /// request, no free slot); anything that fails after is an `internal_error` outcome.
    pub fn run(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        let Some(live) = &req.live else { return self.run_once(req) };
        live.stage_event(true);
        let outcome = self.run_once(req);
        live.stage_event(false);
        outcome
    }

    fn run_once(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        req.limits.validate()?;
        if req.root > self.inner.config.extra_roots.len() {
            return Err(RunError::Invalid(format!(
                "no root {} (the runner has {})",
                req.root,
                self.inner.config.extra_roots.len() + 1
            )));
        }
        let extras = self.extras(req)?;
        let permits = match (&req.access.network, &self.inner.egress) {
            (Some(NetAccess { allow: Some(list) }), Some(egress)) => {
                Some(egress.resolve(list).map_err(RunError::Invalid)?)
            }
            _ => None,
        };
        let (start, files) = plan::start_request(req)?;
        let pass = if extras.network {
            match self.inner.net_gate.enter(req.cancel.as_ref()) {
                Some(p) => Some(p),
                None => return Ok(RunOutcome::internal("cancelled while waiting for a network run's turn".into())),
            }
        } else {
            None
        };
        // a warm sandbox has neither a network link nor host mounts
        let warm = if extras == prepared::Extras::default() {
            self.pools.get(req.root).and_then(pool::Pool::take)
        } else {
            None
        };
        let mut sandbox = match warm {
            Some(s) => s,
            None => {
                match self.inner.prepare(&start.sizes, req.root, &extras).and_then(|s| s.wait_ready().map(|()| s)) {
                    Ok(s) => s,
                    Err(e @ RunError::Busy(_)) => return Err(e),
                    Err(e) => return Ok(RunOutcome::internal(format!("preparing the sandbox: {}", chain(&e)))),
                }
            }
        };
        if let (Some(permits), Some(link), Some(egress)) = (permits, sandbox.link(), &self.inner.egress) {
            let ttl = req.limits.wall_time + std::time::Duration::from_secs(60);
            match egress.narrow(link.sandbox_addr, &permits, ttl) {
                Ok(n) => sandbox.hold(n),
                Err(e) => {
                    self.cleaner.discard(sandbox);
                    return Ok(RunOutcome::internal(format!("narrowing the network: {}", chain(&e))));
                }
            }
        }
        let cores = (f64::from(req.limits.cpu_millicores) / 1000.0).min(self.inner.host_cores).max(0.01);
        let outcome = sandbox.run(req, &start, files, cores);
        self.cleaner.discard(sandbox);
        drop(pass);
        Ok(outcome)
    }

    /// What the request asks beyond a plain sandbox, checked against the configuration.
    fn extras(&self, req: &RunRequest) -> Result<prepared::Extras, RunError> {
        let config = &self.inner.config;
        if req.access.network.is_some() && self.inner.egress.is_none() {
            return Err(RunError::Invalid("network runs are not enabled on this runner".into()));
        }
        let mut mounts = Vec::with_capacity(req.access.mounts.len());
        for name in &req.access.mounts {
            let i = config
                .mounts
                .iter()
                .position(|m| &m.name == name)
                .ok_or_else(|| RunError::Invalid(format!("no host mount named {name:?}")))?;
            if mounts.contains(&i) {
                return Err(RunError::Invalid(format!("host mount {name:?} is asked for twice")));
            }
            mounts.push(i);
        }
        let network = req.access.network.as_ref();
        Ok(prepared::Extras {
            network: network.is_some(),
            narrowed: network.is_some_and(|n| n.allow.is_some()),
            mounts,
        })
    }

    /// Whether network runs are enabled, and through which egress.
    pub fn egress(&self) -> Option<&Egress> {
        self.inner.egress.as_ref()
    }
}

impl Inner {
    /// Prepares a sandbox on this thread.
    fn prepare(
        &self,
        sizes: &TmpfsSizes,
        root: usize,
        extras: &prepared::Extras,
    ) -> Result<prepared::Prepared, RunError> {
        let slot =
            self.slots.acquire().map_err(|source| RunError::State { path: self.config.state_dir.clone(), source })?;
        let slot = slot.ok_or(RunError::Busy(self.config.slots))?;
        prepared::Prepared::new(self, slot, sizes, root, extras)
    }

    /// Prepares one sandbox with every host mount and, with network runs enabled, a link,
    /// and tears it down: a mount whose file system cannot be idmapped, or a host where
    /// veth pairs cannot be made, stops the start instead of failing every such run.
    fn try_extras(&self) -> Result<(), RunError> {
        let extras = prepared::Extras {
            network: self.egress.is_some(),
            narrowed: false,
            mounts: (0..self.config.mounts.len()).collect(),
        };
        if extras == prepared::Extras::default() {
            return Ok(());
        }
        let tried = self.prepare(&default_sizes(), 0, &extras).and_then(|s| s.wait_ready());
        tried.map_err(|e| RunError::Invalid(format!("a sandbox with the host mounts and network link: {}", chain(&e))))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cgroups.remove_parents();
    }
}

/// The sizes warm sandboxes are prepared with; a run with other limits resizes them.
fn default_sizes() -> TmpfsSizes {
    plan::tmpfs_sizes(&Limits::default())
}

/// Removes the cgroups of runs whose codeexec process died (killed, crashed): a run's
/// cgroup whose slot nobody holds is a leftover. Their processes died with them (PID 1
/// has a parent-death signal), but the directories stay until removed.
fn collect_leftovers(cgroups: &Hierarchy, slots: &slot::SlotPool) {
    let mut names: Vec<String> =
        cgroups.leftovers().iter().filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned)).collect();
    names.sort();
    names.dedup();
    for name in names {
        let Some(index) = slot::slot_of(&name) else { continue };
        if let Ok(Some(_held)) = slots.try_take(index) {
            match cgroups.remove_leftover(&name) {
                Ok(()) => tracing::info!(cgroup = %name, "removed the cgroup of a run whose runner died"),
                Err(e) => tracing::warn!(cgroup = %name, error = %chain(&e), "could not remove a leftover cgroup"),
            }
        }
    }
}

/// A network run gets the resolver bound over its root's `/etc/resolv.conf`, which must
/// be a regular file for that (the host root's is; an image may lack one).
fn warn_without_resolv_conf(roots: &[crate::sandbox::RootSpec]) {
    for root in roots {
        let (crate::sandbox::RootSpec::Dir(dir) | crate::sandbox::RootSpec::Image(dir)) = root else { continue };
        let file = dir.join("etc/resolv.conf");
        if !std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
            tracing::warn!(
                file = %file.display(),
                "not a regular file: network runs on this root get no resolver (names will not resolve)"
            );
        }
    }
}

/// Takes every sandbox off the network at once (the egress table is gone): deleting its
/// link leaves a sandbox with only `lo`.
fn cut_every_link() {
    let links = crate::sandbox::links_with_prefix(crate::network::IF_PREFIX).unwrap_or_default();
    for name in links {
        if let Err(e) = crate::sandbox::remove_link(&name) {
            tracing::error!(link = %name, error = %chain(&e), "could not cut a sandbox's link");
        }
    }
}

/// Deletes the network links of runs whose codeexec process died: a link whose slot
/// nobody holds is a leftover (the kernel removes one when its sandbox's network namespace
/// goes, so these are rare: a pair whose namespace someone else still holds).
fn remove_leftover_links(slots: &slot::SlotPool) {
    let links = match crate::sandbox::links_with_prefix(crate::network::IF_PREFIX) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "could not list network links");
            return;
        }
    };
    for name in links {
        let Some(index) = name.strip_prefix(crate::network::IF_PREFIX).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(Some(_held)) = slots.try_take(index) {
            match crate::sandbox::remove_link(&name) {
                Ok(_) => tracing::info!(link = %name, "removed the network link of a run whose runner died"),
                Err(e) => tracing::warn!(link = %name, error = %chain(&e), "could not remove a leftover link"),
            }
        }
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> RunError {
    move |source| RunError::Sandbox(SandboxError::Sys { op, source })
}

/// Checks that this process can make sandboxes: root with the capabilities it needs.
pub fn check_privileges() -> Result<(), RunError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotPrivileged("the effective uid is not 0".into()));
    }
    for cap in [caps::Capability::CAP_SYS_ADMIN, caps::Capability::CAP_SETUID, caps::Capability::CAP_SETGID] {
        if !caps::has_cap(None, caps::CapSet::Effective, cap).unwrap_or(false) {
            return Err(RunError::NotPrivileged(format!("{cap} is not in the effective set")));
        }
    }
    Ok(())
}
