//! Control groups for runs: one small interface (`create`, `attach`, `cpu_usage`,
//! `stats`, `kill`, `remove`) over cgroup v2 and cgroup v1/hybrid hosts.
//!
//! Every host path comes from the [`Layout`], which [`Layout::detect`] reads from a
//! `mountinfo` text it is given, so the logic runs against a fake cgroupfs in a tempdir in
//! the unit tests. Our cgroups live under one parent of our own (default `codeexec`) in each
//! hierarchy; nothing else is created, changed or removed.
//!
//! Limits are written with `cgroups-rs` controllers. Three things are done directly,
//! because the crate falls short for them:
//! - reading accounting: its stat calls read 8 to 15 files each (`cpuacct()` even reads
//!   the per-CPU tables), while a CPU-time check during a run needs one small file, and it
//!   does not read `memory.events` at all (the v2 OOM counter);
//! - killing: `Cgroup::kill()` refuses to work on v1, and its v2 hierarchy is hard-coded to
//!   `/sys/fs/cgroup`, so on a hybrid host it cannot reach the cgroup2 mount at
//!   `/sys/fs/cgroup/unified`, whose controller-less cgroups still offer `cgroup.kill`
//!   and `cpu.stat`;
//! - creating and removing directories: `create()` is `create_dir_all` (we need `EEXIST`
//!   to find leftovers of a crashed run) and `delete()` sleeps 10 ms between retries.

mod detect;
mod nest;
mod v1;
mod v2;

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use detect::{Layout, Usage};
pub use nest::{Nest, in_container, nest, own_path};

/// Errors from cgroup setup, accounting and cleanup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable hierarchy in the mount table.
    #[error("no usable cgroup hierarchy: {0}")]
    NoHierarchy(String),
    /// A controller we need is not available.
    #[error("cgroup controller {controller} is not available: {hint}")]
    MissingController {
        /// The controller name.
        controller: &'static str,
        /// How to fix it.
        hint: String,
    },
    /// Reading the mount table failed.
    #[error("failed to read {path}")]
    MountInfo {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file operation on the cgroup filesystem failed.
    #[error("failed to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A new cgroup's parent does not (yet) give it our controllers: another codeexec
    /// process removed the parent and a third made it again but has not enabled them yet.
    #[error("the parent of {0} does not enable the memory, pids and cpu controllers")]
    ParentNotReady(PathBuf),
    /// A `cgroups-rs` call failed.
    #[error("failed to {op} in {path}")]
    Controller {
        /// What was being done.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    /// An accounting file had unexpected contents.
    #[error("unexpected contents in {path}: {text:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// Limits applied to one run's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit; swap is disabled on top of it.
    pub memory_bytes: u64,
    /// `pids.max`.
    pub pids: u64,
    /// CPU bandwidth: quota per period, both in microseconds.
    pub cpu_quota_us: u64,
    /// CFS period in microseconds.
    pub cpu_period_us: u64,
}

/// How a new process is put into a run's cgroup at birth: cloned straight into a cgroup2
/// directory (`clone3(CLONE_INTO_CGROUP)`), and its pid written into v1 `cgroup.procs`
/// files. A pure v2 host needs no write at all; every `cgroup.procs` write takes the
/// kernel's global `cgroup_threadgroup_rwsem` for writing, which stalls every fork and exit
/// on the host meanwhile.
#[derive(Debug)]
pub struct Placement {
    /// A cgroup2 directory to clone into (v2, or the unified mount of a hybrid host).
    pub dir: Option<std::os::fd::OwnedFd>,
    /// `cgroup.procs` files, open for writing, to write the new pid into.
    pub procs: Vec<std::os::fd::OwnedFd>,
}

/// What a run used, read after it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time of every process that was in the cgroup.
    pub cpu_usage: Duration,
    /// Peak memory, in bytes.
    pub memory_peak_bytes: u64,
    /// How many times the OOM killer killed a process of the cgroup.
    pub oom_kills: u64,
    /// How many times a fork failed because `pids.max` was reached.
    pub pids_max_events: u64,
}

/// The cgroup version in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pure cgroup v2.
    V2,
    /// cgroup v1 controllers, possibly with a controller-less cgroup2 mount (hybrid).
    V1,
}

/// The hierarchy (or hierarchies) runs' cgroups are created in.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    layout: Layout,
    parent: String,
}

impl Hierarchy {
    /// Uses `layout`, with our cgroups under a parent named `parent` in each hierarchy.
    pub fn new(layout: Layout, parent: &str) -> Self {
        Self { layout, parent: parent.to_owned() }
    }

