//! Orchestration of runs: a request becomes a slot (host ids, cgroup name), a cgroup, a
//! sandbox spawned through the zygote, a supervised run and a verdict, and every resource
//! is released whatever happened. The steps of one run, in order:
//! 1. validate the request and plan the spawn (env, rlimits, files);
//! 2. take a free slot (host-wide lock); create its cgroup with the limits;
//! 3. spawn PID 1 through the zygote; write its id maps; attach it to the cgroup; `Go`;
//! 4. watch it (`supervise`) until it and every output pipe are done;
//! 5. reap PID 1, read the cgroup's accounting, decide (`verdict`), remove the cgroup.

mod slot;
mod supervise;
mod verdict;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;

use crate::cgroup::{self, CgroupError, Hierarchy};
use crate::limit::{LimitError, Limits};
use crate::sandbox::{
    self, Channel, FileEntry, IdMap, Rlimit, RootSpec, SandboxError, SpawnFds, SpawnRequest, Zygote, ZygoteConfig,
};
use crate::seccomp::{self, SeccompError};

pub use verdict::signal_name;

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
    /// The seccomp profile (a `seccomp/<name>.json` compiled in).
    pub seccomp_profile: String,
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
            seccomp_profile: "default".into(),
        }
    }
}

/// The uid and gid the program runs as inside the sandbox.
pub const PROGRAM_ID: u32 = 1000;

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

/// One program to run.
#[derive(Debug, Clone, PartialEq, Default)]
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
}

/// What a run ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0 and no limit hit.
    Ok,
    /// A non-zero exit code (or the command could not be executed).
    RuntimeError,
    /// Killed by a signal that no limit explains.
    Signaled,
    /// CPU or wall time limit (see [`Exceeded`]).
    TimeLimit,
    /// The OOM killer fired in the run's cgroup.
    MemoryLimit,
    /// A fork or thread creation failed on the process limit.
    ProcessLimit,
    /// stdout or stderr went over the output limit.
    OutputLimit,
    /// A file write went over the file size limit (SIGXFSZ).
    FileSizeLimit,
    /// Killed by the seccomp policy (SIGSYS).
    BlockedSyscall,
    /// codeexec failed; the message says how.
    InternalError,
}

impl Status {
    /// The wire name (`time_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::Signaled => "signaled",
            Status::TimeLimit => "time_limit",
            Status::MemoryLimit => "memory_limit",
            Status::ProcessLimit => "process_limit",
            Status::OutputLimit => "output_limit",
            Status::FileSizeLimit => "file_size_limit",
            Status::BlockedSyscall => "blocked_syscall",
            Status::InternalError => "internal_error",
        }
    }
}

/// Which limit a run went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// CPU time.
    CpuTime,
    /// Wall-clock time.
    WallTime,
    /// Memory.
    Memory,
    /// Processes.
    Processes,
    /// Output.
    Output,
    /// File size.
    FileSize,
}

impl Exceeded {
    /// The wire name (`cpu_time`).
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::CpuTime => "cpu_time",
            Exceeded::WallTime => "wall_time",
            Exceeded::Memory => "memory",
            Exceeded::Processes => "processes",
            Exceeded::Output => "output",
            Exceeded::FileSize => "file_size",
        }
    }
}

/// The result of a run, whatever the program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The verdict.
    pub status: Status,
    /// The limit that was exceeded, for the limit statuses.
    pub exceeded: Option<Exceeded>,
    /// The exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// A sentence for humans, for every status but `ok`.
    pub message: Option<String>,
    /// Captured stdout (at most the output limit).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the output limit).
    pub stderr: Vec<u8>,
    /// stdout had more than was captured.
    pub stdout_truncated: bool,
    /// stderr had more than was captured.
    pub stderr_truncated: bool,
    /// CPU time of the whole process tree.
    pub cpu_time: Duration,
    /// Wall time from the program's start to its end.
    pub wall_time: Duration,
    /// Peak memory of the run's cgroup.
    pub memory_peak_bytes: u64,
}

impl RunOutcome {
    fn internal(message: String) -> Self {
        tracing::error!(%message, "run failed inside codeexec");
        RunOutcome {
            status: Status::InternalError,
            exceeded: None,
            exit_code: None,
            signal: None,
            message: Some(message),
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_time: Duration::ZERO,
            wall_time: Duration::ZERO,
            memory_peak_bytes: 0,
        }
    }
}

