//! Async jobs in the API (`POST /v1/jobs`, `GET` and `DELETE /v1/jobs/{id}`): the job as
//! the wire shows it, who may see it, and the claims this daemon holds. The jobs
//! themselves are in a [`JobStore`] (memory, the SQLite journal, or a fleet's Redis: see
//! `crate::job`); `jobs/worker.rs` takes them from it as run slots free up, runs them,
//! records the outcome, delivers callbacks and hands claims back when the daemon stops.
//!
//! A finished job holds nothing here: a run's cancel token (an eventfd) lives only while
//! the run does, in the claim this daemon holds for it.

mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub(super) use worker::start;

use crate::config::{JobStoreSettings, Settings};
use crate::job::{self, Bounds, Claim, FleetConfig, FleetStore, Job, JobStore, LocalStore, State, StoreError};
use crate::run::Cancel;

/// What `GET /v1/jobs/{id}` answers.
#[derive(Debug, Clone, Serialize)]
pub(super) struct JobView {
    pub(super) id: String,
    pub(super) status: State,
    pub(super) status_url: String,
    /// Unix milliseconds.
    pub(super) created_at: u64,
    pub(super) started_at: Option<u64>,
    pub(super) finished_at: Option<u64>,
    /// How many times a run of it started: more than 1 only after a daemon died while it
    /// ran it.
    pub(super) runs: u32,
    /// The response `POST /v1/execute` would have given (state `done`).
    pub(super) result: Option<serde_json::Value>,
    /// Why it failed or was cancelled.
    pub(super) error: Option<ErrorView>,
    pub(super) callback: Option<CallbackView>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ErrorView {
    pub(super) code: String,
    pub(super) message: String,
}

/// A callback's delivery, as far as it went.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CallbackView {
    /// The host it goes to (the path and query are not repeated: they may hold tokens).
    pub(super) host: String,
    /// `pending`, `delivering`, `delivered`, `failed` (every attempt failed or was refused).
    pub(super) state: job::CallbackState,
    pub(super) attempts: u32,
    pub(super) last_status: Option<u16>,
    pub(super) last_error: Option<String>,
}

impl JobView {
    pub(super) fn of(job: Job) -> JobView {
        JobView {
            status_url: format!("/v1/jobs/{}", job.id),
            id: job.id,
            status: job.status,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            runs: job.runs,
            result: job.result,
            error: job.error.map(|e| ErrorView { code: e.code, message: e.message }),
            callback: job.callback.map(|c| CallbackView {
                host: c.host,
                state: c.state,
                attempts: c.attempts,
                last_status: c.last_status,
                last_error: c.last_error,
            }),
        }
    }
}

/// Opens the store the settings name (the journal is read back now; Redis is connected).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn JobStore>, StoreError> {
    let bounds = Bounds {
        retention: settings.job_retention,
        max_pending: settings.max_pending_jobs,
        max_finished: settings.max_finished_jobs,
        max_bytes: settings.max_job_bytes,
        max_attempts: settings.max_job_attempts,
    };
    Ok(match &settings.job_store {
        JobStoreSettings::Memory => Arc::new(LocalStore::memory(bounds)),
        JobStoreSettings::Disk { dir, fsync } => Arc::new(LocalStore::open(dir, *fsync, bounds)?),
        JobStoreSettings::Fleet { url, consumer, prefix, lease } => {
            let config = FleetConfig {
                url: url.clone(),
                consumer: consumer.clone(),
                prefix: prefix.clone(),
                lease: *lease,
                block: Duration::from_secs(1),
            };
            Arc::new(FleetStore::open(config, bounds).await?)
        }
    })
}

/// The owner of a key's jobs: a fingerprint of the key (so neither the key nor its place
/// in the list is stored, and every daemon of a fleet with the same keys agrees).
pub(super) fn fingerprint(key: &str) -> String {
    hex::encode(Sha256::new().chain_update(b"codeexec job owner\0").chain_update(key.as_bytes()).finalize())
}

