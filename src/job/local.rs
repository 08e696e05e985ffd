//! One daemon's jobs: a table in memory (the queue in submission order, the finished jobs
//! oldest first, the bounds' counts), and optionally the [`Journal`] every change is
//! written to before it is answered. Opened on a journal, the table is rebuilt from it: a
//! queued job is queued again, one that was running when the daemon died runs again (or
//! fails with `worker_lost` once it has been started `max_attempts` times), a finished one
//! answers as before, and one whose callback was not delivered is delivered.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::journal::{Journal, Stored};
use super::{
    Bounds, Callback, CallbackState, Cancelled, Claim, Job, JobStore, Lease, NewJob, Outcome, Result, Started, State,
    StoreError, Submitted, apply, callback_due, cancel_now, fresh, now_ms, worker_lost,
};

/// A daemon's own jobs (see the module documentation).
#[derive(Debug, Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
    /// Wakes a waiting `take` when a job is queued.
    queued: Notify,
    /// With a journal, every change is a write: done on a blocking thread.
    journaled: bool,
    describe: String,
}

#[derive(Debug)]
struct Entry {
    stored: Stored,
    /// Bytes held: the request while pending, the result once done.
    bytes: usize,
}

#[derive(Debug)]
struct Table {
    bounds: Bounds,
    jobs: HashMap<String, Entry>,
    /// Queued jobs not taken yet, in order (a cancelled one is skipped when its turn comes).
    queue: VecDeque<String>,
    /// Finished jobs whose callback is still to deliver (after a restart).
    callbacks: VecDeque<String>,
    /// Finished jobs, oldest first.
    finished: VecDeque<String>,
    /// Owner and idempotency key → job.
    idem: HashMap<String, String>,
    pending: usize,
    bytes: usize,
    journal: Option<Journal>,
}

impl LocalStore {
    /// Jobs in memory only: a restart forgets them.
    pub fn memory(bounds: Bounds) -> LocalStore {
        LocalStore::with(Table::new(bounds, None), "memory".into())
    }

    /// Jobs in the journal in `dir` (see [`Journal::open`]), read back now.
    pub fn open(dir: &Path, fsync: bool, bounds: Bounds) -> Result<LocalStore> {
        let (journal, stored) = Journal::open(dir, fsync)?;
        let describe = format!("sqlite {}", journal.path().display());
        let mut table = Table::new(bounds, Some(journal));
        table.restore(stored)?;
        Ok(LocalStore::with(table, describe))
    }

    fn with(table: Table, describe: String) -> LocalStore {
        let journaled = table.journal.is_some();
        LocalStore { shared: Arc::new(Shared { table: Mutex::new(table), queued: Notify::new(), journaled, describe }) }
    }

