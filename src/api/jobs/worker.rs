//! The job worker of a daemon: one loop takes jobs from the store when a run slot is free
//! (waiting at most a second for one, then taking one job to wait in line with requests,
//! so jobs never starve), and each job taken gets a task: slot, start, run, result,
//! callback. In a fleet two more tasks renew the claims every third of a lease (a claim
//! lost to another daemon has its run killed and writes nothing; a cancelled one is
//! killed) and kill the runs of jobs cancelled on other daemons.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::super::Api;
use super::super::error::ApiError;
use super::super::limiter::Permit;
use super::super::plan::plan;
use super::super::routes::{Caller, perform};
use super::super::types::ExecuteRequest;
use super::{JobView, fingerprint};
use crate::callback;
use crate::job::{CallbackState, Claim, Failure, Job, Lease, Outcome, Started};
use crate::run::Cancel;

/// The longest a `take` waits for a job before looking at the stop flag again.
const TAKE_WAIT: Duration = Duration::from_secs(1);
/// How long the loop waits for a free run slot before it takes a job to wait in line.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Starts the worker's tasks (call once, inside the runtime).
pub(in crate::api) fn start(api: &Arc<Api>) {
    tokio::spawn(dispatch(Arc::clone(api)));
    if let Some(lease) = api.jobs.lease {
        tokio::spawn(renew(Arc::downgrade(api), lease / 3));
    }
    if let Some(mut cancels) = api.jobs.store.watch_cancels() {
        let api = Arc::downgrade(api);
        tokio::spawn(async move {
            while let Some(id) = cancels.recv().await {
                let Some(api) = api.upgrade() else { return };
                api.jobs.kill(&id);
            }
        });
    }
}

/// Takes jobs until the daemon stops taking them.
async fn dispatch(api: Arc<Api>) {
    let mut stop = api.jobs.stop.subscribe();
    let mut failing = false;
    while !*stop.borrow() {
        let free = api.limiter.until_free(SLOT_WAIT).await;
        if *stop.borrow() {
            break;
        }
        let claims = match api.jobs.store.take(free.max(1), TAKE_WAIT).await {
            Ok(c) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("the job store answers again");
                }
                c
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %crate::error_chain(&e), "no job can be taken from the store; trying again");
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), stop.wait_for(|s| *s)).await;
                continue;
            }
        };
        for claim in claims {
            api.jobs.hold(&claim);
            let slot = if *stop.borrow() {
                None
            } else {
                tokio::select! {
                    s = api.limiter.job_slot() => s.ok(),
                    _ = stop.wait_for(|s| *s) => None,
                }
            };
            match slot {
                Some(slot) => drop(tokio::spawn(run_claim(Arc::clone(&api), claim, slot))),
                None => give_back(&api, &claim).await,
            }
        }
    }
}

/// Hands a claim back to the store and forgets it.
async fn give_back(api: &Api, claim: &Claim) {
    if let Err(e) = api.jobs.store.release(claim).await {
        tracing::warn!(job = %claim.id, error = %crate::error_chain(&e), "a job could not be handed back; it is taken again after a lease");
    }
    api.jobs.unhold(&claim.id);
}

/// One claim: start it, then run it or deliver its callback.
async fn run_claim(api: Arc<Api>, claim: Claim, slot: Permit) {
    let started = match api.jobs.store.start(&claim).await {
        Ok(s) => s,
        Err(e) => {
            // not renewed from now on: it is taken again after a lease
            tracing::warn!(job = %claim.id, error = %crate::error_chain(&e), "a job could not be started");
            api.jobs.unhold(&claim.id);
            return;
        }
    };
    match started {
        Started::Skip => api.jobs.unhold(&claim.id),
        Started::Callback(job) => {
            drop(slot);
            call_back(&api, &claim, job).await;
        }
        Started::Run(job, request) => run_job(&api, &claim, job, &request, slot).await,
    }
}

async fn run_job(api: &Api, claim: &Claim, job: Job, request: &[u8], slot: Permit) {
    let cancel = match Cancel::new() {
        Ok(c) => c,
        Err(e) => {
            let failed = Failure { code: "internal_error".into(), message: crate::error_chain(&e) };
            return finish(api, claim, Outcome::Failed(failed)).await;
        }
    };
    if !api.jobs.running(&claim.id, &cancel) {
        drop(slot);
        return give_back(api, claim).await;
    }
    tracing::info!(job = %job.id, runs = job.runs, "job started");
    let outcome = execute(api, &job, request, slot, cancel).await;
    match api.jobs.ran(&claim.id) {
        (true, _) => {
            tracing::warn!(job = %job.id, "another daemon took this job over; its result here is not written");
            api.jobs.unhold(&claim.id);
        }
        (false, true) => {
            tracing::info!(job = %job.id, "the daemon is stopping: the job is handed back");
            give_back(api, claim).await;
        }
        (false, false) => finish(api, claim, outcome).await,
    }
}

