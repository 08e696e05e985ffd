//! Async jobs' state: what a job is and where it is kept until a daemon runs it and a while
//! after. One [`JobStore`] trait, three stores:
//!
//! - [`LocalStore`] without a journal: in this process's memory (a restart forgets every
//!   job);
//! - [`LocalStore`] with a journal ([`Journal`], SQLite in WAL mode under `[jobs] dir`):
//!   every change is written before it is answered, and a daemon that restarts finds its
//!   jobs again (the default);
//! - [`FleetStore`]: Redis Streams shared by several daemons (`[queue] redis`): any of them
//!   takes a job, any answers for it.
//!
//! A job's life through a store: [`JobStore::submit`] (queued) → [`JobStore::take`] (a
//! daemon claims it) → [`JobStore::start`] (running; or the claim turns out to be a
//! cancelled job to skip, or a finished job whose callback was not delivered) →
//! [`JobStore::finish`] (the first result written wins) → [`JobStore::close`] once its
//! callback is delivered. A claim is handed back with [`JobStore::release`] (the daemon is
//! stopping). Claims of a daemon that died are taken again: a job runs at least once, and
//! at most `max_attempts` times before it fails with `worker_lost`.
//!
//! This module knows nothing of HTTP or of runs: it stores request bytes and result JSON.
//! A finished job holds no file descriptor and no cancel token (the API keeps those for
//! the runs in progress only).

mod fleet;
mod journal;
mod local;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use fleet::{FleetConfig, FleetStore};
pub use journal::Journal;
pub use local::LocalStore;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a daemon with a free run slot.
    Queued,
    /// Running.
    Running,
    /// Ended with a result (whatever the program did).
    Done,
    /// Ended without one (`error` says why).
    Failed,
    /// Cancelled by `DELETE`, or by the daemon stopping when jobs are kept in memory.
    Cancelled,
}

impl State {
    /// Done, failed or cancelled.
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }

    /// The name on the wire and in the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<State> {
        [State::Queued, State::Running, State::Done, State::Failed, State::Cancelled]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// How far a callback's delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not tried yet.
    Pending,
    /// Being delivered.
    Delivering,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed or was refused, or the job was cancelled.
    Failed,
}

impl CallbackState {
    /// Delivered or failed: nothing more will be sent.
    pub fn over(self) -> bool {
        matches!(self, CallbackState::Delivered | CallbackState::Failed)
    }
}

/// A job's callback: where it goes and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// The URL (checked when the job was submitted, and again at each attempt).
    pub url: String,
    /// Its host and port, what `GET` shows (the path and query may hold tokens).
    pub host: String,
    /// How far it went.
    pub state: CallbackState,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// What went wrong at the last attempt.
    pub last_error: Option<String>,
}

/// Why a job failed or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A stable code (`internal_error`, `invalid_request`, `worker_lost`, `cancelled`).
    pub code: String,
    /// In words.
    pub message: String,
}

/// A job as a store keeps it (its request aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Random, 32 hex digits.
    pub id: String,
    /// A fingerprint of the API key that submitted it (None: a local caller).
    pub owner: Option<String>,
    /// Where it is.
    pub status: State,
    /// Unix milliseconds.
    pub created_at: u64,
    /// When its last run started.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// How many times a run of it started (more than 1 only when a daemon died while it
    /// ran, or stopped and handed it back).
    pub runs: u32,
    /// The response `POST /v1/execute` would have given (state `done`).
    pub result: Option<serde_json::Value>,
    /// Why it failed or was cancelled.
    pub error: Option<Failure>,
    /// Its callback, if it has one.
    pub callback: Option<Callback>,
}

/// A job to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (the caller makes it).
    pub id: String,
    /// Who submits it.
    pub owner: Option<String>,
    /// The request's JSON, as sent.
    pub request: Vec<u8>,
    /// Where its result goes.
    pub callback: Option<Callback>,
    /// The client's `Idempotency-Key`: a second submission with it (by the same owner)
    /// answers the first job instead of making another.
    pub idempotency_key: Option<String>,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new job, queued.
    Accepted(Job),
    /// The idempotency key was seen before: that job, as it is now.
    Existing(Job),
}

/// What a cancel did.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// The job was queued or running and is now cancelled.
    Now(Job),
    /// It had already ended.
    Ended(Job),
    /// No such job.
    Unknown,
}

/// A job a daemon has taken and holds until it closes or releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The job.
    pub id: String,
    /// The store's handle on the claim (the stream entry in Redis).
    pub token: String,
}

/// What a claim turned out to be when started.
#[derive(Debug, Clone)]
pub enum Started {
    /// Run it: the job (now running) and its request.
    Run(Job, Vec<u8>),
    /// It has ended already, but its callback was not delivered: deliver it.
    Callback(Job),
    /// Nothing to do (cancelled, gone, or the claim was lost): the store has let it go.
    Skip,
}

/// Whether a claim is still the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// It is.
    Held,
    /// Another daemon took it over (ours was thought dead): stop, write nothing.
    Lost,
    /// The job was cancelled: kill its run.
    Cancelled,
}

/// How a run ended, to record.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A result.
    Done(serde_json::Value),
    /// No result.
    Failed(Failure),
}

