//! cgroup v1 (and hybrid) runs: a directory in the memory, pids and cpu hierarchies, plus
//! one for CPU-time accounting: the controller-less cgroup2 mount on a hybrid host, or
//! cpuacct (which may be the cpu directory itself when the two are co-mounted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};

use super::detect::{Layout, Usage};
use super::{
    CgroupError, Limits, Placement, Result, Stats, keyed_value, kill_listed, mkdir_fresh, open_dir, open_procs,
    read_file, rmdir_retry, write_file,
};

#[derive(Debug)]
pub(super) struct Cgroup {
    memory: MemController,
    pids: PidController,
    cpu: CpuController,
    /// The accounting directory, and whether it is a cgroup2 one.
    usage: PathBuf,
    unified: bool,
    /// Every distinct directory, in creation order.
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    pub(super) fn create(layout: &Layout, parent: &str, name: &str) -> Result<Self> {
        let Layout::V1 { memory, pids, cpu, usage } = layout else {
            unreachable!("v1::Cgroup::create is only called with a V1 layout")
        };
        let dir = |mount: &Path| mount.join(parent).join(name);
        let (usage_dir, unified) = match usage {
            Usage::Unified(p) => (dir(p), true),
            Usage::CpuAcct(p) => (dir(p), false),
        };
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(4);
        for d in [dir(memory), dir(pids), dir(cpu), usage_dir.clone()] {
            if dirs.contains(&d) {
                continue;
            }
            if let Err(e) = mkdir_fresh(&d, kill_leftover) {
                remove_all(&dirs);
                return Err(e);
            }
            dirs.push(d);
        }
        Ok(Self {
            memory: MemController::new(dir(memory), memory.clone(), false),
            pids: PidController::new(dir(pids), pids.clone(), false),
            cpu: CpuController::new(dir(cpu), cpu.clone(), false),
            usage: usage_dir,
            unified,
            dirs,
        })
    }

    /// Writes what differs from `old` (everything when `old` is `None`).
    pub(super) fn set_limits(&self, limits: &Limits, old: Option<&Limits>) -> Result<()> {
        if old.is_none_or(|o| o.memory_bytes != limits.memory_bytes) {
            self.set_memory(limits.memory_bytes, old.map(|o| o.memory_bytes))?;
        }
        if old.is_none_or(|o| o.pids != limits.pids) {
            let pids = i64::try_from(limits.pids).unwrap_or(i64::MAX);
            self.pids.set_pid_max(MaxValue::Value(pids)).map_err(ctl("set pids.max", self.pids.path()))?;
        }
        if old.is_none_or(|o| (o.cpu_quota_us, o.cpu_period_us) != (limits.cpu_quota_us, limits.cpu_period_us)) {
            let quota = i64::try_from(limits.cpu_quota_us).unwrap_or(i64::MAX);
            self.cpu
                .set_cfs_quota_and_period(Some(quota), Some(limits.cpu_period_us))
                .map_err(ctl("set cpu.cfs_quota_us", self.cpu.path()))?;
        }
        Ok(())
    }

