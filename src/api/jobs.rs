//! Async jobs (`POST /v1/jobs`): a request accepted now and run when a slot is free, its
//! state asked for with `GET /v1/jobs/{id}`, cancelled with `DELETE`, its result POSTed to
//! a callback URL when it ends. Jobs live in memory: a restart forgets them (the README says
//! so); while the daemon runs, a job is only ever dropped by its retention time or by the
//! bound on finished jobs, oldest first, never while queued or running.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::error::ApiError;
use crate::callback::{self, Target};
use crate::run::Cancel;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum State {
    /// Waiting for a run slot.
    Queued,
    /// Running.
    Running,
    /// Ended with a result (whatever the program did).
    Done,
    /// Ended without one: the request could not be run (`error` says why).
    Failed,
    /// Cancelled by `DELETE` (or by the daemon stopping).
    Cancelled,
}

impl State {
    fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

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
    /// The response `POST /v1/execute` would have given (state `done`).
    pub(super) result: Option<serde_json::Value>,
    /// Why it failed or was cancelled.
    pub(super) error: Option<ErrorView>,
    pub(super) callback: Option<CallbackView>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ErrorView {
    pub(super) code: &'static str,
    pub(super) message: String,
}

/// A callback's delivery, as far as it went.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CallbackView {
    /// The host it goes to (the path and query are not repeated: they may hold tokens).
    pub(super) host: String,
    /// `pending`, `delivering`, `delivered`, `failed` (every attempt failed or was refused).
    pub(super) state: &'static str,
    pub(super) attempts: u32,
    pub(super) last_status: Option<u16>,
    pub(super) last_error: Option<String>,
}

struct Job {
    view: JobView,
    /// The API key that submitted it (None: a local caller).
    owner: Option<usize>,
    /// Bytes held for it: its request while pending, its result once finished.
    bytes: usize,
    cancel: Cancel,
    /// Tells a queued job's task to give up waiting.
    cancelled: watch::Sender<bool>,
    finished: Option<Instant>,
}

/// The jobs the daemon knows.
pub(super) struct Jobs {
    inner: Mutex<Inner>,
    retention: Duration,
    max_pending: usize,
    max_finished: usize,
    /// The most bytes of requests and results held at once.
    max_bytes: usize,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("max_pending", &self.max_pending).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    /// Finished jobs, oldest first.
    finished: VecDeque<String>,
    pending: usize,
    /// Bytes held by every job.
    bytes: usize,
}