/// Where a claim this daemon holds is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taken, waiting for a run slot.
    Waiting,
    /// Its run is in progress.
    Running,
    /// Its callback is being delivered.
    Calling,
}

#[derive(Debug)]
struct Held {
    claim: Claim,
    phase: Phase,
    /// The run's token, while it runs.
    cancel: Option<Cancel>,
    /// Another daemon took the claim over: this one writes nothing.
    lost: bool,
    /// The daemon is stopping: the claim goes back to the store.
    handed_back: bool,
}

/// The async jobs: the store, and the claims this daemon holds.
pub(super) struct Jobs {
    pub(super) store: Arc<dyn JobStore>,
    held: Mutex<HashMap<String, Held>>,
    /// Set when the daemon stops taking jobs.
    stop: watch::Sender<bool>,
    /// The fleet's lease (claims renewed every third of it); None for a local store.
    lease: Option<Duration>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Jobs {
    pub(super) fn new(store: Arc<dyn JobStore>, lease: Option<Duration>) -> Jobs {
        Jobs { store, held: Mutex::default(), stop: watch::channel(false).0, lease }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, claim: &Claim) {
        let held = Held { claim: claim.clone(), phase: Phase::Waiting, cancel: None, lost: false, handed_back: false };
        self.lock().insert(claim.id.clone(), held);
    }

    /// The run starts: its token is kept until it ends. False if the claim was lost or
    /// handed back meanwhile.
    fn running(&self, id: &str, cancel: &Cancel) -> bool {
        let mut held = self.lock();
        let Some(h) = held.get_mut(id) else { return false };
        h.phase = Phase::Running;
        h.cancel = Some(cancel.clone());
        !h.lost && !h.handed_back
    }

    /// The run ended (its token dropped); returns (lost, handed back).
    fn ran(&self, id: &str) -> (bool, bool) {
        let mut held = self.lock();
        let Some(h) = held.get_mut(id) else { return (true, false) };
        h.cancel = None;
        h.phase = Phase::Calling;
        (h.lost, h.handed_back)
    }

    fn calling(&self, id: &str) {
        if let Some(h) = self.lock().get_mut(id) {
            h.phase = Phase::Calling;
        }
    }

    /// Done with a claim (closed, released, finished, or lost).
    fn unhold(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Kills the run of job `id` if this daemon runs it.
    pub(super) fn kill(&self, id: &str) {
        if let Some(c) = self.lock().get(id).and_then(|h| h.cancel.as_ref()) {
            c.cancel();
        }
    }

    /// The claims held, for a heartbeat.
    fn claims(&self) -> Vec<Claim> {
        self.lock().values().map(|h| h.claim.clone()).collect()
    }

    /// Another daemon took the claim over: its run is killed and writes nothing.
    fn lose(&self, id: &str) {
        if let Some(h) = self.lock().get_mut(id) {
            h.lost = true;
            if let Some(c) = &h.cancel {
                c.cancel();
            }
        }
    }

    /// Stops taking jobs (a shutdown starts); jobs only in memory and not taken are
    /// cancelled.
    pub(super) async fn stop_taking(&self) {
        self.stop.send_replace(true);
        if let Err(e) = self.store.stopping().await {
            tracing::warn!(error = %crate::error_chain(&e), "the job store could not be told of the shutdown");
        }
    }

    /// Whether the daemon has stopped taking jobs (a shutdown began).
    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The grace period is over: every run of a job is killed and its claim handed back.
    pub(super) fn hand_back_all(&self) {
        self.stop.send_replace(true);
        for h in self.lock().values_mut() {
            h.handed_back = true;
            if let Some(c) = &h.cancel {
                c.cancel();
            }
        }
    }

    /// Claims waiting for a slot or running here (callbacks in delivery do not count: one
    /// cut short by a shutdown is delivered again, after a restart or by another daemon).
    pub(super) fn busy(&self) -> usize {
        self.lock().values().filter(|h| h.phase != Phase::Calling).count()
    }

    /// Claims held here.
    pub(super) fn held(&self) -> usize {
        self.lock().len()
    }
}
