//! Per-API-key limits: a token bucket of requests per second (the `governor` crate's GCRA,
//! a well-kept implementation of the bucket with exact retry times) and a count of
//! `POST /v1/execute` requests at once. State is one bucket and one semaphore per
//! configured key, made at start: memory is bounded by `server.api_keys`, whatever clients
//! send. The Unix socket and keyless TCP are not limited here (the run slots and queue of
//! `limiter.rs` bound them).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::header::{HeaderMap, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::config::{KeyLimits, RateLimits};

/// One key's bucket and runs.
struct Key {
    limits: KeyLimits,
    bucket: Option<DefaultDirectRateLimiter>,
    runs: Option<Arc<Semaphore>>,
}

/// Every key's state, by the key's index in `server.api_keys`.
pub(super) struct RateLimit {
    keys: Vec<Key>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

/// A run counted against its key until dropped.
#[derive(Debug)]
pub(super) struct RunPermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl RateLimit {
    pub(super) fn new(limits: &RateLimits) -> RateLimit {
        let keys = limits
            .iter()
            .map(|l| Key {
                limits: *l,
                bucket: l.rate.map(|(rps, burst)| RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))),
                runs: l.concurrent_runs.map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            })
            .collect();
        RateLimit { keys, clock: DefaultClock::default() }
    }

    /// Takes a token from key `index`'s bucket, or says when the next one comes.
    pub(super) fn check(&self, index: usize) -> Result<(), ApiError> {
        let Some(key) = self.keys.get(index) else { return Ok(()) };
        let (Some(bucket), Some((rps, burst))) = (&key.bucket, key.limits.rate) else { return Ok(()) };
        bucket.check().map_err(|not_until| ApiError::RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()),
            message: format!("over this key's rate of {rps} requests per second (burst {burst})"),
        })
    }

    /// Counts a run against key `index` (None: a caller without a key), or 429.
    pub(super) fn run(&self, index: Option<usize>) -> Result<RunPermit, ApiError> {
        let Some(key) = index.and_then(|i| self.keys.get(i)) else { return Ok(RunPermit(None)) };
        let Some(runs) = &key.runs else { return Ok(RunPermit(None)) };
        let n = key.limits.concurrent_runs.map_or(0, NonZeroU32::get);
        match Arc::clone(runs).try_acquire_owned() {
            Ok(p) => Ok(RunPermit(Some(p))),
            Err(_) => Err(ApiError::RateLimited {
                retry_after: Duration::from_secs(1),
                message: format!("this key already has its {n} runs at once"),
            }),
        }
    }

    /// The key's limits as headers: `X-RateLimit-Limit` (requests per second),
    /// `X-RateLimit-Burst`, `X-RateLimit-Concurrent-Runs`.
    pub(super) fn headers(&self, index: usize, headers: &mut HeaderMap) {
        let Some(key) = self.keys.get(index) else { return };
        if let Some((rps, burst)) = key.limits.rate {
            headers.insert("x-ratelimit-limit", HeaderValue::from(rps.get()));
            headers.insert("x-ratelimit-burst", HeaderValue::from(burst.get()));
        }
        if let Some(n) = key.limits.concurrent_runs {
            headers.insert("x-ratelimit-concurrent-runs", HeaderValue::from(n.get()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rps: u32, burst: u32, runs: u32) -> KeyLimits {
        KeyLimits {
            rate: NonZeroU32::new(rps).map(|r| (r, NonZeroU32::new(burst).unwrap_or(r))),
            concurrent_runs: NonZeroU32::new(runs),
        }
    }

    #[test]
    fn each_key_has_its_own_bucket_and_runs() {
        let rate = RateLimit::new(&vec![limits(1, 2, 1), limits(0, 0, 0)]);
        rate.check(0).unwrap();
        rate.check(0).unwrap();
        let ApiError::RateLimited { retry_after, .. } = rate.check(0).unwrap_err() else { panic!() };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1), "{retry_after:?}");
        // the other key is unlimited, a key index past the list too
        for _ in 0..100 {
            rate.check(1).unwrap();
            rate.check(7).unwrap();
        }
        let held = rate.run(Some(0)).unwrap();
        assert!(matches!(rate.run(Some(0)), Err(ApiError::RateLimited { .. })));
        let _others = (rate.run(Some(1)).unwrap(), rate.run(Some(1)).unwrap(), rate.run(None).unwrap());
        drop(held);
        rate.run(Some(0)).unwrap();
        let mut h = HeaderMap::new();
        rate.headers(0, &mut h);
        assert_eq!((h["x-ratelimit-limit"].to_str().unwrap(), h["x-ratelimit-burst"].to_str().unwrap()), ("1", "2"));
    }
}
