//! A fleet's jobs in Redis (`[queue] redis`): several daemons share one queue, a Redis
//! stream whose consumer group hands each job id to one daemon at a time, and keep each
//! job in a hash, so that any daemon answers `GET` for any job. The scripts and the keys
//! are in `scripts.rs`.
//!
//! A daemon reads only as many jobs as it has free run slots, renews its claims every
//! third of a lease, and every third of a lease takes over claims idle for a whole one
//! (their daemon died): `XAUTOCLAIM` without `JUSTID`, so the delivery counter rises, and a
//! job handed out more than `max_attempts` times fails with `worker_lost` instead of
//! killing daemon after daemon. At start it takes back its own claims from before a
//! restart (same consumer name), counted the same way. A cancel is published on a channel:
//! the daemon running the job kills its run (and finds out at its next heartbeat if it
//! missed the message).
//!
//! Connections: one multiplexed connection for commands and scripts, one for the blocking
//! `XREADGROUP` (a blocked connection answers nothing else), one RESP3 connection for the
//! cancel channel; each reconnects by itself (`ConnectionManager`), and the channel is
//! subscribed again after a reconnect.

mod fields;
mod scripts;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushKind, Value};
use tokio::sync::mpsc;

use super::{
    Bounds, Callback, Cancelled, Claim, Job, JobStore, Lease, NewJob, Outcome, Result, Started, StoreError, Submitted,
    fresh, now_ms, worker_lost,
};
use fields::{fields_of, job_of, outcome_fields, parse_reply};
use scripts::Scripts;

/// The consumer group every daemon reads in.
const GROUP: &str = "workers";

/// How to reach the fleet's Redis and how to behave in it.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path/to/socket`.
    pub url: String,
    /// This daemon's name in the consumer group: unique among live daemons, the same
    /// after a restart (so its claims are found again at once).
    pub consumer: String,
    /// Prepended to every key (`codeexec:`).
    pub prefix: String,
    /// A claim not renewed for this long is taken over by another daemon.
    pub lease: Duration,
    /// The longest `take` blocks in Redis (it also bounds how long a drain waits for it).
    pub block: Duration,
}

/// The fleet's store (see the module documentation).
pub struct FleetStore {
    config: FleetConfig,
    bounds: Bounds,
    conn: ConnectionManager,
    blocking: ConnectionManager,
    /// Held for its subscription; the pushes go to `cancels`.
    _subscriber: ConnectionManager,
    cancels: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    scripts: Scripts,
    last_reclaim: Mutex<Instant>,
    recovered: AtomicBool,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore").field("consumer", &self.config.consumer).finish_non_exhaustive()
    }
}

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e)
}

