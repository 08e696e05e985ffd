//! cgroup v2 runs: one directory with memory, pids and cpu limits, `memory.oom.group` so an
//! OOM kill takes the whole run, and `cgroup.kill`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};

use super::{
    CgroupError, Limits, Placement, Result, Stats, keyed_value, kill_listed, mkdir_exist_ok, mkdir_fresh, open_dir,
    read_file, rmdir_retry, write_file,
};

const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Enables our controllers for the parent's children: in the `subtree_control` of the root
/// and of every cgroup on the way to the parent (if a controller is not on yet), and in
/// the parent's own. The parent is one name, or a path under the daemon's own cgroup
/// when the tree is nested (`nest.rs`).
pub(super) fn prepare(root: &Path, parent: &str) -> Result<()> {
    let mut dir = root.to_path_buf();
    let mut parts = parent.split('/').filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            check_available(&dir)?;
        }
        enable(&dir)?;
        dir.push(part);
        mkdir_exist_ok(&dir)?;
    }
    enable(&dir)
}

/// Whether `dir` can give its children our controllers.
fn check_available(dir: &Path) -> Result<()> {
    let available = read_file(&dir.join("cgroup.controllers"))?;
    for c in CONTROLLERS {
        if !available.split_whitespace().any(|a| a == c) {
            return Err(CgroupError::MissingController {
                controller: c,
                hint: format!(
                    "{} lists only \"{}\"; enable it in the parent cgroup's cgroup.subtree_control or, under systemd, run codeexec with Delegate=yes",
                    dir.join("cgroup.controllers").display(),
                    available.trim()
                ),
            });
        }
    }
    Ok(())
}