/// A newly accepted job, for its task.
pub(super) struct Accepted {
    pub(super) id: String,
    pub(super) cancel: Cancel,
    pub(super) cancelled: watch::Receiver<bool>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Jobs {
    pub(super) fn new(retention: Duration, max_pending: usize, max_finished: usize, max_bytes: usize) -> Self {
        Jobs { inner: Mutex::new(Inner::default()), retention, max_pending, max_finished, max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts a job whose request is `bytes` long (queued), or `Busy` when `max_pending`
    /// jobs are queued or running, or their requests and the results kept would be over the
    /// memory bound even with every finished job forgotten.
    pub(super) fn accept(
        &self,
        callback: Option<&Target>,
        bytes: usize,
        owner: Option<usize>,
    ) -> Result<Accepted, ApiError> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        if inner.pending >= self.max_pending {
            return Err(ApiError::Busy);
        }
        while inner.bytes + bytes > self.max_bytes {
            if !forget_oldest(&mut inner) {
                return Err(ApiError::Busy);
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let cancel = Cancel::new().map_err(|e| ApiError::Internal(e.to_string()))?;
        let (tx, rx) = watch::channel(false);
        let view = JobView {
            id: id.clone(),
            status: State::Queued,
            status_url: format!("/v1/jobs/{id}"),
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            callback: callback.map(|t| CallbackView {
                host: t.authority().to_owned(),
                state: "pending",
                attempts: 0,
                last_status: None,
                last_error: None,
            }),
        };
        inner.pending += 1;
        inner.bytes += bytes;
        inner
            .jobs
            .insert(id.clone(), Job { view, owner, bytes, cancel: cancel.clone(), cancelled: tx, finished: None });
        Ok(Accepted { id, cancel, cancelled: rx })
    }

    /// The job's state, if it is known and `viewer` may see it (None: any job; a key: the
    /// jobs it submitted).
    pub(super) fn get(&self, id: &str, viewer: Option<usize>) -> Option<JobView> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        inner.jobs.get(id).filter(|j| visible(j, viewer)).map(|j| j.view.clone())
    }

    /// Marks a queued job running; false if it was cancelled meanwhile.
    pub(super) fn start(&self, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.jobs.get_mut(id) {
            Some(j) if j.view.status == State::Queued => {
                j.view.status = State::Running;
                j.view.started_at = Some(now_ms());
                true
            }
            _ => false,
        }
    }

    /// Ends a job with a result or an error (a cancelled job stays cancelled); returns its
    /// final view.
    pub(super) fn finish(&self, id: &str, outcome: Result<serde_json::Value, ApiError>) -> Option<JobView> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let job = inner.jobs.get_mut(id)?;
        // the request is done with: what is held now is the result, if it is kept
        let kept = match (&outcome, job.view.status.finished()) {
            (Ok(v), false) => serde_json::to_vec(v).map_or(0, |b| b.len()),
            _ => 0,
        };
        inner.bytes = inner.bytes - job.bytes + kept;
        job.bytes = kept;
        if !job.view.status.finished() {
            match outcome {
                Ok(v) => {
                    job.view.status = State::Done;
                    job.view.result = Some(v);
                }
                Err(e) => {
                    job.view.status = State::Failed;
                    job.view.error = Some(ErrorView { code: e.code(), message: e.message() });
                }
            }
            mark_finished(inner, id);
        }
        let view = inner.jobs.get(id).map(|j| j.view.clone());
        self.bound(inner);
        view
    }

    /// Cancels a queued or running job (its run is killed). `Ok(None)`: no such job;
    /// `Err`: it had already ended.
    pub(super) fn cancel(&self, id: &str, why: &str, viewer: Option<usize>) -> Result<Option<JobView>, ApiError> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        let Some(job) = inner.jobs.get_mut(id).filter(|j| visible(j, viewer)) else { return Ok(None) };
        if job.view.status.finished() {
            let state = serde_json::to_value(job.view.status).unwrap_or_default();
            return Err(ApiError::Conflict(format!("job {id} has already ended ({})", state.as_str().unwrap_or("?"))));
        }
        job.cancel.cancel();
        let _ = job.cancelled.send(true);
        job.view.status = State::Cancelled;
        job.view.error = Some(ErrorView { code: "cancelled", message: why.to_owned() });
        if let Some(c) = &mut job.view.callback {
            c.state = "failed";
            c.last_error = Some("not sent: the job was cancelled".into());
        }
        mark_finished(&mut inner, id);
        let view = inner.jobs.get(id).map(|j| j.view.clone());
        self.bound(&mut inner);
        Ok(view)
    }

    /// Cancels every job not ended yet (the daemon is stopping), or only the queued ones.
    pub(super) fn cancel_all(&self, queued_only: bool) {
        let ids: Vec<String> = self
            .lock()
            .jobs
            .iter()
            .filter(|(_, j)| if queued_only { j.view.status == State::Queued } else { !j.view.status.finished() })
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            let _ = self.cancel(&id, "the daemon is stopping", None);
        }
    }

    /// Records a callback's progress.
    pub(super) fn callback_state(&self, id: &str, state: &'static str, d: Option<&callback::Delivery>) {
        let mut inner = self.lock();
        if let Some(c) = inner.jobs.get_mut(id).and_then(|j| j.view.callback.as_mut()) {
            c.state = state;
            if let Some(d) = d {
                c.attempts = d.attempts;
                c.last_status = d.status;
                c.last_error.clone_from(&d.error);
            }
        }
    }

    /// Jobs queued or running.
    pub(super) fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Forgets finished jobs older than the retention time.
    fn expire(&self, inner: &mut Inner) {
        while let Some(id) = inner.finished.front().cloned() {
            let old = inner.jobs.get(&id).and_then(|j| j.finished).is_none_or(|t| t.elapsed() >= self.retention);
            if !old {
                break;
            }
            forget_oldest(inner);
        }
    }

    /// Forgets the oldest finished jobs beyond the bound.
    fn bound(&self, inner: &mut Inner) {
        while inner.finished.len() > self.max_finished || inner.bytes > self.max_bytes {
            if !forget_oldest(inner) {
                break;
            }
        }
    }
}

/// Whether `viewer` may see the job: local callers see all, a key its own.
fn visible(job: &Job, viewer: Option<usize>) -> bool {
    viewer.is_none() || job.owner == viewer
}

/// Forgets the oldest finished job; false when there is none.
fn forget_oldest(inner: &mut Inner) -> bool {
    let Some(id) = inner.finished.pop_front() else { return false };
    if let Some(j) = inner.jobs.remove(&id) {
        inner.bytes -= j.bytes;
    }
    true
}