/// Checks the stored request again (the languages, keys and limits of this daemon) and
/// runs it.
async fn execute(api: &Api, job: &Job, request: &[u8], slot: Permit, cancel: Cancel) -> Outcome {
    let failed = |e: &ApiError| Outcome::Failed(Failure { code: e.code().into(), message: e.message() });
    // a dialect's job keeps what the dialect answers with beside the native request
    let (mut dto, dialect): (ExecuteRequest, _) = match super::super::dialect::stored(request) {
        Ok(d) => d,
        Err(e) => return failed(&ApiError::Invalid(format!("the stored request: {e}"))),
    };
    dto.callback_url = None;
    let caller = match &job.owner {
        None => Caller::Local,
        Some(owner) => match api.policy.api_keys.iter().position(|k| fingerprint(k) == *owner) {
            Some(i) => Caller::Key(i),
            None => {
                return failed(&ApiError::Forbidden("the API key that submitted this job is not configured".into()));
            }
        },
    };
    let planned = match plan(api, dto, caller) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    match perform(api, planned, slot, cancel, &job.id).await {
        Ok((mut body, status, took)) => {
            tracing::debug!(job = %job.id, status, run_ms = took.as_secs_f64() * 1000.0, "job run ended");
            if let (Some(meta), Some(map)) = (dialect, body.as_object_mut()) {
                map.insert("dialect".into(), meta);
            }
            Outcome::Done(body)
        }
        Err(e) => failed(&e),
    }
}

/// Records the outcome (retrying while the store cannot be reached, the claim renewed
/// meanwhile), then delivers the callback if there is one. "job done" (or "job failed")
/// is logged once the result is written.
async fn finish(api: &Api, claim: &Claim, outcome: Outcome) {
    let mut wait = Duration::from_millis(100);
    for attempt in 1..=12 {
        match api.jobs.store.finish(claim, outcome.clone()).await {
            Ok(Some(job)) => {
                match &job.error {
                    None => tracing::info!(job = %job.id, runs = job.runs, "job done"),
                    Some(e) => tracing::warn!(job = %job.id, code = %e.code, error = %e.message, "job failed"),
                }
                if job.callback.as_ref().is_some_and(|c| !c.state.over()) {
                    return call_back(api, claim, job).await;
                }
                break;
            }
            Ok(None) => {
                tracing::info!(job = %claim.id, "job ended already (cancelled, or another daemon's run was first)");
                break;
            }
            Err(e) => {
                tracing::warn!(job = %claim.id, attempt, error = %crate::error_chain(&e), "a job's result could not be written");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    api.jobs.unhold(&claim.id);
}

/// POSTs the job to its callback URL (see `crate::callback`) and records how it went.
async fn call_back(api: &Api, claim: &Claim, job: Job) {
    api.jobs.calling(&claim.id);
    let Some(mut cb) = job.callback.clone() else { return api.jobs.unhold(&claim.id) };
    match callback::Target::parse(&cb.url) {
        Ok(target) => {
            cb.state = CallbackState::Delivering;
            record(api, &claim.id, &cb).await;
            // a dialect's job calls back in the dialect's shape
            let (method, body) = match super::super::dialect::callback(&job) {
                Some(m) => m,
                None => (hyper::Method::POST, body(api, job)),
            };
            let d = callback::deliver_with(&target, &claim.id, method, body, &api.policy.callbacks).await;
            let delivered = d.outcome == callback::Outcome::Delivered;
            tracing::info!(job = %claim.id, host = %target.authority(), delivered, attempts = d.attempts, "job callback");
            cb.state = if delivered { CallbackState::Delivered } else { CallbackState::Failed };
            cb.attempts = d.attempts;
            cb.last_status = d.status;
            cb.last_error = d.error;
        }
        Err(e) => {
            cb.state = CallbackState::Failed;
            cb.last_error = Some(e.to_string());
        }
    }
    record(api, &claim.id, &cb).await;
    if let Err(e) = api.jobs.store.close(claim).await {
        tracing::warn!(job = %claim.id, error = %crate::error_chain(&e), "a job's claim could not be closed");
    }
    api.jobs.unhold(&claim.id);
}

async fn record(api: &Api, id: &str, cb: &crate::job::Callback) {
    if let Err(e) = api.jobs.store.callback_progress(id, cb).await {
        tracing::warn!(job = %id, error = %crate::error_chain(&e), "a callback's progress could not be written");
    }
}

/// The callback's body: the job as `GET` showed it when it ended; without its result when
/// that is over the callback size limit (the receiver fetches it from `status_url`).
fn body(api: &Api, job: Job) -> Bytes {
    let mut view = JobView::of(job);
    let max = api.policy.callbacks.max_body;
    let body = serde_json::to_vec(&view).unwrap_or_default();
    if body.len() <= max {
        return Bytes::from(body);
    }
    view.result = None;
    view.error = Some(super::ErrorView {
        code: "result_too_large".into(),
        message: format!("the result is over {max} bytes: GET {}", view.status_url),
    });
    Bytes::from(serde_json::to_vec(&view).unwrap_or_default())
}

/// Renews the claims this daemon holds, every `every`, while the API lives.
async fn renew(api: Weak<Api>, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let Some(api) = api.upgrade() else { return };
        let claims = api.jobs.claims();
        if claims.is_empty() {
            continue;
        }
        match api.jobs.store.heartbeat(&claims).await {
            Ok(leases) => {
                failing = false;
                for (claim, lease) in claims.iter().zip(leases) {
                    match lease {
                        Lease::Held => {}
                        Lease::Lost => {
                            tracing::warn!(job = %claim.id, "lost the claim on a job to another daemon");
                            api.jobs.lose(&claim.id);
                        }
                        Lease::Cancelled => api.jobs.kill(&claim.id),
                    }
                }
            }
            Err(e) if !std::mem::replace(&mut failing, true) => {
                tracing::warn!(error = %crate::error_chain(&e), "the jobs' claims could not be renewed");
            }
            Err(_) => {}
        }
    }
}