impl FleetStore {
    /// Connects (three connections), makes the stream and its group if they are missing,
    /// and subscribes to the cancel channel.
    pub async fn open(config: FleetConfig, bounds: Bounds) -> Result<FleetStore> {
        let client = redis::Client::open(config.url.as_str()).map_err(redis_err)?;
        let retries = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(
            client.clone(),
            retries.clone().set_response_timeout(Some(Duration::from_secs(5))),
        )
        .await
        .map_err(redis_err)?;
        let blocking = ConnectionManager::new_with_config(
            client.clone(),
            retries.clone().set_response_timeout(Some(config.block + Duration::from_secs(5))),
        )
        .await
        .map_err(redis_err)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let subscriber = subscribe(&client, &config, retries, tx).await?;
        let mut c = conn.clone();
        let made: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key(&config, "jobs"))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match made {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(redis_err(e)),
            _ => {}
        }
        Ok(FleetStore {
            config,
            bounds,
            conn,
            blocking,
            _subscriber: subscriber,
            cancels: Mutex::new(Some(rx)),
            scripts: Scripts::new(),
            last_reclaim: Mutex::new(Instant::now()),
            recovered: AtomicBool::new(false),
        })
    }

    fn key(&self, name: &str) -> String {
        key(&self.config, name)
    }

    fn job_key(&self, id: &str) -> String {
        self.key(&format!("job:{id}"))
    }

    fn retention_ms(&self) -> u64 {
        u64::try_from(self.bounds.retention.as_millis()).unwrap_or(u64::MAX)
    }

    /// Entries and job ids a claim script returned, as claims.
    fn claims(flat: Vec<String>) -> Vec<Claim> {
        flat.chunks_exact(2).map(|p| Claim { token: p[0].clone(), id: p[1].clone() }).collect()
    }

    /// New jobs for this daemon: `XREADGROUP … >`, blocking up to `wait`.
    async fn read_new(&self, n: usize, wait: Duration) -> Result<Vec<Claim>> {
        let mut c = self.blocking.clone();
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(n)
            .arg("BLOCK")
            .arg(u64::try_from(wait.min(self.config.block).as_millis()).unwrap_or(1000).max(1))
            .arg("STREAMS")
            .arg(self.key("jobs"))
            .arg(">")
            .query_async(&mut c)
            .await
            .map_err(redis_err)?;
        let mut out = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            match entry.map.get("id").and_then(|v| redis::from_redis_value_ref::<String>(v).ok()) {
                Some(id) => out.push(Claim { id, token: entry.id }),
                None => tracing::warn!(entry = %entry.id, "a queue entry without a job id"),
            }
        }
        Ok(out)
    }

    /// Claims of dead daemons, when a third of a lease has passed since the last look.
    async fn reclaim(&self, n: usize) -> Result<Vec<Claim>> {
        {
            let mut last = self.last_reclaim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < self.config.lease / 3 {
                return Ok(Vec::new());
            }
            *last = Instant::now();
        }
        let mut c = self.conn.clone();
        let flat: Vec<String> = self
            .scripts
            .reclaim
            .key(self.key("jobs"))
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX))
            .arg(n)
            .invoke_async(&mut c)
            .await
            .map_err(redis_err)?;
        let claims = Self::claims(flat);
        if !claims.is_empty() {
            tracing::warn!(consumer = %self.config.consumer, jobs = ?claims.iter().map(|c| &c.id).collect::<Vec<_>>(), "took over jobs whose daemon stopped renewing them");
        }
        Ok(claims)
    }

    /// This daemon's own claims from before a restart, once.
    async fn recover(&self) -> Result<Vec<Claim>> {
        if self.recovered.swap(true, Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let flat: Vec<String> = self
            .scripts
            .recover
            .key(self.key("jobs"))
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(1000)
            .invoke_async(&mut c)
            .await
            .map_err(|e| {
                self.recovered.store(false, Ordering::SeqCst);
                redis_err(e)
            })?;
        let claims = Self::claims(flat);
        if !claims.is_empty() {
            tracing::warn!(consumer = %self.config.consumer, jobs = claims.len(), "took back this daemon's jobs from before its restart");
        }
        Ok(claims)
    }

    /// Runs `FINISH` with the outcome's fields: the job if this wrote it.
    async fn write_outcome(&self, claim: &Claim, outcome: &Outcome) -> Result<Option<Job>> {
        let mut c = self.conn.clone();
        let mut inv = self.scripts.finish.prepare_invoke();
        inv.key(self.job_key(&claim.id))
            .key(self.key("jobs"))
            .key(self.key("pending"))
            .arg(GROUP)
            .arg(&claim.token)
            .arg(self.retention_ms());
        for (k, v) in outcome_fields(outcome) {
            inv.arg(k).arg(v);
        }
        let v: Value = inv.invoke_async(&mut c).await.map_err(redis_err)?;
        match parse_reply(v)? {
            (kind, hash) if kind == "written" => job_of(&claim.id, &hash).map(Some),
            _ => Ok(None),
        }
    }
}

fn key(config: &FleetConfig, name: &str) -> String {
    format!("{}{name}", config.prefix)
}

/// A RESP3 connection subscribed to the cancel channel; the ids published go to `tx`.
async fn subscribe(
    client: &redis::Client,
    config: &FleetConfig,
    retries: ConnectionManagerConfig,
    tx: mpsc::UnboundedSender<String>,
) -> Result<ConnectionManager> {
    let info = client.get_connection_info().clone();
    let resp3 = info.clone().set_redis_settings(info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3));
    let client = redis::Client::open(resp3).map_err(redis_err)?;
    let push = move |p: redis::PushInfo| {
        if p.kind == PushKind::Message
            && let Some(id) = p.data.get(1).and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        {
            let _ = tx.send(id);
        }
        Ok::<(), std::convert::Infallible>(())
    };
    let cfg = retries.set_push_sender(push).set_automatic_resubscription();
    let mut sub = ConnectionManager::new_with_config(client, cfg).await.map_err(redis_err)?;
    sub.subscribe(key(config, "cancel")).await.map_err(redis_err)?;
    Ok(sub)
}

