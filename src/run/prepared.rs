//! A prepared sandbox: everything of a run that does not depend on the request, done
//! ahead of it. Preparing takes a slot, creates the cgroup with the default limits, spawns
//! PID 1 through the zygote, writes its id maps, attaches it and lets it set up; the
//! sandbox then waits with its program process already unprivileged and filtered, blocked
//! on the start socket. Running it writes the limits that differ from the defaults,
//! resizes the tmpfs mounts if asked, sends the start request straight to the program
//! process, watches, and decides the outcome.
//!
//! A prepared sandbox is used once. Dropping it, used or not, kills and reaps PID 1 and
//! removes the cgroup, so no path leaves a process or a cgroup behind.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::pipe2;

use super::cross::Ends;
use super::slot::Slot;
use super::supervise::{self, Streams};
use super::{Inner, OutputFile, RunError, RunOutcome, RunRequest, chain, plan, sys, verdict};
use crate::cgroup::Cgroup;
use crate::limit::Limits;
use crate::network::Narrowed;
use crate::sandbox::{
    self, Channel, CollectSpec, IdMap, NetLink, Report, SpawnFds, SpawnRequest, Spawned, StartRequest, Starter,
    TmpfsSizes,
};

/// How long a sandbox may take to answer (`Ready`, `Resized`) before it is given up on.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct Prepared {
    pid1: Spawned,
    chan: Channel,
    starter: Starter,
    sizes: TmpfsSizes,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// `None` once removed.
    cgroup: Option<Cgroup>,
    reaped: bool,
    used: bool,
    /// Its network link, removed with it.
    link: Option<NetLink>,
    /// Its allow-list in the egress table, removed once its processes are dead.
    narrowed: Option<Narrowed>,
    _slot: Slot,
}

/// What a sandbox gets beyond the plain one (a warm sandbox never has any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Extras {
    /// A network link.
    pub(super) network: bool,
    /// From the half of the links whose runs may reach only their allow-list.
    pub(super) narrowed: bool,
    /// Host mounts, by index in the runner's configuration.
    pub(super) mounts: Vec<usize>,
}

