//! Run slots: a slot number gives a run its host ids and its cgroup name, and no two runs
//! hold the same slot at once, across every codeexec process on the host (a daemon and
//! CLI runs side by side). Each slot is a lock file under the state dir; `flock` releases it
//! when its holder exits, however it exits, so a crash never strands a slot.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The cgroup name of slot `index`.
pub(super) fn cgroup_name(index: u32) -> String {
    format!("run-{index}")
}

/// The slot a cgroup name belongs to.
pub(super) fn slot_of(cgroup_name: &str) -> Option<u32> {
    cgroup_name.strip_prefix("run-")?.parse().ok()
}

/// All slots of the host.
#[derive(Debug)]
pub(super) struct SlotPool {
    dir: PathBuf,
    count: u32,
    next: AtomicU32,
}

/// A held slot; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct Slot {
    index: u32,
    _lock: Flock<File>,
}

impl Slot {
    /// The slot number, `0..count`.
    pub(super) fn index(&self) -> u32 {
        self.index
    }

    /// The run's cgroup name.
    pub(super) fn cgroup_name(&self) -> String {
        cgroup_name(self.index)
    }
}

impl SlotPool {
    /// Slots `0..count` with lock files in `dir` (created if missing).
    pub(super) fn new(dir: PathBuf, count: u32) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // start where other processes are unlikely to look first
        let start = std::process::id() % count.max(1);
        Ok(Self { dir, count, next: AtomicU32::new(start) })
    }

    /// Slot `index`, if no one holds it.
    pub(super) fn try_take(&self, index: u32) -> io::Result<Option<Slot>> {
        if index >= self.count {
            return Ok(None);
        }
        self.lock(index)
    }

    fn lock(&self, index: u32) -> io::Result<Option<Slot>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(index.to_string()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Slot { index, _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// The first free slot, or `None` when every one is held.
    pub(super) fn acquire(&self) -> io::Result<Option<Slot>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.count {
            if let Some(slot) = self.lock(start.wrapping_add(i) % self.count)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_until_released() {
        let t = tempfile::tempdir().unwrap();
        let pool = SlotPool::new(t.path().join("slots"), 2).unwrap();
        let a = pool.acquire().unwrap().unwrap();
        let b = pool.acquire().unwrap().unwrap();
        assert_ne!(a.index(), b.index());
        assert!(pool.acquire().unwrap().is_none(), "both slots are held");
        // another process's pool (another open file description) sees them held too
        let other = SlotPool::new(t.path().join("slots"), 2).unwrap();
        assert!(other.acquire().unwrap().is_none());
        let freed = a.index();
        drop(a);
        assert_eq!(other.acquire().unwrap().unwrap().index(), freed);
    }
}