/// The bounds and times every store keeps to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// How long a finished job is kept.
    pub retention: Duration,
    /// Jobs queued or running at once.
    pub max_pending: usize,
    /// Finished jobs kept at once (local stores).
    pub max_finished: usize,
    /// Bytes of requests and results held at once (local stores).
    pub max_bytes: usize,
    /// A job is started at most this many times (its daemon died each time) before it
    /// fails with `worker_lost`.
    pub max_attempts: u32,
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A local bound is reached (`max_pending`, or the bytes held): retry soon.
    #[error("{0}")]
    Busy(String),
    /// The fleet's shared queue is full.
    #[error("the queue is full ({pending} jobs pending, at most {max}); retry later")]
    QueueFull {
        /// Jobs pending now.
        pending: u64,
        /// The cap.
        max: usize,
    },
    /// Redis cannot be reached or answered an error.
    #[error("the job queue (Redis) is unavailable")]
    Redis(#[source] redis::RedisError),
    /// The journal (SQLite) failed.
    #[error("the job journal {path} failed")]
    Journal {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Another daemon uses this journal directory.
    #[error("{0} is in use by another daemon (it holds its lock); give each daemon its own [jobs] dir")]
    InUse(String),
    /// A file operation on the journal's directory failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored job could not be read back.
    #[error("job {id}: stored data is damaged: {why}")]
    Damaged {
        /// The job.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// A blocking task failed.
    #[error("the job store's thread failed: {0}")]
    Thread(String),
}

/// A store's result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Where jobs are kept; see the module documentation for a job's way through it. Every
/// method may be called from many tasks at once.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync + fmt::Debug {
    /// Accepts a job (queued), or answers the job its idempotency key names.
    async fn submit(&self, job: NewJob) -> Result<Submitted>;

    /// The job, if it is known.
    async fn get(&self, id: &str) -> Result<Option<Job>>;

    /// Cancels a queued or running job (a daemon running it is told, see
    /// [`JobStore::watch_cancels`]).
    async fn cancel(&self, id: &str, why: &str) -> Result<Cancelled>;

    /// Claims up to `n` (at least 1) jobs to run, waiting up to `wait` for one.
    async fn take(&self, n: usize, wait: Duration) -> Result<Vec<Claim>>;

    /// Starts a claim: see [`Started`].
    async fn start(&self, claim: &Claim) -> Result<Started>;

    /// Renews the daemon's claims, and says for each whether it still holds it.
    async fn heartbeat(&self, claims: &[Claim]) -> Result<Vec<Lease>>;

    /// Records a run's outcome, unless the job has ended meanwhile (cancelled, or another
    /// daemon's run was faster): the first result written stands. Returns the job if this
    /// one did. Without a callback left to deliver, the claim is closed.
    async fn finish(&self, claim: &Claim, outcome: Outcome) -> Result<Option<Job>>;

    /// Records how a callback's delivery is going.
    async fn callback_progress(&self, id: &str, callback: &Callback) -> Result<()>;

    /// Lets the claim go for good (its callback is over).
    async fn close(&self, claim: &Claim) -> Result<()>;

    /// Hands a claim back unfinished (the daemon is stopping): another daemon, or this one
    /// after a restart, runs it. In memory, where nothing outlives the daemon, the job is
    /// cancelled instead.
    async fn release(&self, claim: &Claim) -> Result<()>;

    /// Jobs queued or running (in a fleet: in the whole fleet).
    async fn pending(&self) -> Result<usize>;

    /// Ids of jobs cancelled elsewhere (by another daemon of a fleet), as they come; None
    /// when every cancel comes through this process.
    fn watch_cancels(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        None
    }

    /// The daemon is stopping: jobs that only live in memory and were not taken yet are
    /// cancelled (nothing else changes).
    async fn stopping(&self) -> Result<()> {
        Ok(())
    }

    /// A short description for the log and `/health`: `memory`, `sqlite PATH`, `redis`.
    fn describe(&self) -> String;
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The failure of a job started `max_attempts` times, each time lost with its daemon.
pub fn worker_lost(attempts: u32) -> Failure {
    Failure {
        code: "worker_lost".into(),
        message: format!(
            "the daemon running this job stopped without a result {attempts} times (killed, or out of memory): it is \
             not run again"
        ),
    }
}

/// A new job's record.
fn fresh(job: &NewJob) -> Job {
    Job {
        id: job.id.clone(),
        owner: job.owner.clone(),
        status: State::Queued,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        runs: 0,
        result: None,
        error: None,
        callback: job.callback.clone(),
    }
}

/// Ends `job` as `outcome` says, now.
fn apply(job: &mut Job, outcome: Outcome) {
    match outcome {
        Outcome::Done(v) => {
            job.status = State::Done;
            job.result = Some(v);
        }
        Outcome::Failed(f) => {
            job.status = State::Failed;
            job.error = Some(f);
        }
    }
    job.finished_at = Some(now_ms());
}

/// Cancels `job`, now: its callback is not sent.
fn cancel_now(job: &mut Job, why: &str) {
    job.status = State::Cancelled;
    job.error = Some(Failure { code: "cancelled".into(), message: why.to_owned() });
    job.finished_at = Some(now_ms());
    if let Some(c) = &mut job.callback {
        c.state = CallbackState::Failed;
        c.last_error = Some("not sent: the job was cancelled".into());
    }
}

/// Whether the job has a callback still to deliver.
fn callback_due(job: &Job) -> bool {
    matches!(job.status, State::Done | State::Failed) && job.callback.as_ref().is_some_and(|c| !c.state.over())
}