#[async_trait::async_trait]
impl JobStore for FleetStore {
    async fn submit(&self, new: NewJob) -> Result<Submitted> {
        let job = fresh(&new);
        let mut c = self.conn.clone();
        let mut inv = self.scripts.submit.prepare_invoke();
        inv.key(self.job_key(&job.id)).key(self.key("jobs")).key(self.key("pending"));
        if let Some(k) = &new.idempotency_key {
            inv.key(self.key(&format!("idem:{}:{k}", new.owner.as_deref().unwrap_or("-"))));
        }
        inv.arg(&job.id).arg(self.bounds.max_pending);
        for (k, v) in fields_of(&job, &new.request) {
            inv.arg(k).arg(v);
        }
        let (kind, value): (String, String) = inv.invoke_async(&mut c).await.map_err(redis_err)?;
        match kind.as_str() {
            "accepted" => Ok(Submitted::Accepted(job)),
            "existing" => match self.get(&value).await? {
                Some(j) => Ok(Submitted::Existing(j)),
                None => {
                    Err(StoreError::Damaged { id: value, why: "an idempotency key names a job that is gone".into() })
                }
            },
            _ => Err(StoreError::QueueFull { pending: value.parse().unwrap_or(0), max: self.bounds.max_pending }),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let mut c = self.conn.clone();
        let h: HashMap<String, Vec<u8>> =
            redis::cmd("HGETALL").arg(self.job_key(id)).query_async(&mut c).await.map_err(redis_err)?;
        if h.is_empty() {
            return Ok(None);
        }
        job_of(id, &h).map(Some)
    }

    async fn cancel(&self, id: &str, why: &str) -> Result<Cancelled> {
        let mut c = self.conn.clone();
        let r: String = self
            .scripts
            .cancel
            .key(self.job_key(id))
            .key(self.key("jobs"))
            .key(self.key("pending"))
            .arg(GROUP)
            .arg(self.retention_ms())
            .arg(why)
            .arg(now_ms())
            .arg(self.key("cancel"))
            .arg(id)
            .invoke_async(&mut c)
            .await
            .map_err(redis_err)?;
        let job = self.get(id).await?;
        Ok(match (r.as_str(), job) {
            ("cancelled", Some(j)) => Cancelled::Now(j),
            ("ended", Some(j)) => Cancelled::Ended(j),
            _ => Cancelled::Unknown,
        })
    }

    async fn take(&self, n: usize, wait: Duration) -> Result<Vec<Claim>> {
        let n = n.max(1);
        let mine = self.recover().await?;
        if !mine.is_empty() {
            return Ok(mine);
        }
        let theirs = self.reclaim(n).await?;
        if !theirs.is_empty() {
            return Ok(theirs);
        }
        self.read_new(n, wait).await
    }

    async fn start(&self, claim: &Claim) -> Result<Started> {
        let mut c = self.conn.clone();
        let v: Value = self
            .scripts
            .start
            .key(self.job_key(&claim.id))
            .key(self.key("jobs"))
            .arg(GROUP)
            .arg(&claim.token)
            .arg(&self.config.consumer)
            .arg(now_ms())
            .arg(self.bounds.max_attempts)
            .invoke_async(&mut c)
            .await
            .map_err(redis_err)?;
        let (kind, hash) = parse_reply(v)?;
        match kind.as_str() {
            "run" => {
                let request = hash.get("request").cloned().unwrap_or_default();
                Ok(Started::Run(job_of(&claim.id, &hash)?, request))
            }
            "callback" => Ok(Started::Callback(job_of(&claim.id, &hash)?)),
            "poison" => {
                let runs = job_of(&claim.id, &hash)?.runs;
                tracing::error!(job = %claim.id, runs, "the job's daemon died every time it ran it: failing it");
                let failed = Outcome::Failed(worker_lost(runs));
                match self.finish(claim, failed).await? {
                    Some(j) if super::callback_due(&j) => Ok(Started::Callback(j)),
                    _ => Ok(Started::Skip),
                }
            }
            _ => Ok(Started::Skip),
        }
    }

    async fn heartbeat(&self, claims: &[Claim]) -> Result<Vec<Lease>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.key(self.key("jobs")).arg(GROUP).arg(&self.config.consumer);
        for claim in claims {
            inv.key(self.job_key(&claim.id)).arg(&claim.token);
        }
        let states: Vec<String> = inv.invoke_async(&mut c).await.map_err(redis_err)?;
        Ok(states
            .iter()
            .map(|s| match s.as_str() {
                "lost" => Lease::Lost,
                "cancelled" => Lease::Cancelled,
                _ => Lease::Held,
            })
            .collect())
    }

    async fn finish(&self, claim: &Claim, outcome: Outcome) -> Result<Option<Job>> {
        self.write_outcome(claim, &outcome).await
    }

    async fn callback_progress(&self, id: &str, callback: &Callback) -> Result<()> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(callback).unwrap_or_default();
        let _: i64 =
            self.scripts.callback.key(self.job_key(id)).arg(json).invoke_async(&mut c).await.map_err(redis_err)?;
        Ok(())
    }

    async fn close(&self, claim: &Claim) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .scripts
            .close
            .key(self.key("jobs"))
            .arg(GROUP)
            .arg(&claim.token)
            .invoke_async(&mut c)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .scripts
            .release
            .key(self.job_key(&claim.id))
            .key(self.key("jobs"))
            .arg(GROUP)
            .arg(&claim.token)
            .arg(&self.config.consumer)
            .arg(&claim.id)
            .invoke_async(&mut c)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn pending(&self) -> Result<usize> {
        let mut c = self.conn.clone();
        let n: Option<i64> = redis::cmd("GET").arg(self.key("pending")).query_async(&mut c).await.map_err(redis_err)?;
        Ok(usize::try_from(n.unwrap_or(0).max(0)).unwrap_or(0))
    }

    fn watch_cancels(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.cancels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn describe(&self) -> String {
        format!("redis (consumer {})", self.config.consumer)
    }
}