    /// Runs `f` on the table: on a blocking thread when it writes to the journal.
    async fn on_table<T: Send + 'static>(&self, f: impl FnOnce(&mut Table) -> Result<T> + Send + 'static) -> Result<T> {
        if !self.shared.journaled {
            return f(&mut self.shared.lock());
        }
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || f(&mut shared.lock()))
            .await
            .map_err(|e| StoreError::Thread(e.to_string()))?
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl JobStore for LocalStore {
    async fn submit(&self, job: NewJob) -> Result<Submitted> {
        let submitted = self.on_table(move |t| t.submit(job)).await?;
        if matches!(submitted, Submitted::Accepted(_)) {
            self.shared.queued.notify_one();
        }
        Ok(submitted)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let mut t = self.shared.lock();
        // forgetting expired jobs writes to the journal: not here, on the async path
        if !self.shared.journaled {
            t.expire()?;
        }
        let cutoff = now_ms().saturating_sub(millis(t.bounds.retention));
        Ok(t.jobs.get(id).map(|e| &e.stored.job).filter(|j| j.finished_at.is_none_or(|f| f > cutoff)).cloned())
    }

    async fn cancel(&self, id: &str, why: &str) -> Result<Cancelled> {
        let (id, why) = (id.to_owned(), why.to_owned());
        self.on_table(move |t| t.cancel(&id, &why)).await
    }

    async fn take(&self, n: usize, wait: Duration) -> Result<Vec<Claim>> {
        let deadline = Instant::now() + wait;
        loop {
            // registered before looking, so a job queued in between wakes it
            let notified = self.shared.queued.notified();
            let taken = self.shared.lock().take(n.max(1));
            if !taken.is_empty() {
                return Ok(taken);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn start(&self, claim: &Claim) -> Result<Started> {
        let id = claim.id.clone();
        self.on_table(move |t| t.start(&id)).await
    }

    async fn heartbeat(&self, claims: &[Claim]) -> Result<Vec<Lease>> {
        let t = self.shared.lock();
        Ok(claims
            .iter()
            .map(|c| match t.jobs.get(&c.id).map(|e| e.stored.job.status) {
                Some(State::Cancelled) => Lease::Cancelled,
                _ => Lease::Held,
            })
            .collect())
    }

    async fn finish(&self, claim: &Claim, outcome: Outcome) -> Result<Option<Job>> {
        let id = claim.id.clone();
        self.on_table(move |t| t.finish(&id, outcome)).await
    }

    async fn callback_progress(&self, id: &str, callback: &Callback) -> Result<()> {
        let (id, callback) = (id.to_owned(), callback.clone());
        self.on_table(move |t| t.change(&id, |e| e.stored.job.callback = Some(callback))).await
    }

    async fn close(&self, _claim: &Claim) -> Result<()> {
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let id = claim.id.clone();
        self.on_table(move |t| t.release(&id)).await
    }

    async fn pending(&self) -> Result<usize> {
        Ok(self.shared.lock().pending)
    }

    async fn stopping(&self) -> Result<()> {
        self.on_table(|t| {
            if t.journal.is_none() {
                let queued: Vec<String> = t.queue.drain(..).collect();
                for id in queued {
                    t.cancel(&id, "the daemon is stopping")?;
                }
            }
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        self.shared.describe.clone()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn idem_key(owner: Option<&str>, key: &str) -> String {
    format!("{}\n{key}", owner.unwrap_or(""))
}

impl Table {
    fn new(bounds: Bounds, journal: Option<Journal>) -> Table {
        Table {
            bounds,
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            callbacks: VecDeque::new(),
            finished: VecDeque::new(),
            idem: HashMap::new(),
            pending: 0,
            bytes: 0,
            journal,
        }
    }

    fn write(&mut self, id: &str) -> Result<()> {
        if let (Some(journal), Some(e)) = (self.journal.as_mut(), self.jobs.get(id)) {
            journal.put(&e.stored)?;
        }
        Ok(())
    }

    fn submit(&mut self, new: NewJob) -> Result<Submitted> {
        self.expire()?;
        let idem = new.idempotency_key.as_deref().map(|k| idem_key(new.owner.as_deref(), k));
        if let Some(job) = idem.as_ref().and_then(|k| self.idem.get(k)).and_then(|id| self.jobs.get(id)) {
            return Ok(Submitted::Existing(job.stored.job.clone()));
        }
        if self.pending >= self.bounds.max_pending {
            return Err(StoreError::Busy(format!(
                "{} jobs are pending, the most [jobs] max_pending allows",
                self.pending
            )));
        }
        let bytes = new.request.len();
        while self.bytes + bytes > self.bounds.max_bytes {
            if !self.forget_oldest()? {
                return Err(StoreError::Busy("the jobs' requests and results fill [jobs] max_memory_mb".into()));
            }
        }
        let job = fresh(&new);
        let id = job.id.clone();
        let stored = Stored { job: job.clone(), request: Some(new.request), idem: idem.clone() };
        if let Some(journal) = self.journal.as_mut() {
            journal.put(&stored)?;
        }
        self.jobs.insert(id.clone(), Entry { stored, bytes });
        if let Some(k) = idem {
            self.idem.insert(k, id.clone());
        }
        self.queue.push_back(id);
        self.pending += 1;
        self.bytes += bytes;
        Ok(Submitted::Accepted(job))
    }

    /// Up to `n` claims: undelivered callbacks first, then queued jobs in order.
    fn take(&mut self, n: usize) -> Vec<Claim> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(id) = self.callbacks.pop_front().or_else(|| self.queue.pop_front()) else { break };
            if self.jobs.get(&id).is_some_and(|e| e.stored.job.status == State::Queued || callback_due(&e.stored.job)) {
                out.push(Claim { id, token: String::new() });
            }
        }
        out
    }

    fn start(&mut self, id: &str) -> Result<Started> {
        let Some(e) = self.jobs.get_mut(id) else { return Ok(Started::Skip) };
        let job = &mut e.stored.job;
        if callback_due(job) {
            return Ok(Started::Callback(job.clone()));
        }
        if job.status != State::Queued {
            return Ok(Started::Skip);
        }
        job.status = State::Running;
        job.started_at = Some(now_ms());
        job.runs += 1;
        let started = Started::Run(job.clone(), e.stored.request.clone().unwrap_or_default());
        self.write(id)?;
        Ok(started)
    }

    fn finish(&mut self, id: &str, outcome: Outcome) -> Result<Option<Job>> {
        let Some(e) = self.jobs.get_mut(id) else { return Ok(None) };
        if e.stored.job.status.finished() {
            return Ok(None);
        }
        let kept = match &outcome {
            Outcome::Done(v) => serde_json::to_vec(v).map_or(0, |b| b.len()),
            Outcome::Failed(_) => 0,
        };
        apply(&mut e.stored.job, outcome);
        e.stored.request = None;
        self.bytes = self.bytes - e.bytes + kept;
        e.bytes = kept;
        let job = e.stored.job.clone();
        self.pending = self.pending.saturating_sub(1);
        self.finished.push_back(id.to_owned());
        self.write(id)?;
        self.bound()?;
        Ok(Some(job))
    }

    fn cancel(&mut self, id: &str, why: &str) -> Result<Cancelled> {
        self.expire()?;
        let Some(e) = self.jobs.get_mut(id) else { return Ok(Cancelled::Unknown) };
        if e.stored.job.status.finished() {
            return Ok(Cancelled::Ended(e.stored.job.clone()));
        }
        cancel_now(&mut e.stored.job, why);
        e.stored.request = None;
        self.bytes -= e.bytes;
        e.bytes = 0;
        let job = e.stored.job.clone();
        self.pending = self.pending.saturating_sub(1);
        self.finished.push_back(id.to_owned());
        self.write(id)?;
        self.bound()?;
        Ok(Cancelled::Now(job))
    }

    /// A claim handed back: queued again at the front (not counted as a run), or in
    /// memory, where it would not outlive the daemon, cancelled.
    fn release(&mut self, id: &str) -> Result<()> {
        if self.journal.is_none() {
            return self.cancel(id, "the daemon is stopping").map(drop);
        }
        let Some(e) = self.jobs.get_mut(id) else { return Ok(()) };
        if e.stored.job.status == State::Running {
            e.stored.job.status = State::Queued;
            e.stored.job.runs = e.stored.job.runs.saturating_sub(1);
            e.stored.job.started_at = None;
        }
        if e.stored.job.status == State::Queued {
            self.queue.push_front(id.to_owned());
        }
        self.write(id)
    }

    fn change(&mut self, id: &str, f: impl FnOnce(&mut Entry)) -> Result<()> {
        let Some(e) = self.jobs.get_mut(id) else { return Ok(()) };
        f(e);
        self.write(id)
    }

    /// Forgets finished jobs older than the retention time.
    fn expire(&mut self) -> Result<()> {
        let cutoff = now_ms().saturating_sub(millis(self.bounds.retention));
        while let Some(id) = self.finished.front() {
            let old = self.jobs.get(id).and_then(|e| e.stored.job.finished_at).is_none_or(|t| t <= cutoff);
            if !old {
                break;
            }
            self.forget_oldest()?;
        }
        Ok(())
    }

    /// Forgets the oldest finished jobs beyond the bounds.
    fn bound(&mut self) -> Result<()> {
        while self.finished.len() > self.bounds.max_finished || self.bytes > self.bounds.max_bytes {
            if !self.forget_oldest()? {
                break;
            }
        }
        Ok(())
    }

    /// Forgets the oldest finished job; false when there is none.
    fn forget_oldest(&mut self) -> Result<bool> {
        let Some(id) = self.finished.pop_front() else { return Ok(false) };
        if let Some(e) = self.jobs.remove(&id) {
            self.bytes -= e.bytes;
            if let Some(k) = &e.stored.idem {
                self.idem.remove(k);
            }
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.delete(std::slice::from_ref(&id))?;
        }
        Ok(true)
    }

    /// Rebuilds the table from the journal's jobs (in submission order); see the module
    /// documentation for what becomes of each.
    fn restore(&mut self, stored: Vec<Stored>) -> Result<()> {
        let mut finished = Vec::new();
        for mut s in stored {
            let id = s.job.id.clone();
            let mut changed = false;
            if s.job.status == State::Running {
                changed = true;
                if s.job.runs >= self.bounds.max_attempts {
                    let lost = worker_lost(s.job.runs);
                    apply(&mut s.job, Outcome::Failed(lost));
                    s.request = None;
                } else {
                    s.job.status = State::Queued;
                }
            }
            let bytes = match (&s.job.result, &s.request) {
                (_, Some(r)) => r.len(),
                (Some(v), None) => serde_json::to_vec(v).map_or(0, |b| b.len()),
                (None, None) => 0,
            };
            if s.job.status.finished() {
                finished.push((s.job.finished_at.unwrap_or(0), id.clone()));
                if let Some(c) = s.job.callback.as_mut().filter(|c| c.state == CallbackState::Delivering) {
                    // it may have arrived: it is sent again (receivers deduplicate on the job id)
                    c.state = CallbackState::Pending;
                    changed = true;
                }
                if callback_due(&s.job) {
                    self.callbacks.push_back(id.clone());
                }
            } else {
                self.queue.push_back(id.clone());
                self.pending += 1;
            }
            if let Some(k) = &s.idem {
                self.idem.insert(k.clone(), id.clone());
            }
            self.bytes += bytes;
            self.jobs.insert(id.clone(), Entry { stored: s, bytes });
            if changed {
                self.write(&id)?;
            }
        }
        finished.sort();
        self.finished = finished.into_iter().map(|(_, id)| id).collect();
        self.expire()?;
        self.bound()
    }
}
