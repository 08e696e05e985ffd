//! `[queue]` (a fleet of daemons sharing jobs through Redis) and where `[jobs]` are kept,
//! validated into the job store the daemon opens.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Result};

/// `[queue]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path`: jobs go to a queue
    /// shared by every daemon with the same setting; empty: each daemon keeps its own.
    pub redis: String,
    /// This daemon's name in the fleet: unique among the live daemons, the same after a
    /// restart; empty: the host name.
    pub consumer: String,
    /// Prepended to every Redis key.
    pub prefix: String,
    /// A job's claim not renewed for this long (its daemon died) is taken over, ms.
    pub lease_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { redis: String::new(), consumer: String::new(), prefix: "codeexec:".into(), lease_ms: 30_000 }
    }
}

/// Where jobs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStoreSettings {
    /// In memory (`[jobs] dir = ""`): a restart forgets them.
    Memory,
    /// In an SQLite journal in this directory.
    Disk {
        /// The directory (one daemon's).
        dir: PathBuf,
        /// Every change synced to disk.
        fsync: bool,
    },
    /// In Redis, shared by a fleet.
    Fleet {
        /// The server's URL.
        url: String,
        /// This daemon's consumer name.
        consumer: String,
        /// The keys' prefix.
        prefix: String,
        /// The lease.
        lease: Duration,
    },
}

impl Config {
    /// The job store: Redis when `[queue] redis` is set (then `[jobs] dir` is not used),
    /// else the journal in `[jobs] dir`, or memory when that is empty.
    pub(super) fn job_store(&self) -> Result<JobStoreSettings> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let q = &self.queue;
        if q.redis.is_empty() {
            if self.jobs.dir.is_empty() {
                return Ok(JobStoreSettings::Memory);
            }
            let dir = PathBuf::from(&self.jobs.dir);
            if !dir.is_absolute() {
                return invalid(format!("jobs.dir {:?}: an absolute path (or empty: jobs in memory)", self.jobs.dir));
            }
            return Ok(JobStoreSettings::Disk { dir, fsync: self.jobs.fsync });
        }
        if let Err(e) = redis::Client::open(q.redis.as_str()) {
            // the URL may hold a password: name only what is wrong
            return invalid(format!(
                "queue.redis: not a Redis URL (redis://host:port/db or unix:///path): {:?}",
                e.kind()
            ));
        }
        if !(1000..=300_000).contains(&q.lease_ms) {
            return invalid(format!("queue.lease_ms {}: 1000 to 300000", q.lease_ms));
        }
        let name_ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
        let consumer = if q.consumer.is_empty() {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            q.consumer.clone()
        };
        if consumer.is_empty() || consumer.len() > 128 || !name_ok(&consumer) {
            return invalid(format!("queue.consumer {consumer:?}: 1 to 128 letters, digits and -_.:@"));
        }
        if q.prefix.len() > 64 || !name_ok(&q.prefix) {
            return invalid(format!("queue.prefix {:?}: at most 64 letters, digits and -_.:@", q.prefix));
        }
        Ok(JobStoreSettings::Fleet {
            url: q.redis.clone(),
            consumer,
            prefix: q.prefix.clone(),
            lease: Duration::from_millis(q.lease_ms),
        })
    }
}