    /// Reads the layout from a mountinfo file (normally `/proc/self/mountinfo`).
    pub fn detect(mountinfo: &Path, parent: &str) -> Result<Self> {
        let text = fs::read_to_string(mountinfo)
            .map_err(|source| CgroupError::MountInfo { path: mountinfo.to_owned(), source })?;
        Ok(Self::new(Layout::detect(&text)?, parent))
    }

    /// The cgroup version in use.
    pub fn mode(&self) -> Mode {
        match self.layout {
            Layout::V2 { .. } => Mode::V2,
            Layout::V1 { .. } => Mode::V1,
        }
    }

    /// One line saying what was found, for logs and `--json`.
    pub fn describe(&self) -> String {
        self.layout.describe()
    }

    /// Creates our parent cgroups (and on v2 enables the controllers for them). Idempotent.
    pub fn prepare(&self) -> Result<()> {
        match &self.layout {
            Layout::V2 { root } => v2::prepare(root, &self.parent),
            Layout::V1 { .. } => self.parent_dirs().iter().try_for_each(|d| mkdir_exist_ok(d)),
        }
    }

    /// Creates the cgroup `name`, removing a leftover of that name first. It has no
    /// limits until [`Cgroup::set_limits`].
    ///
    /// Another codeexec process may remove our (empty) parent between our `prepare` and
    /// this call (see [`Hierarchy::remove_parents`]), and a third make it again; a missing
    /// parent, or one whose controllers are not enabled yet, is prepared again.
    pub fn create(&self, name: &str) -> Result<Cgroup> {
        let mut attempts = 0;
        loop {
            let made = match &self.layout {
                Layout::V2 { root } => v2::Cgroup::create(&root.join(&self.parent).join(name)).map(Backend::V2),
                Layout::V1 { .. } => v1::Cgroup::create(&self.layout, &self.parent, name).map(Backend::V1),
            };
            match made {
                Ok(inner) => return Ok(Cgroup { inner, limits: None }),
                Err(CgroupError::Io { op: "create", ref source, .. })
                    if source.kind() == ErrorKind::NotFound && attempts < 3 =>
                {
                    attempts += 1;
                    // the parent may vanish again while we make it; the next turn sees that
                    if let Err(e) = self.prepare()
                        && attempts == 3
                    {
                        return Err(e);
                    }
                }
                Err(CgroupError::ParentNotReady(_)) if attempts < 3 => {
                    attempts += 1;
                    // the parent may vanish again while we make it; the next turn sees that
                    if let Err(e) = self.prepare()
                        && attempts == 3
                    {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes our parent cgroups if no run uses them any more; busy parents are left.
    pub fn remove_parents(&self) {
        for dir in self.parent_dirs() {
            // EBUSY means another run (or another codeexec process) still has a child here
            let _ = fs::remove_dir(dir);
        }
    }

    /// Removes the cgroup `name` left by a run whose process died (the caller holds the
    /// run's slot, so nothing else uses the name): kills what may still run in it, then
    /// removes its directory in every hierarchy.
    pub fn remove_leftover(&self, name: &str) -> Result<()> {
        let mut first = Ok(());
        for dir in self.parent_dirs().into_iter().map(|p| p.join(name)).filter(|d| d.is_dir()) {
            let kill = dir.join("cgroup.kill");
            let killed = if kill.exists() { write_file(&kill, "1") } else { Ok(()) };
            let res = killed.and_then(|()| kill_listed(&dir)).and_then(|()| rmdir_retry(&dir));
            if first.is_ok() {
                first = res;
            }
        }
        first
    }

    /// Our cgroups that still exist (for leak checks): children of the parents.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in self.parent_dirs() {
            if let Ok(entries) = fs::read_dir(&dir) {
                out.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        out
    }

    /// Our parent cgroup in each hierarchy.
    pub fn parents(&self) -> Vec<PathBuf> {
        self.parent_dirs()
    }

    fn parent_dirs(&self) -> Vec<PathBuf> {
        self.layout.mount_points().into_iter().map(|m| m.join(&self.parent)).collect()
    }
}

/// One run's cgroup (a directory in each hierarchy on v1, one directory on v2).
#[derive(Debug)]
pub struct Cgroup {
    inner: Backend,
    /// The limits last written, so a change writes only what differs.
    limits: Option<Limits>,
}

#[derive(Debug)]
enum Backend {
    V1(v1::Cgroup),
    V2(v2::Cgroup),
}

impl Cgroup {
    /// Sets (or changes) the limits; memory is set with swap disabled. Only the values
    /// that differ from the last call are written.
    pub fn set_limits(&mut self, limits: &Limits) -> Result<()> {
        let old = self.limits.take();
        match &self.inner {
            Backend::V1(c) => c.set_limits(limits, old.as_ref()),
            Backend::V2(c) => c.set_limits(limits, old.as_ref()),
        }?;
        self.limits = Some(limits.clone());
        Ok(())
    }

    /// The descriptors to put a new process into this cgroup (see [`Placement`]).
    pub fn placement(&self) -> Result<Placement> {
        match &self.inner {
            Backend::V1(c) => c.placement(),
            Backend::V2(c) => c.placement(),
        }
    }

    /// Moves process `pid` (and so its future children) into the cgroup.
    pub fn attach(&self, pid: i32) -> Result<()> {
        match &self.inner {
            Backend::V1(c) => c.attach(pid),
            Backend::V2(c) => c.attach(pid),
        }
    }

    /// CPU time used so far by everything in the cgroup (one small file read).
    pub fn cpu_usage(&self) -> Result<Duration> {
        match &self.inner {
            Backend::V1(c) => c.cpu_usage(),
            Backend::V2(c) => c.cpu_usage(),
        }
    }

    /// Accounting for the whole run.
    pub fn stats(&self) -> Result<Stats> {
        match &self.inner {
            Backend::V1(c) => c.stats(),
            Backend::V2(c) => c.stats(),
        }
    }

    /// Kills every process in the cgroup (`cgroup.kill` where there is one).
    pub fn kill(&self) -> Result<()> {
        match &self.inner {
            Backend::V1(c) => c.kill(),
            Backend::V2(c) => c.kill(),
        }
    }

    /// Removes the cgroup; its processes must be gone.
    pub fn remove(self) -> Result<()> {
        match self.inner {
            Backend::V1(c) => c.remove(),
            Backend::V2(c) => c.remove(),
        }
    }
}

fn mkdir_exist_ok(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(CgroupError::Io { op: "create", path: dir.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// Creates a run's cgroup directory. If it exists, it is a leftover of a run whose process
/// died without cleaning up (our slot lock says nobody else uses the name): empty and remove
/// it first.
fn mkdir_fresh(dir: &Path, kill: impl Fn(&Path) -> Result<()>) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            tracing::warn!(path = %dir.display(), "removing a leftover cgroup");
            kill(dir)?;
            rmdir_retry(dir)?;
            fs::create_dir(dir).map_err(|source| CgroupError::Io { op: "create", path: dir.to_owned(), source })
        }
        Err(source) => Err(CgroupError::Io { op: "create", path: dir.to_owned(), source }),
    }
}

/// `rmdir` with a short retry: right after the last process is reaped the kernel may still
/// be unlinking it from the cgroup (EBUSY for a few microseconds). A missing dir is fine.
fn rmdir_retry(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(50);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(source) => return Err(CgroupError::Io { op: "remove", path: dir.to_owned(), source }),
        }
    }
}

/// A cgroup directory, opened to clone into.
fn open_dir(dir: &Path) -> Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(Into::into)
        .map_err(|source| CgroupError::Io { op: "open", path: dir.to_owned(), source })
}

/// A `cgroup.procs` file, opened for writing a pid into.
fn open_procs(dir: &Path) -> Result<std::os::fd::OwnedFd> {
    let path = dir.join("cgroup.procs");
    fs::OpenOptions::new().write(true).open(&path).map(Into::into).map_err(|source| CgroupError::Io {
        op: "open",
        path,
        source,
    })
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| CgroupError::Io { op: "write", path: path.to_owned(), source })
}

fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io { op: "read", path: path.to_owned(), source })
}

/// The value of `key` in a flat-keyed file (`key value` per line: cpu.stat, memory.events,
/// pids.events, memory.oom_control).
fn keyed_value(path: &Path, text: &str, key: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| CgroupError::Parse { path: path.to_owned(), text: text.chars().take(200).collect() })
}

/// Kills every process listed in `dir/cgroup.procs` until it is empty. The v1 fallback
/// for a cgroup without `cgroup.kill`: only used on leftovers, where a live run's PID 1
/// is normally already gone; killing a PID 1 takes its whole pid namespace with it.
fn kill_listed(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    for _ in 0..100 {
        let text = match fs::read_to_string(&procs) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CgroupError::Io { op: "read", path: procs, source }),
        };
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(CgroupError::Io { op: "empty", path: procs, source: io::Error::from(ErrorKind::TimedOut) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_exact_key() {
        let p = Path::new("f");
        let t = "oom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(p, t, "oom_kill").unwrap(), 2);
        assert_eq!(keyed_value(p, t, "oom").unwrap(), 3);
        assert!(keyed_value(p, t, "max").is_err());
    }
}
