//! The local store's journal: every job in one SQLite database, `jobs.db` under `[jobs]
//! dir`, in WAL mode, so that a daemon that restarts finds its jobs again.
//!
//! Why SQLite (rusqlite, the library built in): measured on the development machine (2
//! cores, virtual disk) with 2000 jobs of three commits each, a commit took 0.01 to 0.07
//! ms with `synchronous = NORMAL` and 4 to 9 ms with `FULL` (an fsync each); redb took
//! 0.02 ms without fsync and 4.4 to 8.5 ms with. But redb's commits without fsync
//! (`Durability::None`) are lost when the process is killed (checked: 1 of 100 rows left
//! after SIGKILL), while SQLite's WAL survives a killed process without any fsync (100 of
//! 100): what is written is in the kernel's page cache, and only a crash of the machine
//! can lose the last commits. So a job is safe from a killed daemon at 0.05 ms a write;
//! `[jobs] fsync = true` also keeps it from a power loss, at an fsync per change. And an
//! operator can read the database with the `sqlite3` shell.
//!
//! One daemon per directory: it holds `dir/lock` (flock) while it lives.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Job, Result, StoreError};

/// The schema; `user_version` says which.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    finished_at INTEGER,
    idem TEXT,
    job TEXT NOT NULL,
    request BLOB
);
PRAGMA user_version = 1;
";

/// A job as the journal keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The job.
    pub job: Job,
    /// Its request's JSON, while it is pending.
    pub request: Option<Vec<u8>>,
    /// Its idempotency key (with the owner), while it is kept.
    pub idem: Option<String>,
}

/// The database, open.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or makes) the journal in `dir` (made 0700; the database 0600: it holds
    /// requests and callback URLs) and reads every job in it, in submission order.
    /// `fsync`: each change is synced to disk (`synchronous = FULL`).
    pub fn open(dir: &Path, fsync: bool) -> Result<(Journal, Vec<Stored>)> {
        let io = |op: &'static str, p: &Path| {
            let path = p.display().to_string();
            move |source| StoreError::Io { op, path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create", dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => return Err(StoreError::InUse(dir.display().to_string())),
            Err((_, e)) => return Err(io("lock", &lock_path)(e.into())),
        };
        let path = dir.join("jobs.db");
        // made here first, so SQLite (and its -wal and -shm files, which copy the mode) never
        // makes it with the umask's permissions
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io("create", &path))?;
        let conn = Connection::open(&path).map_err(sql(&path))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)
        };
        setup().map_err(sql(&path))?;
        let mut journal = Journal { conn, path, _lock: lock };
        let jobs = journal.read_all()?;
        Ok((journal, jobs))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_all(&mut self) -> Result<Vec<Stored>> {
        let path = self.path.clone();
        let mut stmt = self.conn.prepare("SELECT id, job, request, idem FROM jobs ORDER BY seq").map_err(sql(&path))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<Vec<u8>>>(2)?, r.get(3)?))
            })
            .map_err(sql(&path))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, job, request, idem) = row.map_err(sql(&path))?;
            let job: Job =
                serde_json::from_str(&job).map_err(|e| StoreError::Damaged { id: id.clone(), why: e.to_string() })?;
            if job.id != id {
                return Err(StoreError::Damaged { id, why: format!("the record names job {}", job.id) });
            }
            out.push(Stored { job, request, idem });
        }
        Ok(out)
    }

    /// Writes a job (new or changed); it is on disk (or in the kernel's cache, without
    /// `fsync`) when this returns.
    pub fn put(&mut self, s: &Stored) -> Result<()> {
        let job = serde_json::to_string(&s.job)
            .map_err(|e| StoreError::Damaged { id: s.job.id.clone(), why: e.to_string() })?;
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (id, status, finished_at, idem, job, request) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET status = ?2, finished_at = ?3, idem = ?4, job = ?5, request = ?6",
            )
            .and_then(|mut st| {
                let finished = s.job.finished_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
                st.execute(params![s.job.id, s.job.status.as_str(), finished, s.idem, job, s.request])
            })
            .map(drop)
            .map_err(sql(&self.path))
    }

    /// Forgets jobs.
    pub fn delete(&mut self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(sql(&self.path))?;
        for id in ids {
            tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map_err(sql(&self.path))?;
        }
        tx.commit().map_err(sql(&self.path))
    }

    /// One job as stored (for tests and checks).
    pub fn read(&self, id: &str) -> Result<Option<Job>> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT job FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(sql(&self.path))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Damaged { id: id.to_owned(), why: e.to_string() })
        })
        .transpose()
    }
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Journal { path: path.display().to_string(), source }
}
