//! Backpressure: at most `concurrency` runs at once, at most `queue` requests waiting for
//! one, and 429 beyond that. A waiting request that goes away (its client hung up) gives
//! its queue place back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

#[derive(Debug)]
pub(super) struct Limiter {
    slots: Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    running: Arc<AtomicUsize>,
}

/// A run slot, released on drop. It is owned, so it can go with the run to its blocking
/// thread: a run whose client went away holds its slot until it has really ended.
#[derive(Debug)]
pub(super) struct Permit {
    _slot: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A queue place; given back on drop (also when the waiting future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limiter {
    pub(super) fn new(concurrency: usize, queue: usize) -> Self {
        Limiter {
            slots: Arc::new(Semaphore::new(concurrency)),
            queue,
            waiting: AtomicUsize::new(0),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A run slot at once, or after waiting in the queue; `Busy` when the queue is full.
    pub(super) async fn acquire(&self) -> Result<Permit, ApiError> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(ApiError::Busy);
                }
                let _place = Waiting(&self.waiting);
                Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::Internal("the run limiter is closed".into()))?
            }
        };
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Permit { _slot: slot, running: Arc::clone(&self.running) })
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_then_queue_then_busy() {
        let l = Limiter::new(1, 1);
        let first = l.acquire().await.unwrap();
        assert_eq!(l.running(), 1);
        // the second waits in the queue; the third finds it full
        let second = l.acquire();
        tokio::pin!(second);
        assert!(futures_poll_once(second.as_mut()).await.is_none());
        assert_eq!(l.waiting(), 1);
        assert_eq!(l.acquire().await.unwrap_err(), ApiError::Busy);
        drop(first);
        let second = second.await.unwrap();
        assert_eq!((l.running(), l.waiting()), (1, 0));
        drop(second);
        assert_eq!(l.running(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_gives_its_place_back() {
        let l = Limiter::new(1, 1);
        let _first = l.acquire().await.unwrap();
        {
            let second = l.acquire();
            tokio::pin!(second);
            assert!(futures_poll_once(second.as_mut()).await.is_none());
            assert_eq!(l.waiting(), 1);
        }
        assert_eq!(l.waiting(), 0);
    }

    /// Polls a future once: `Some` if it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
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
