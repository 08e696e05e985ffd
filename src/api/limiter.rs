//! Backpressure: at most `concurrency` runs at once and `queue` more requests admitted
//! (checked, or waiting for a run slot); beyond that 429. A request takes its place only
//! once its body is in and its key checked, so clients sending their body slowly hold no
//! place; the bodies being read hold bytes of a budget of their own instead, spent as the
//! bytes arrive ((concurrency + queue) × the largest body; past it, 429), so the memory
//! held by requests in flight stays bounded. A request that goes away gives its place and
//! its bytes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Cheap to clone: the clones share the slots and counts.
#[derive(Debug, Clone)]
pub(super) struct Limiter {
    /// Bytes of request bodies that may be held at once.
    body_bytes: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    capacity: usize,
    admitted: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    /// Told when a run slot is given back.
    freed: Arc<Notify>,
}

/// An admitted request's place; given back on drop.
#[derive(Debug)]
pub(super) struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A run slot (with the request's place), released on drop. It is owned, so it can go
/// with the run to its blocking thread: a run whose client went away holds its slot until
/// it has really ended.
#[derive(Debug)]
pub(super) struct Permit {
    slot: Option<OwnedSemaphorePermit>,
    /// None for a job's run (jobs have their own bound) and for extra slots.
    _ticket: Option<Ticket>,
    running: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        // the slot first, so that whoever is told finds it free
        drop(self.slot.take());
        self.freed.notify_waiters();
    }
}

impl Limiter {
    pub(super) fn new(concurrency: usize, queue: usize, max_body_bytes: usize) -> Self {
        let budget = concurrency.saturating_add(queue).saturating_mul(max_body_bytes).min(Semaphore::MAX_PERMITS);
        Limiter {
            body_bytes: Arc::new(Semaphore::new(budget)),
            slots: Arc::new(Semaphore::new(concurrency)),
            capacity: concurrency.saturating_add(queue),
            admitted: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
            freed: Arc::new(Notify::new()),
        }
    }

    /// A place for a request that will run, or `Busy` when every slot and queue place is
    /// taken.
    pub(super) fn admit(&self) -> Result<Ticket, ApiError> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Busy);
        }
        Ok(Ticket { admitted: Arc::clone(&self.admitted) })
    }

    /// `n` more bytes for a body being read (held until `held` is dropped), or `Busy`
    /// when the bodies in flight hold the whole budget.
    pub(super) fn body_bytes(&self, held: &mut Option<OwnedSemaphorePermit>, n: usize) -> Result<(), ApiError> {
        let n = u32::try_from(n).map_err(|_| ApiError::Busy)?;
        let more = Arc::clone(&self.body_bytes).try_acquire_many_owned(n).map_err(|_| ApiError::Busy)?;
        match held {
            Some(h) => h.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }

    /// Waits (first come, first served) for a run slot for an admitted request.
    pub(super) async fn slot(&self, ticket: Ticket) -> Result<Permit, ApiError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the run limiter is closed".into()))?;
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Permit {
            slot: Some(slot),
            _ticket: Some(ticket),
            running: Arc::clone(&self.running),
            freed: Arc::clone(&self.freed),
        })
    }

    /// Waits for a run slot for an async job (in line with requests, first come, first
    /// served; jobs are bounded by their own queue, not by `queue`).
    pub(super) async fn job_slot(&self) -> Result<Permit, ApiError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the run limiter is closed".into()))?;
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Permit {
            slot: Some(slot),
            _ticket: None,
            running: Arc::clone(&self.running),
            freed: Arc::clone(&self.freed),
        })
    }

    /// Up to `n` more slots for a request that already runs (a judge request's tests run in
    /// parallel on them), taken only if free now: none is waited for, so a request never
    /// holds some slots while waiting for others, and queued requests go first.
    pub(super) fn extra(&self, n: usize) -> Vec<Permit> {
        let mut out = Vec::new();
        while out.len() < n {
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else { break };
            self.running.fetch_add(1, Ordering::SeqCst);
            out.push(Permit {
                slot: Some(slot),
                _ticket: None,
                running: Arc::clone(&self.running),
                freed: Arc::clone(&self.freed),
            });
        }
        out
    }

    /// Run slots free now.
    pub(super) fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits until a run slot is free, at most `timeout`; returns how many are free.
    pub(super) async fn until_free(&self, timeout: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let freed = self.freed.notified();
            let free = self.free();
            if free > 0 {
                return free;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.free();
            }
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Admitted requests not running (reading their body or waiting for a slot).
    pub(super) fn waiting(&self) -> usize {
        self.admitted.load(Ordering::SeqCst).saturating_sub(self.running())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_then_queue_then_busy() {
        let l = Limiter::new(1, 1, 10);
        let first = l.slot(l.admit().unwrap()).await.unwrap();
        assert_eq!(l.running(), 1);
        // the second is admitted and waits; the third finds no place
        let second = l.slot(l.admit().unwrap());
        tokio::pin!(second);
        assert!(poll_once(second.as_mut()).await.is_none());
        assert_eq!(l.waiting(), 1);
        assert_eq!(l.admit().unwrap_err(), ApiError::Busy);
        drop(first);
        let second = second.await.unwrap();
        assert_eq!((l.running(), l.waiting()), (1, 0));
        drop(second);
        assert_eq!((l.running(), l.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_request_that_goes_away_gives_its_place_back() {
        let l = Limiter::new(1, 1, 10);
        let _first = l.slot(l.admit().unwrap()).await.unwrap();
        {
            let second = l.slot(l.admit().unwrap());
            tokio::pin!(second);
            assert!(poll_once(second.as_mut()).await.is_none());
            assert_eq!(l.waiting(), 1);
        }
        assert_eq!(l.waiting(), 0);
        // a ticket dropped before it waits (a bad body) gives its place back too
        drop(l.admit().unwrap());
        assert!(l.admit().is_ok());
    }

    #[tokio::test]
    async fn extra_slots_are_only_the_free_ones_and_never_jump_the_queue() {
        let l = Limiter::new(3, 2, 10);
        let first = l.slot(l.admit().unwrap()).await.unwrap();
        let extra = l.extra(5);
        assert_eq!(extra.len(), 2, "only what is free");
        assert_eq!(l.running(), 3);
        drop(extra);
        let waiting = l.slot(l.admit().unwrap());
        tokio::pin!(waiting);
        let _second = l.slot(l.admit().unwrap()).await.unwrap();
        let _third = l.job_slot().await.unwrap();
        assert!(poll_once(waiting.as_mut()).await.is_none());
        assert!(l.extra(1).is_empty(), "none free");
        drop(first);
        assert!(l.extra(1).is_empty(), "the waiting request gets the freed slot, not the extra");
        assert!(poll_once(waiting.as_mut()).await.is_some());
    }

    #[test]
    fn bodies_spend_a_budget_of_their_own_and_give_it_back() {
        let l = Limiter::new(1, 1, 10);
        let mut a = None;
        l.body_bytes(&mut a, 15).unwrap();
        let mut b = None;
        l.body_bytes(&mut b, 5).unwrap();
        assert_eq!(l.body_bytes(&mut b, 1).unwrap_err(), ApiError::Busy, "20 bytes held of 20");
        assert!(l.admit().is_ok(), "bodies take no place");
        drop(a);
        l.body_bytes(&mut b, 15).unwrap();
    }

    /// Polls a future once: `Some` if it finished.
    async fn poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