/// Why a run could not even be attempted, or a runner not started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Not root, or missing a capability the sandbox needs.
    #[error("codeexec needs root with CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID (run it as root): {0}")]
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

/// Runs programs in sandboxes. Start it while the process is single-threaded (it forks
/// the zygote); after that it may be shared by any number of threads.
#[derive(Debug)]
pub struct Runner {
    zygote: Zygote,
    cgroups: Hierarchy,
    slots: slot::SlotPool,
    config: RunnerConfig,
    /// Cores a run can use at most (its CPU quota, capped by the host's CPUs).
    host_cores: f64,
}

impl Runner {
    /// Checks privileges, finds and prepares the cgroups, loads the seccomp profile and
    /// forks the zygote, which prepares the root filesystem.
    pub fn start(config: RunnerConfig) -> Result<Self, RunError> {
        check_privileges()?;
        let root = root_spec(config.rootfs.as_deref())?;
        let state = |source| RunError::State { path: config.state_dir.clone(), source };
        std::fs::create_dir_all(&config.state_dir).map_err(state)?;
        let slots = slot::SlotPool::new(config.state_dir.join("slots"), config.slots).map_err(state)?;
        let cgroups = Hierarchy::detect(&config.mountinfo, &config.cgroup_parent)?;
        cgroups.prepare()?;
        tracing::info!(layout = %cgroups.describe(), "cgroups");
        let filters = seccomp::programs(&config.seccomp_profile)?;
        let zygote = Zygote::start(ZygoteConfig { state_dir: config.state_dir.clone(), roots: vec![root], filters })?;
        let host_cores = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
        Ok(Runner { zygote, cgroups, slots, config, host_cores })
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> &Hierarchy {
        &self.cgroups
    }

    /// Runs one program to the end. `Err` only when the run could not be attempted (bad
    /// request, no free slot); anything that fails after is an `internal_error` outcome.
    pub fn run(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        req.limits.validate()?;
        let (spawn, files) = plan(req)?;
        let slot =
            self.slots.acquire().map_err(|source| RunError::State { path: self.config.state_dir.clone(), source })?;
        let slot = slot.ok_or(RunError::Busy(self.config.slots))?;
        let cg = match self.cgroups.create(&slot.cgroup_name(), &cgroup_limits(&req.limits)) {
            Ok(cg) => cg,
            Err(e) => return Ok(RunOutcome::internal(format!("creating the run's cgroup: {}", chain(&e)))),
        };
        let idmap = IdMap {
            root_host: self.config.uid_base + 2 * slot.index(),
            program: PROGRAM_ID,
            program_host: self.config.uid_base + 2 * slot.index() + 1,
        };
        let cores = (f64::from(req.limits.cpu_millicores) / 1000.0).min(self.host_cores).max(0.01);
        let mut outcome =
            self.execute(req, &spawn, files, &cg, &idmap, cores).unwrap_or_else(|e| RunOutcome::internal(chain(&e)));
        if let Err(e) = cg.remove() {
            let m = format!("removing the run's cgroup: {}", chain(&e));
            tracing::error!(message = %m, "cleanup failed");
            outcome.message = Some(outcome.message.map_or(m.clone(), |o| format!("{o}; {m}")));
        }
        Ok(outcome)
    }

    fn execute(
        &self,
        req: &RunRequest,
        spawn: &SpawnRequest,
        files: Option<OwnedFd>,
        cg: &cgroup::Cgroup,
        idmap: &IdMap,
        cores: f64,
    ) -> Result<RunOutcome, RunError> {
        let (chan, chan_child) = Channel::pair().map_err(sys("socketpair"))?;
        let (stdin_r, stdin_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (stdout_r, stdout_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (stderr_r, stderr_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        for fd in [&stdin_w, &stdout_r, &stderr_r] {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(sys("fcntl"))?;
        }
        let fds = SpawnFds {
            control: chan_child.as_fd(),
            stdin: stdin_r.as_fd(),
            stdout: stdout_w.as_fd(),
            stderr: stderr_w.as_fd(),
            files: files.as_ref().map(AsFd::as_fd),
        };
        let pid1 = self.zygote.spawn(spawn, &fds)?;
        drop((chan_child, stdin_r, stdout_w, stderr_w, files));
        // From here PID 1 exists: every path below kills and reaps it.
        let guard = Pid1Guard(Some(&pid1));
        sandbox::write_id_maps(pid1.pid, idmap)?;
        cg.attach(pid1.pid.as_raw())?;
        chan.send_go().map_err(sys("send go"))?;
        let streams =
            supervise::Streams { stdin: Some(stdin_w), stdin_data: &req.stdin, stdout: stdout_r, stderr: stderr_r };
        let observed = supervise::watch(&pid1, &chan, streams, cg, &req.limits, cores);
        guard.reap()?;
        let stats = cg.stats()?;
        Ok(verdict::decide(observed, stats, &req.limits, &req.argv[0]))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.cgroups.remove_parents();
    }
}

/// Kills and reaps PID 1 unless `reap` was called: no early return leaves a sandbox.
struct Pid1Guard<'a>(Option<&'a sandbox::Spawned>);

impl Pid1Guard<'_> {
    fn reap(mut self) -> Result<(), SandboxError> {
        let pid1 = self.0.take().expect("a guard is reaped once, consuming it");
        sandbox::reap(pid1.pidfd.as_fd()).map(drop)
    }
}

impl Drop for Pid1Guard<'_> {
    fn drop(&mut self) {
        if let Some(pid1) = self.0.take() {
            let _ = sandbox::kill(pid1.pidfd.as_fd());
            let _ = sandbox::reap(pid1.pidfd.as_fd());
        }
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> RunError {
    move |source| RunError::Sandbox(SandboxError::Sys { op, source })
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn check_privileges() -> Result<(), RunError> {
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

/// The generated `/etc` of the host root, and the host entries bound into it: the dynamic
/// linker's cache, Debian's alternatives (e.g. `/usr/bin/java` points through
/// `/etc/alternatives`), CA certificates and the JDK's configuration.
fn root_spec(rootfs: Option<&std::path::Path>) -> Result<RootSpec, RunError> {
    if let Some(dir) = rootfs {
        let bad = |why: &str| RunError::Rootfs { path: dir.to_owned(), why: why.into() };
        let meta = std::fs::metadata(dir).map_err(|e| bad(&e.to_string()))?;
        if !meta.is_dir() {
            return Err(bad("not a directory"));
        }
        let dir = dir.canonicalize().map_err(|e| bad(&e.to_string()))?;
        return Ok(RootSpec::Dir(dir));
    }
    let etc_files = vec![
        (
            "passwd".into(),
            format!(
                "root:x:0:0:root:/root:/bin/sh\nsandbox:x:{PROGRAM_ID}:{PROGRAM_ID}:sandbox:/sandbox:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        ("group".into(), format!("root:x:0:\nsandbox:x:{PROGRAM_ID}:\nnogroup:x:65534:\n")),
        ("hosts".into(), "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".into()),
        ("hostname".into(), "sandbox\n".into()),
        ("resolv.conf".into(), "# no network in the sandbox\n".into()),
        ("nsswitch.conf".into(), "passwd: files\ngroup: files\nshadow: files\nhosts: files\n".into()),
    ];
    let mut etc_binds: Vec<String> =
        ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates", "localtime"]
            .into_iter()
            .map(String::from)
            .collect();
    if let Ok(entries) = std::fs::read_dir("/etc") {
        let mut java: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("java-"))
            .collect();
        java.sort();
        etc_binds.extend(java);
    }
    Ok(RootSpec::Host { etc_files, etc_binds })
}

const BASE_ENV: [(&str, &str); 3] =
    [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/sandbox"), ("LANG", "C.UTF-8")];

/// Checks the request and turns it into the spawn request and the files' memfd.
fn plan(req: &RunRequest) -> Result<(SpawnRequest, Option<OwnedFd>), RunError> {
    let invalid = |m: String| RunError::Invalid(m);
    let Some(cmd) = req.argv.first() else { return Err(invalid("no command given".into())) };
    if cmd.is_empty() || req.argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("the command and its arguments must be non-empty and free of NUL bytes".into()));
    }
    let mut env: Vec<(String, String)> = BASE_ENV.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("bad environment variable name or value: {k:?}")));
        }
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    let (files, memfd) = pack_files(&req.files, req.limits.disk_bytes)?;
    let l = &req.limits;
    let cpu_secs = l.cpu_time.as_secs() + 1 + u64::from(l.cpu_time.subsec_nanos() > 0);
    let spawn = SpawnRequest {
        root: 0,
        argv: req.argv.clone(),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        hostname: "sandbox".into(),
        program_id: PROGRAM_ID,
        workdir_bytes: l.disk_bytes,
        tmp_bytes: l.disk_bytes,
        shm_bytes: (l.disk_bytes / 4).max(64 * 1024),
        inodes: 16_384,
        rlimits: vec![
            Rlimit::Core(0),
            Rlimit::FileSize(l.file_size_bytes),
            Rlimit::OpenFiles(l.open_files.into()),
            Rlimit::Stack(l.stack_bytes),
            Rlimit::CpuSeconds(cpu_secs),
        ],
        files,
    };
    Ok((spawn, memfd))
}

/// All input files in one memfd, back to back, with their offsets.
fn pack_files(files: &[InputFile], disk: u64) -> Result<(Vec<FileEntry>, Option<OwnedFd>), RunError> {
    if files.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut seen = std::collections::HashSet::new();
    let total: u64 = files.iter().map(|f| f.contents.len() as u64).sum();
    if total > disk {
        return Err(RunError::Invalid(format!(
            "the input files ({total} bytes) do not fit in /sandbox ({disk} bytes)"
        )));
    }
    let memfd = nix::sys::memfd::memfd_create("codeexec-files", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(sys("memfd_create"))?;
    let mut out = std::fs::File::from(memfd);
    let mut entries = Vec::with_capacity(files.len());
    let mut offset = 0u64;
    for f in files {
        sandbox::check_relative_path(&f.path).map_err(RunError::Invalid)?;
        if !seen.insert(f.path.as_str()) {
            return Err(RunError::Invalid(format!("file {:?} is given twice", f.path)));
        }
        out.write_all(&f.contents).map_err(|source| RunError::State { path: "memfd".into(), source })?;
        let len = f.contents.len() as u64;
        entries.push(FileEntry { path: f.path.clone(), offset, len, executable: f.executable });
        offset += len;
    }
    Ok((entries, Some(out.into())))
}

fn cgroup_limits(l: &Limits) -> cgroup::Limits {
    cgroup::Limits {
        memory_bytes: l.memory_bytes,
        // one more for our PID 1
        pids: u64::from(l.processes) + 1,
        cpu_quota_us: u64::from(l.cpu_millicores) * 100,
        cpu_period_us: 100_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_builds_an_explicit_environment() {
        let req = RunRequest {
            argv: vec!["python3".into(), "-c".into(), "1".into()],
            env: vec![("LANG".into(), "en_US.UTF-8".into()), ("X".into(), "1".into())],
            ..RunRequest::default()
        };
        let (spawn, memfd) = plan(&req).unwrap();
        assert!(memfd.is_none());
        assert_eq!(spawn.env, ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/sandbox", "LANG=en_US.UTF-8", "X=1"]);
        assert!(spawn.rlimits.contains(&Rlimit::Core(0)));
        assert!(spawn.rlimits.contains(&Rlimit::CpuSeconds(6)));
    }

    #[test]
    fn plan_rejects_bad_requests() {
        let bad = |req: RunRequest| plan(&req).unwrap_err().to_string();
        assert!(bad(RunRequest::default()).contains("no command"));
        let r = RunRequest { argv: vec!["x".into()], env: vec![("A=B".into(), "1".into())], ..Default::default() };
        assert!(bad(r).contains("environment"));
        let f = |p: &str| InputFile { path: p.into(), contents: b"x".to_vec(), executable: false };
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("../x")], ..Default::default() };
        assert!(bad(r).contains(".."));
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("a"), f("a")], ..Default::default() };
        assert!(bad(r).contains("twice"));
    }

    #[test]
    fn files_are_packed_back_to_back() {
        let files = vec![
            InputFile { path: "a.txt".into(), contents: b"hello".to_vec(), executable: false },
            InputFile { path: "bin/run".into(), contents: b"#!/bin/sh\n".to_vec(), executable: true },
        ];
        let (entries, memfd) = pack_files(&files, 1 << 20).unwrap();
        assert_eq!(entries[1].offset, 5);
        assert_eq!(entries[1].len, 10);
        let mut f = std::fs::File::from(memfd.unwrap());
        let mut s = String::new();
        std::io::Seek::rewind(&mut f).unwrap();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "hello#!/bin/sh\n");
        assert!(pack_files(&files, 4).is_err(), "over the disk limit");
    }
}