    /// Memory and memory+swap both at `bytes` (no swap). The kernel wants memsw >= memory
    /// at every moment, so a raise writes memsw first and a cut writes memory first. The
    /// memsw file exists only with swap accounting.
    fn set_memory(&self, bytes: u64, old: Option<u64>) -> Result<()> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let path = self.memory.path();
        let memsw = path.join("memory.memsw.limit_in_bytes").exists();
        let raise = old.is_some_and(|o| i64::try_from(o).unwrap_or(i64::MAX) < bytes);
        if memsw && raise {
            self.memory.set_memswap_limit(bytes).map_err(ctl("set memory.memsw.limit_in_bytes", path))?;
        }
        self.memory.set_limit(bytes).map_err(ctl("set memory.limit_in_bytes", path))?;
        if memsw && !raise {
            self.memory.set_memswap_limit(bytes).map_err(ctl("set memory.memsw.limit_in_bytes", path))?;
        }
        Ok(())
    }

    /// Clone into the unified directory (hybrid host); write the pid into the v1 ones.
    pub(super) fn placement(&self) -> Result<Placement> {
        let mut procs = Vec::with_capacity(4);
        for dir in [self.memory.path(), self.pids.path(), self.cpu.path()] {
            procs.push(open_procs(dir)?);
        }
        let dir = if self.unified {
            Some(open_dir(&self.usage)?)
        } else {
            if self.usage != self.cpu.path() {
                procs.push(open_procs(&self.usage)?);
            }
            None
        };
        Ok(Placement { dir, procs })
    }

    pub(super) fn attach(&self, pid: i32) -> Result<()> {
        let p = CgroupPid { pid: u64::try_from(pid).unwrap_or(0) };
        self.memory.add_task_by_tgid(&p).map_err(ctl("attach", self.memory.path()))?;
        self.pids.add_task_by_tgid(&p).map_err(ctl("attach", self.pids.path()))?;
        self.cpu.add_task_by_tgid(&p).map_err(ctl("attach", self.cpu.path()))?;
        if self.usage != self.cpu.path() {
            write_file(&self.usage.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    pub(super) fn cpu_usage(&self) -> Result<Duration> {
        if self.unified {
            let path = self.usage.join("cpu.stat");
            let text = read_file(&path)?;
            return Ok(Duration::from_micros(keyed_value(&path, &text, "usage_usec")?));
        }
        let path = self.usage.join("cpuacct.usage");
        let text = read_file(&path)?;
        let ns = text.trim().parse().map_err(|_| CgroupError::Parse { path, text: text.clone() })?;
        Ok(Duration::from_nanos(ns))
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let mem = self.memory.path();
        let peak_path = mem.join("memory.max_usage_in_bytes");
        let peak_text = read_file(&peak_path)?;
        let memory_peak_bytes =
            peak_text.trim().parse().map_err(|_| CgroupError::Parse { path: peak_path, text: peak_text.clone() })?;
        // `oom_kill` appeared in 4.13; failcnt is no substitute (it stays 0 when memsw trips)
        let oom_path = mem.join("memory.oom_control");
        let oom_kills = keyed_value(&oom_path, &read_file(&oom_path)?, "oom_kill")?;
        let ev_path = self.pids.path().join("pids.events");
        let pids_max_events = keyed_value(&ev_path, &read_file(&ev_path)?, "max")?;
        Ok(Stats { cpu_usage: self.cpu_usage()?, memory_peak_bytes, oom_kills, pids_max_events })
    }

    pub(super) fn kill(&self) -> Result<()> {
        if self.unified {
            let path = self.usage.join("cgroup.kill");
            if path.exists() {
                return write_file(&path, "1");
            }
        }
        kill_listed(self.memory.path())
    }

    pub(super) fn remove(self) -> Result<()> {
        let mut first = Ok(());
        for d in &self.dirs {
            if let Err(e) = rmdir_retry(d)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Maps a cgroups-rs error to ours, naming the operation and the cgroup.
fn ctl(op: &'static str, path: &Path) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError + use<> {
    let path = path.to_owned();
    move |source| CgroupError::Controller { op, path, source }
}

fn remove_all(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = rmdir_retry(d);
    }
}

/// A leftover cgroup: kill what may still run in it (a v2 dir has cgroup.kill).
fn kill_leftover(dir: &Path) -> Result<()> {
    let kill = dir.join("cgroup.kill");
    if kill.exists() {
        return write_file(&kill, "1").and_then(|()| kill_listed(dir));
    }
    kill_listed(dir)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake hybrid cgroupfs: the mount points are plain directories; files we read are
    /// written by the test, files we write are created by our writes.
    fn fake(root: &Path) -> Layout {
        for m in ["memory", "pids", "cpu", "unified"] {
            fs::create_dir_all(root.join(m).join("codeexec")).unwrap();
        }
        Layout::V1 {
            memory: root.join("memory"),
            pids: root.join("pids"),
            cpu: root.join("cpu"),
            usage: Usage::Unified(root.join("unified")),
        }
    }

    fn limits() -> Limits {
        Limits { memory_bytes: 64 << 20, pids: 17, cpu_quota_us: 50_000, cpu_period_us: 100_000 }
    }

    #[test]
    fn create_writes_limits_in_every_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake(t.path());
        let cg = Cgroup::create(&layout, "codeexec", "run-3").unwrap();
        cg.set_limits(&limits(), None).unwrap();
        let read = |p: &str| fs::read_to_string(t.path().join(p)).unwrap();
        assert_eq!(read("memory/codeexec/run-3/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/codeexec/run-3/pids.max"), "17");
        assert_eq!(read("cpu/codeexec/run-3/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/codeexec/run-3/cpu.cfs_period_us"), "100000");
        // a change writes only what differs
        std::fs::remove_file(t.path().join("pids/codeexec/run-3/pids.max")).unwrap();
        let more = Limits { memory_bytes: 128 << 20, ..limits() };
        cg.set_limits(&more, Some(&limits())).unwrap();
        assert_eq!(read("memory/codeexec/run-3/memory.limit_in_bytes"), "134217728");
        assert!(!t.path().join("pids/codeexec/run-3/pids.max").exists());
        assert!(t.path().join("unified/codeexec/run-3").is_dir());
        // no memsw file in the fake: swap accounting absent, nothing written
        assert!(!t.path().join("memory/codeexec/run-3/memory.memsw.limit_in_bytes").exists());
        cg.attach(42).unwrap();
        assert_eq!(read("memory/codeexec/run-3/cgroup.procs"), "42");
        assert_eq!(read("unified/codeexec/run-3/cgroup.procs"), "42");
    }

    #[test]
    fn leftover_cgroups_are_removed_before_reuse() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake(t.path());
        // an empty leftover of a crashed run (a real cgroupfs dir with no processes)
        let dir = t.path().join("pids/codeexec/run-1");
        fs::create_dir_all(&dir).unwrap();
        let cg = Cgroup::create(&layout, "codeexec", "run-1").unwrap();
        cg.set_limits(&limits(), None).unwrap();
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "17");
        drop(cg);
        // a leftover that cannot be removed fails creation and says why; a tempdir keeps
        // its files where a cgroupfs would drop them with the directory
        let t = tempfile::tempdir().unwrap();
        let layout = fake(t.path());
        let dir = t.path().join("cpu/codeexec/run-2");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stray"), "").unwrap();
        let err = Cgroup::create(&layout, "codeexec", "run-2").unwrap_err();
        assert!(err.to_string().contains("failed to remove"), "{err}");
        // nothing half-made is left in the other hierarchies
        assert!(!t.path().join("memory/codeexec/run-2").exists());
        assert!(!t.path().join("pids/codeexec/run-2").exists());
    }

    #[test]
    fn stats_are_read_from_the_accounting_files() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake(t.path());
        let cg = Cgroup::create(&layout, "codeexec", "r").unwrap();
        cg.set_limits(&limits(), None).unwrap();
        let w = |p: &str, s: &str| fs::write(t.path().join(p), s).unwrap();
        w("unified/codeexec/r/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        w("memory/codeexec/r/memory.max_usage_in_bytes", "67108864\n");
        w("memory/codeexec/r/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
        w("pids/codeexec/r/pids.events", "max 21\n");
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu_usage, Duration::from_micros(1500));
        assert_eq!(s.memory_peak_bytes, 64 << 20);
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.pids_max_events, 21);
        // cgroup.kill on the unified dir
        fs::write(t.path().join("unified/codeexec/r/cgroup.kill"), "").unwrap();
        cg.kill().unwrap();
        assert_eq!(fs::read_to_string(t.path().join("unified/codeexec/r/cgroup.kill")).unwrap(), "1");
    }

    #[test]
    fn cpuacct_accounting_when_there_is_no_cgroup2() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("cpu,cpuacct/codeexec")).unwrap();
        fs::create_dir_all(t.path().join("memory/codeexec")).unwrap();
        fs::create_dir_all(t.path().join("pids/codeexec")).unwrap();
        let both = t.path().join("cpu,cpuacct");
        let layout = Layout::V1 {
            memory: t.path().join("memory"),
            pids: t.path().join("pids"),
            cpu: both.clone(),
            usage: Usage::CpuAcct(both),
        };
        let cg = Cgroup::create(&layout, "codeexec", "r").unwrap();
        cg.set_limits(&limits(), None).unwrap();
        assert_eq!(cg.dirs.len(), 3);
        fs::write(t.path().join("cpu,cpuacct/codeexec/r/cpuacct.usage"), "2500000\n").unwrap();
        assert_eq!(cg.cpu_usage().unwrap(), Duration::from_micros(2500));
        cg.attach(7).unwrap();
        // one write to the shared directory, not two
        assert_eq!(fs::read_to_string(t.path().join("cpu,cpuacct/codeexec/r/cgroup.procs")).unwrap(), "7");
    }
}