impl Prepared {
    /// Prepares a sandbox in `slot` with tmpfs `sizes`. PID 1 goes on setting itself up
    /// after this returns; [`Prepared::wait_ready`] waits for it.
    pub(super) fn new(
        runner: &Inner,
        slot: Slot,
        sizes: &TmpfsSizes,
        root: usize,
        extras: &Extras,
    ) -> Result<Self, RunError> {
        let link = match (extras.network, &runner.egress) {
            (false, _) => None,
            (true, Some(egress)) => Some(egress.config().link(slot.index(), extras.narrowed).ok_or_else(|| {
                RunError::Invalid(format!("network.subnet has no room for run slot {}", slot.index()))
            })?),
            (true, None) => return Err(RunError::Invalid("network runs are not enabled".into())),
        };
        // descriptors first: failing here leaves nothing to undo
        let (chan, chan_child) = Channel::pair().map_err(sys("socketpair"))?;
        let (starter, start_child) = Starter::pair().map_err(sys("socketpair"))?;
        let (stdin_r, stdin_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (stdout_r, stdout_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (stderr_r, stderr_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        for fd in [&stdin_w, &stdout_r, &stderr_r] {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(sys("fcntl"))?;
        }
        let mut cgroup = runner.cgroups.create(&slot.cgroup_name())?;
        let placed = cgroup
            .set_limits(&plan::cgroup_limits(&Limits::default()))
            .and_then(|()| cgroup.placement())
            .map_err(RunError::from)
            .and_then(|placement| {
                let spawn = SpawnRequest {
                    root,
                    hostname: "sandbox".into(),
                    program_id: super::PROGRAM_ID,
                    sizes: *sizes,
                    ids: runner.idmap(slot.index()),
                    into_cgroup: placement.dir.is_some(),
                    cgroup_procs: placement.procs.len(),
                    network: link.clone(),
                    mounts: extras.mounts.clone(),
                };
                let fds = SpawnFds {
                    control: chan_child.as_fd(),
                    stdin: stdin_r.as_fd(),
                    stdout: stdout_w.as_fd(),
                    stderr: stderr_w.as_fd(),
                    start: start_child.as_fd(),
                    cgroup_dir: placement.dir.as_ref().map(AsFd::as_fd),
                    cgroup_procs: placement.procs.iter().map(AsFd::as_fd).collect(),
                };
                Ok(runner.zygote.spawn(&spawn, &fds)?)
            });
        drop((chan_child, start_child, stdin_r, stdout_w, stderr_w));
        let pid1 = match placed {
            Ok(p) => p,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e);
            }
        };
        // PID 1 exists, placed and released by the zygote; Drop kills and reaps it.
        Ok(Prepared {
            pid1,
            chan,
            starter,
            sizes: *sizes,
            stdin: Some(stdin_w),
            stdout: Some(stdout_r),
            stderr: Some(stderr_r),
            cgroup: Some(cgroup),
            reaped: false,
            used: false,
            link,
            narrowed: None,
            _slot: slot,
        })
    }

    /// Its link, if it has one.
    pub(super) fn link(&self) -> Option<&NetLink> {
        self.link.as_ref()
    }

    /// Keeps its allow-list until its processes are dead.
    pub(super) fn hold(&mut self, narrowed: Narrowed) {
        self.narrowed = Some(narrowed);
    }

    fn cgroup(&self) -> Result<&Cgroup, RunError> {
        self.cgroup.as_ref().ok_or_else(used)
    }

    /// Waits until PID 1 reports `Ready` (or fails, or takes too long).
    pub(super) fn wait_ready(&self) -> Result<(), RunError> {
        self.expect(|r| matches!(r, Report::Ready), "ready")
    }

    /// Waits for the next report and checks it is the one `want` accepts.
    fn expect(&self, want: impl Fn(&Report) -> bool, what: &str) -> Result<(), RunError> {
        let mut fds = [PollFd::new(self.chan.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(ANSWER_TIMEOUT).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => {
                return Err(RunError::Sandbox(sandbox::SandboxError::Spawn(format!(
                    "the sandbox was not {what} in time"
                ))));
            }
            Ok(_) => {}
            Err(e) => return Err(sys("poll")(e)),
        }
        match self.chan.recv().map_err(sys("receive from the sandbox"))? {
            r if want(&r) => Ok(()),
            Report::SetupFailed { step, errno, detail } => {
                let errno = errno.map(|e| nix::errno::Errno::from_raw(e).desc()).unwrap_or_default();
                Err(RunError::Sandbox(sandbox::SandboxError::Spawn(format!(
                    "setup failed at {step} ({detail}): {errno}"
                ))))
            }
            other => Err(RunError::Sandbox(sandbox::SandboxError::Spawn(format!("unexpected report {other:?}")))),
        }
    }

    /// Runs one program in this sandbox and decides its outcome. Everything that fails
    /// here is ours: it becomes an `internal_error` outcome. Tearing the sandbox down is
    /// left to its `Drop`, which the caller may run on another thread.
    pub(super) fn run(
        &mut self,
        req: &RunRequest,
        start: &StartRequest,
        files: Option<OwnedFd>,
        cores: f64,
    ) -> RunOutcome {
        self.execute(req, start, files, cores).unwrap_or_else(|e| RunOutcome::internal(chain(&e)))
    }

    fn execute(
        &mut self,
        req: &RunRequest,
        start: &StartRequest,
        files: Option<OwnedFd>,
        cores: f64,
    ) -> Result<RunOutcome, RunError> {
        let limits = &req.limits;
        if std::mem::replace(&mut self.used, true) {
            return Err(used());
        }
        if start.sizes != self.sizes {
            self.chan.send_resize(&start.sizes).map_err(sys("send resize"))?;
            self.expect(|r| matches!(r, Report::Resized), "resized")?;
        }
        let cgroup = self.cgroup.as_mut().ok_or_else(used)?;
        cgroup.set_limits(&plan::cgroup_limits(limits))?;
        let cpu_base = cgroup.cpu_usage()?;
        if req.collect_files {
            // before the start, so PID 1 has it when the program ends
            let spec = collect_spec(limits);
            self.chan.send_collect(&spec).map_err(sys("send the collect request"))?;
        }
        self.starter.start(start, files.as_ref().map(AsFd::as_fd)).map_err(sys("send the start request"))?;
        let released = Instant::now();
        drop(files);
        let taken = |o: &mut Option<OwnedFd>| o.take().ok_or_else(used);
        let (stdin, stdout) = (taken(&mut self.stdin)?, taken(&mut self.stdout)?);
        let (stdin, stdout) = match &req.plug {
            Some(plug) => {
                plug.hand(Ends { stdin, stdout });
                (None, None)
            }
            None => (Some(stdin), Some(stdout)),
        };
        let streams = Streams { stdin, stdin_data: &req.stdin, stdout, stderr: taken(&mut self.stderr)? };
        let cgroup = self.cgroup()?;
        let watch = supervise::Watch { pid1: &self.pid1, chan: &self.chan, cgroup, limits, cores, released, cpu_base };
        let mut observed = supervise::watch(&watch, streams, req.cancel.as_ref(), req.live.as_ref());
        // Final: every process of the run is dead (PID 1 killed the rest before its report).
        let stats = cgroup.stats()?;
        let collected = if req.collect_files { take_files(&mut observed, collect_spec(limits)) } else { None };
        let mut outcome = verdict::decide(observed, stats, limits, &req.argv[0]);
        if req.collect_files && outcome.status != super::Status::InternalError {
            match collected {
                Some(Ok((files, truncated))) => {
                    outcome.files = files;
                    outcome.files_truncated = truncated;
                }
                Some(Err(e)) => {
                    return Ok(RunOutcome::internal(format!("the run's files could not be collected: {e}")));
                }
                // the program never ran to its end (a setup failure or a kill before PID 1
                // reported): nothing to collect, and the verdict says why
                None => {}
            }
        }
        Ok(outcome)
    }

    fn kill_and_reap(&mut self) {
        let _ = sandbox::kill(self.pid1.pidfd.as_fd());
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill();
        }
        let _ = sandbox::reap(self.pid1.pidfd.as_fd());
        self.reaped = true;
    }
}

/// Most files a run returns.
pub const MAX_OUTPUT_FILES: u32 = 1000;
/// Most bytes of files a run returns: they are read into the runner's memory, and a
/// sparse file costs the program no disk.
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;

fn collect_spec(limits: &Limits) -> CollectSpec {
    CollectSpec { max_files: MAX_OUTPUT_FILES, max_bytes: limits.disk_bytes.min(MAX_OUTPUT_BYTES) }
}

/// The collected files of an `Exited` report, read from the memfd that came with it.
fn take_files(obs: &mut supervise::Observed, spec: CollectSpec) -> Option<Result<(Vec<OutputFile>, bool), String>> {
    let Some(Report::Exited { files, .. }) = &mut obs.report else { return None };
    let packed = match files.take()? {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let Some(memfd) = obs.attached.pop() else { return Some(Err("no memfd came with the files".into())) };
    Some(sandbox::read_collected(packed, memfd, spec).map(|found| {
        let files = found.entries.into_iter().map(|(path, content)| OutputFile { path, content }).collect();
        (files, found.truncated)
    }))
}

fn used() -> RunError {
    RunError::Invalid("a prepared sandbox runs one program only".into())
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_and_reap();
        }
        drop(self.narrowed.take());
        // the kernel would remove the pair with PID 1's network namespace, but later, and
        // the slot's next run wants the name
        if let Some(link) = self.link.take()
            && let Err(e) = sandbox::remove_link(&link.host_if)
        {
            tracing::error!(error = %chain(&e), link = link.host_if, "removing a sandbox's network link failed");
        }
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            tracing::error!(error = %chain(&e), "removing a sandbox's cgroup failed");
        }
    }
}

impl Inner {
    /// The id map of slot `index`: two host ids no other slot uses.
    fn idmap(&self, index: u32) -> IdMap {
        let base = self.config.uid_base + 2 * index;
        IdMap { root_host: base, program: super::PROGRAM_ID, program_host: base + 1 }
    }
}