fn enable(dir: &Path) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let on = read_file(&path)?;
    let missing: Vec<String> =
        CONTROLLERS.iter().filter(|c| !on.split_whitespace().any(|o| o == **c)).map(|c| format!("+{c}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&path, &missing.join(" "))
}

#[derive(Debug)]
pub(super) struct Cgroup {
    dir: PathBuf,
    memory: MemController,
    pids: PidController,
    cpu: CpuController,
}

impl Cgroup {
    pub(super) fn create(dir: &Path) -> Result<Self> {
        mkdir_fresh(dir, |d| write_file(&d.join("cgroup.kill"), "1").and_then(|()| kill_listed(d)))?;
        let root = dir.to_path_buf();
        let cg = Self {
            dir: dir.to_owned(),
            memory: MemController::new(dir.to_owned(), root.clone(), true),
            pids: PidController::new(dir.to_owned(), root.clone(), true),
            cpu: CpuController::new(dir.to_owned(), root, true),
        };
        // One OOM kill takes the whole run, as a judge expects (cgroups-rs has no setter).
        // The file is missing when the parent does not enable the memory controller (yet):
        // see `Hierarchy::create`.
        let oom_group = dir.join("memory.oom.group");
        let ready = std::fs::OpenOptions::new().write(true).open(&oom_group);
        let written = match ready {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = rmdir_retry(dir);
                return Err(CgroupError::ParentNotReady(dir.to_owned()));
            }
            Err(source) => Err(CgroupError::Io { op: "open", path: oom_group, source }),
            Ok(mut f) => std::io::Write::write_all(&mut f, b"1").map_err(|source| CgroupError::Io {
                op: "write",
                path: oom_group,
                source,
            }),
        };
        if let Err(e) = written {
            let _ = rmdir_retry(dir);
            return Err(e);
        }
        Ok(cg)
    }

    /// Writes what differs from `old` (everything when `old` is `None`).
    pub(super) fn set_limits(&self, limits: &Limits, old: Option<&Limits>) -> Result<()> {
        let ctl = |op: &'static str| {
            let path = self.dir.clone();
            move |source| CgroupError::Controller { op, path, source }
        };
        if old.is_none_or(|o| o.memory_bytes != limits.memory_bytes) {
            let bytes = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
            self.memory.set_limit(bytes).map_err(ctl("set memory.max"))?;
        }
        // memory.swap.max only exists with swap accounting; without it there is no swap
        if old.is_none() && self.dir.join("memory.swap.max").exists() {
            self.memory.set_memswap_limit(0).map_err(ctl("set memory.swap.max"))?;
        }
        if old.is_none_or(|o| o.pids != limits.pids) {
            let pids = i64::try_from(limits.pids).unwrap_or(i64::MAX);
            self.pids.set_pid_max(MaxValue::Value(pids)).map_err(ctl("set pids.max"))?;
        }
        if old.is_none_or(|o| (o.cpu_quota_us, o.cpu_period_us) != (limits.cpu_quota_us, limits.cpu_period_us)) {
            let quota = i64::try_from(limits.cpu_quota_us).unwrap_or(i64::MAX);
            self.cpu.set_cfs_quota_and_period(Some(quota), Some(limits.cpu_period_us)).map_err(ctl("set cpu.max"))?;
        }
        Ok(())
    }

    /// Clone straight into the directory: no write needed.
    pub(super) fn placement(&self) -> Result<Placement> {
        Ok(Placement { dir: Some(open_dir(&self.dir)?), procs: Vec::new() })
    }

    pub(super) fn attach(&self, pid: i32) -> Result<()> {
        let p = CgroupPid { pid: u64::try_from(pid).unwrap_or(0) };
        self.memory.add_task_by_tgid(&p).map_err(|source| CgroupError::Controller {
            op: "attach",
            path: self.dir.clone(),
            source,
        })
    }

    pub(super) fn cpu_usage(&self) -> Result<Duration> {
        let path = self.dir.join("cpu.stat");
        let text = read_file(&path)?;
        Ok(Duration::from_micros(keyed_value(&path, &text, "usage_usec")?))
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        // memory.peak exists since 5.19; older kernels only have the current usage
        let peak_path = self.dir.join("memory.peak");
        let peak_path = if peak_path.exists() { peak_path } else { self.dir.join("memory.current") };
        let peak_text = read_file(&peak_path)?;
        let memory_peak_bytes =
            peak_text.trim().parse().map_err(|_| CgroupError::Parse { path: peak_path, text: peak_text.clone() })?;
        let ev_path = self.dir.join("memory.events");
        let events = read_file(&ev_path)?;
        let oom_kills = keyed_value(&ev_path, &events, "oom_kill")?
            .max(keyed_value(&ev_path, &events, "oom_group_kill").unwrap_or(0));
        let pids_path = self.dir.join("pids.events");
        let pids_max_events = keyed_value(&pids_path, &read_file(&pids_path)?, "max")?;
        Ok(Stats { cpu_usage: self.cpu_usage()?, memory_peak_bytes, oom_kills, pids_max_events })
    }

    pub(super) fn freeze(&self, value: &str) -> Result<()> {
        write_file(&self.dir.join("cgroup.freeze"), value)
    }

    pub(super) fn kill(&self) -> Result<()> {
        let path = self.dir.join("cgroup.kill");
        if path.exists() {
            write_file(&path, "1")
        } else {
            // before 5.14
            kill_listed(&self.dir)
        }
    }

    pub(super) fn remove(self) -> Result<()> {
        rmdir_retry(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fake_root(controllers: &str, subtree: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), subtree).unwrap();
        t
    }

    #[test]
    fn prepare_enables_only_missing_controllers() {
        let t = fake_root("cpuset cpu io memory hugetlb pids rdma misc\n", "cpu memory\n");
        // the parent's subtree_control must exist for the read; a cgroupfs makes it with the dir
        fs::create_dir(t.path().join("codeexec")).unwrap();
        fs::write(t.path().join("codeexec/cgroup.subtree_control"), "").unwrap();
        prepare(t.path(), "codeexec").unwrap();
        assert_eq!(fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(), "+pids");
        assert_eq!(fs::read_to_string(t.path().join("codeexec/cgroup.subtree_control")).unwrap(), "+memory +pids +cpu");
    }

    #[test]
    fn prepare_explains_a_missing_controller() {
        let t = fake_root("hugetlb\n", "");
        let e = prepare(t.path(), "codeexec").unwrap_err().to_string();
        assert!(e.contains("memory") && e.contains("Delegate=yes"), "{e}");
    }

    #[test]
    fn create_sets_limits_and_stats_read_events() {
        let t = fake_root("memory pids cpu", "memory pids cpu");
        let dir = t.path().join("codeexec/run-0");
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        // cgroups-rs reads cpu.max before writing it; a real cgroupfs has it from mkdir
        let limits = Limits { memory_bytes: 32 << 20, pids: 9, cpu_quota_us: 100_000, cpu_period_us: 100_000 };
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
        let cg = Cgroup { dir: dir.clone(), memory: mem(&dir), pids: pid(&dir), cpu: cpu(&dir) };
        cg.set_limits(&limits, None).unwrap();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), "33554432");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "9");
        assert_eq!(read("cpu.max"), "100000 100000");
        cg.attach(5).unwrap();
        assert_eq!(read("cgroup.procs"), "5");
        fs::write(dir.join("cpu.stat"), "usage_usec 85000\nuser_usec 80000\n").unwrap();
        fs::write(dir.join("memory.peak"), "1048576\n").unwrap();
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 1\n").unwrap();
        fs::write(dir.join("pids.events"), "max 0\n").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(
            s,
            Stats {
                cpu_usage: Duration::from_millis(85),
                memory_peak_bytes: 1 << 20,
                oom_kills: 1,
                pids_max_events: 0
            }
        );
    }

    #[test]
    fn a_parent_without_our_controllers_is_not_ready() {
        // a fresh directory whose parent does not enable memory has no memory.oom.group
        let t = fake_root("memory pids cpu", "");
        let dir = t.path().join("codeexec/run-1");
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        assert!(matches!(Cgroup::create(&dir), Err(CgroupError::ParentNotReady(_))));
        assert!(!dir.exists(), "the half-made cgroup is removed");
    }

    fn mem(d: &Path) -> MemController {
        MemController::new(d.to_owned(), d.to_owned(), true)
    }
    fn pid(d: &Path) -> PidController {
        PidController::new(d.to_owned(), d.to_owned(), true)
    }
    fn cpu(d: &Path) -> CpuController {
        CpuController::new(d.to_owned(), d.to_owned(), true)
    }
}
