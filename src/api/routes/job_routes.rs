//! The jobs' routes: submit (checked like an execute, then written to the job store before
//! `202`), ask and cancel. The jobs run in the worker (`api/jobs/worker.rs`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, StatusCode};

use super::super::error::{ApiError, from_json};
use super::super::jobs::{JobView, fingerprint};
use super::super::plan::plan;
use super::super::types::ExecuteRequest;
use super::super::{Api, json};
use super::{Caller, Resp, RunLog, read_json_body};
use crate::callback;
use crate::job::{self, Cancelled, NewJob, Submitted};

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /v1/jobs`: checked like `POST /v1/execute` (and its callback URL), then queued.
pub(super) async fn submit(
    api: &Arc<Api>,
    req: Request<Incoming>,
    caller: Caller,
    log: &mut RunLog,
) -> Result<Resp, ApiError> {
    let idempotency_key = idempotency_key(&req)?;
    // the place once the body is in; the job then waits in the jobs' own queue
    let (body, _held) = read_json_body(api, req).await?;
    let ticket = api.limiter.admit()?;
    let mut dto: ExecuteRequest = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    let callback_url = dto.callback_url.take();
    // checked now (a 422 is the client's to see); planned again when it runs
    let planned = plan(api, dto, caller)?;
    log.language = Some(planned.lang.id.clone());
    drop(planned);
    let callback = match callback_url {
        Some(url) => Some(checked_callback(api, url).await?),
        None => None,
    };
    let new = NewJob {
        id: uuid::Uuid::new_v4().simple().to_string(),
        owner: owner(api, caller),
        request: body.to_vec(),
        callback,
        idempotency_key,
    };
    let submitted = api.jobs.store.submit(new).await?;
    drop(ticket);
    let (status, job, replayed) = match submitted {
        Submitted::Accepted(j) => (StatusCode::ACCEPTED, j, false),
        Submitted::Existing(j) => (StatusCode::OK, j, true),
    };
    let view = JobView::of(job);
    let mut resp = json(status, &view);
    if let Ok(v) = HeaderValue::from_str(&view.status_url) {
        resp.headers_mut().insert(LOCATION, v);
    }
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// A callback URL checked against the policy (a refusal is the client's: 422), as the job
/// keeps it.
pub(in crate::api) async fn checked_callback(api: &Api, url: String) -> Result<job::Callback, ApiError> {
    let target = callback::check(&url, &api.policy.callbacks)
        .await
        .map_err(|e| ApiError::Invalid(format!("callback_url: {e}")))?;
    Ok(job::Callback {
        url,
        host: target.authority().to_owned(),
        state: job::CallbackState::Pending,
        attempts: 0,
        last_status: None,
        last_error: None,
    })
}

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::Invalid(format!(
            "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters, no spaces"
        ))),
    }
}

/// Whose job it is: a key's jobs are its own (by the key's fingerprint); local callers
/// see every job.
pub(in crate::api) fn owner(api: &Api, caller: Caller) -> Option<String> {
    match caller {
        Caller::Local => None,
        Caller::Key(i) => api.policy.api_keys.get(i).map(|k| fingerprint(k)),
    }
}

/// The job, if it exists and the caller may see it (a job another key submitted is not
/// found).
pub(in crate::api) async fn visible(api: &Api, id: &str, caller: Caller) -> Result<job::Job, ApiError> {
    let job = api.jobs.store.get(id).await?.ok_or_else(|| unknown_job(api, id))?;
    match owner(api, caller) {
        Some(o) if job.owner.as_deref() != Some(o.as_str()) => Err(unknown_job(api, id)),
        _ => Ok(job),
    }
}

/// `GET /v1/jobs/{id}`.
pub(super) async fn get(api: &Api, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    let job = visible(api, id, caller).await?;
    Ok(json(StatusCode::OK, &JobView::of(job)))
}

/// `DELETE /v1/jobs/{id}`: the job's run is killed on whichever daemon runs it.
pub(super) async fn cancel(api: &Api, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    visible(api, id, caller).await?;
    match api.jobs.store.cancel(id, "cancelled by DELETE").await? {
        Cancelled::Now(job) => {
            api.jobs.kill(id);
            Ok(json(StatusCode::OK, &JobView::of(job)))
        }
        Cancelled::Ended(job) => {
            Err(ApiError::Conflict(format!("job {id} has already ended ({})", job.status.as_str())))
        }
        Cancelled::Unknown => Err(unknown_job(api, id)),
    }
}

fn unknown_job(api: &Api, id: &str) -> ApiError {
    ApiError::NoSuchJob(format!(
        "no job {id:?}: finished jobs are kept {} s{}",
        api.policy.job_retention.as_secs(),
        if api.jobs.store.describe() == "memory" { ", and a restart of the daemon forgets every job" } else { "" }
    ))
}
