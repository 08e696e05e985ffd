//! The jobs' routes: submit (checked like an execute, then queued), the job's life on its
//! own task (slot, run, result, callback), ask and cancel.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, StatusCode};

use super::super::error::{ApiError, from_json};
use super::super::jobs;
use super::super::plan::{Planned, plan};
use super::super::types::ExecuteRequest;
use super::super::{Api, json};
use super::{Caller, Resp, RunLog, perform, read_json_body};
use crate::callback;

/// `POST /v1/jobs`: checked like `POST /v1/execute` (and its callback URL), then queued.
pub(super) async fn submit(
    api: &Arc<Api>,
    req: Request<Incoming>,
    caller: Caller,
    log: &mut RunLog,
) -> Result<Resp, ApiError> {
    // the place bounds the bodies read at once; the job then waits in the jobs' own queue
    let ticket = api.limiter.admit()?;
    let body = read_json_body(api, req).await?;
    let mut dto: ExecuteRequest = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    let callback_url = dto.callback_url.take();
    let planned = plan(api, dto, caller)?;
    log.language = Some(planned.lang.id.clone());
    let target = match callback_url {
        Some(url) => Some(
            callback::check(&url, &api.policy.callbacks)
                .await
                .map_err(|e| ApiError::Invalid(format!("callback_url: {e}")))?,
        ),
        None => None,
    };
    let accepted = api.jobs.accept(target.as_ref(), body.len(), owner(caller))?;
    drop(ticket);
    let view = api.jobs.get(&accepted.id, None).ok_or_else(|| ApiError::Internal("a job vanished".into()))?;
    tokio::spawn(run_job(Arc::clone(api), accepted, planned, target));
    let mut resp = json(StatusCode::ACCEPTED, &view);
    if let Ok(v) = HeaderValue::from_str(&view.status_url) {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
}

/// A job's life: wait for a slot (or a cancel), run, keep the result, call back.
async fn run_job(api: Arc<Api>, job: jobs::Accepted, planned: Planned, target: Option<callback::Target>) {
    let mut cancelled = job.cancelled;
    let slot = tokio::select! {
        s = api.limiter.job_slot() => s,
        _ = cancelled.wait_for(|c| *c) => return,
    };
    let outcome = match slot {
        Ok(slot) if api.jobs.start(&job.id) => {
            perform(&api, planned, slot, job.cancel, &job.id).await.map(|(body, status, took)| {
                tracing::info!(job = %job.id, status, run_ms = took.as_secs_f64() * 1000.0, "job done");
                body
            })
        }
        // cancelled between getting the slot and starting
        Ok(_) => return,
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        tracing::warn!(job = %job.id, error = %e.message(), "job failed");
    }
    let Some(mut view) = api.jobs.finish(&job.id, outcome) else { return };
    let Some(target) = target.filter(|_| view.status != jobs::State::Cancelled) else { return };
    api.jobs.callback_state(&job.id, "delivering", None);
    let policy = &api.policy.callbacks;
    let mut body = serde_json::to_vec(&view).unwrap_or_default();
    if body.len() > policy.max_body {
        // too large to send: the receiver fetches it from status_url
        view.result = None;
        view.error = Some(jobs::ErrorView {
            code: "result_too_large",
            message: format!("the result is over {} bytes: GET {}", policy.max_body, view.status_url),
        });
        body = serde_json::to_vec(&view).unwrap_or_default();
    }
    let d = callback::deliver(&target, &job.id, Bytes::from(body), policy).await;
    let delivered = d.outcome == callback::Outcome::Delivered;
    tracing::info!(job = %job.id, host = %target.authority(), delivered, attempts = d.attempts, "job callback");
    api.jobs.callback_state(&job.id, if delivered { "delivered" } else { "failed" }, Some(&d));
}

/// Whose job it is: a key's jobs are its own; local callers see every job.
fn owner(caller: Caller) -> Option<usize> {
    match caller {
        Caller::Local => None,
        Caller::Key(i) => Some(i),
    }
}

/// `GET /v1/jobs/{id}`: a job another key submitted is not found.
pub(super) fn get(api: &Api, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    let view = api.jobs.get(id, owner(caller)).ok_or_else(|| unknown_job(api, id))?;
    Ok(json(StatusCode::OK, &view))
}

/// `DELETE /v1/jobs/{id}`.
pub(super) fn cancel(api: &Api, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    let view = api.jobs.cancel(id, "cancelled by DELETE", owner(caller))?.ok_or_else(|| unknown_job(api, id))?;
    Ok(json(StatusCode::OK, &view))
}

fn unknown_job(api: &Api, id: &str) -> ApiError {
    ApiError::NoSuchJob(format!(
        "no job {id:?}: finished jobs are kept {} s, and a restart of the daemon forgets every job",
        api.policy.job_retention.as_secs()
    ))
}