fn mark_finished(inner: &mut Inner, id: &str) {
    if let Some(j) = inner.jobs.get_mut(id) {
        j.view.finished_at = Some(now_ms());
        j.finished = Some(Instant::now());
    }
    inner.pending = inner.pending.saturating_sub(1);
    inner.finished.push_back(id.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_goes_from_queued_to_done_and_is_forgotten_after_its_retention() {
        let jobs = Jobs::new(Duration::from_millis(50), 2, 10, 1 << 20);
        let a = jobs.accept(None, 10, None).unwrap();
        assert_eq!(jobs.get(&a.id, None).unwrap().status, State::Queued);
        assert!(jobs.start(&a.id));
        assert_eq!(jobs.get(&a.id, None).unwrap().status, State::Running);
        let v = jobs.finish(&a.id, Ok(serde_json::json!({"status": "ok"}))).unwrap();
        assert_eq!(v.status, State::Done);
        assert_eq!(v.result.unwrap()["status"], "ok");
        assert!(v.finished_at.unwrap() >= v.created_at);
        assert_eq!(jobs.pending(), 0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(jobs.get(&a.id, None).is_none(), "gone after its retention");
    }

    #[test]
    fn pending_jobs_are_bounded_and_finished_ones_too() {
        let jobs = Jobs::new(Duration::from_secs(3600), 2, 1, 1 << 20);
        let a = jobs.accept(None, 10, None).unwrap();
        let _b = jobs.accept(None, 10, None).unwrap();
        assert_eq!(jobs.accept(None, 10, None).err(), Some(ApiError::Busy));
        jobs.finish(&a.id, Err(ApiError::Internal("x".into()))).unwrap();
        let c = jobs.accept(None, 10, None).unwrap();
        assert_eq!(jobs.get(&a.id, None).unwrap().status, State::Failed);
        jobs.cancel(&c.id, "asked", None).unwrap().unwrap();
        assert!(jobs.get(&a.id, None).is_none(), "the oldest finished job went beyond the bound");
    }

    #[test]
    fn a_key_sees_only_its_own_jobs() {
        let jobs = Jobs::new(Duration::from_secs(3600), 5, 5, 1 << 20);
        let a = jobs.accept(None, 10, Some(0)).unwrap();
        assert!(jobs.get(&a.id, Some(0)).is_some());
        assert!(jobs.get(&a.id, None).is_some(), "the local operator sees every job");
        assert!(jobs.get(&a.id, Some(1)).is_none(), "another key does not");
        assert!(jobs.cancel(&a.id, "x", Some(1)).unwrap().is_none());
        assert_eq!(jobs.cancel(&a.id, "x", Some(0)).unwrap().unwrap().status, State::Cancelled);
    }

    #[test]
    fn requests_and_results_held_are_bounded_in_bytes() {
        let jobs = Jobs::new(Duration::from_secs(3600), 10, 10, 1000);
        let a = jobs.accept(None, 600, None).unwrap();
        assert_eq!(jobs.accept(None, 600, None).err(), Some(ApiError::Busy), "two requests would be over");
        let big = serde_json::json!({"out": "x".repeat(700)});
        jobs.finish(&a.id, Ok(big)).unwrap();
        // the result replaced the request; a new request needs its room, so the result goes
        let b = jobs.accept(None, 600, None).unwrap();
        assert!(jobs.get(&a.id, None).is_none(), "the oldest result was forgotten to make room");
        jobs.finish(&b.id, Err(ApiError::Internal("x".into()))).unwrap();
        assert_eq!(jobs.lock().bytes, 0, "a failed job holds nothing");
    }

    #[test]
    fn cancelling_tells_the_task_and_an_ended_job_cannot_be_cancelled() {
        let jobs = Jobs::new(Duration::from_secs(3600), 5, 5, 1 << 20);
        let a = jobs.accept(None, 10, None).unwrap();
        let v = jobs.cancel(&a.id, "asked", None).unwrap().unwrap();
        assert_eq!(v.status, State::Cancelled);
        assert!(*a.cancelled.borrow(), "a queued task stops waiting");
        assert!(!jobs.start(&a.id), "a cancelled job never starts");
        let v = jobs.finish(&a.id, Ok(serde_json::json!(1))).unwrap();
        assert_eq!(v.status, State::Cancelled, "a late result does not undo the cancel");
        assert!(matches!(jobs.cancel(&a.id, "again", None), Err(ApiError::Conflict(_))));
        assert!(jobs.cancel("nope", "x", None).unwrap().is_none());
        assert_eq!(jobs.pending(), 0);
    }
}
