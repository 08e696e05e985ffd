//! The runner's background threads: the pool keeps `target` sandboxes prepared (each
//! fresh, used once) and the cleaner tears used ones down, so a request's path is only
//! take, start, watch and decide. Preparing and tearing down still cost CPU; they just no
//! longer add latency.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::prepared::Prepared;
use super::{Inner, RunError, chain, default_sizes};

/// Pause after a failed refill, so a persistent failure does not spin.
const RETRY: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(super) struct Pool {
    shared: Arc<Shared>,
    refill: Option<JoinHandle<()>>,
}

/// Tears used sandboxes down (kill and reap PID 1, remove the cgroup, free the slot) on
/// its own thread; dropping it waits until every sandbox handed to it is gone.
#[derive(Debug)]
pub(super) struct Cleaner {
    clean: Option<(Sender<Prepared>, JoinHandle<()>)>,
}

impl Cleaner {
    pub(super) fn start() -> Result<Cleaner, RunError> {
        let (tx, rx) = channel::<Prepared>();
        let thread = std::thread::Builder::new()
            .name("codeexec-clean".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .map_err(RunError::Thread)?;
        Ok(Cleaner { clean: Some((tx, thread)) })
    }

    /// Hands a used sandbox over; it is torn down here if the thread is gone.
    pub(super) fn discard(&self, used: Prepared) {
        match &self.clean {
            Some((tx, _)) => {
                if let Err(back) = tx.send(used) {
                    drop(back.0);
                }
            }
            None => drop(used),
        }
    }
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        if let Some((tx, t)) = self.clean.take() {
            drop(tx);
            let _ = t.join();
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    ready: Mutex<VecDeque<Prepared>>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Pool {
    /// Keeps `target` sandboxes on `root` prepared.
    pub(super) fn start(inner: Arc<Inner>, target: usize, root: usize) -> Result<Pool, RunError> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let refill = std::thread::Builder::new()
            .name("codeexec-warm".into())
            .spawn(move || refill(&inner, &s, target, root))
            .map_err(RunError::Thread)?;
        Ok(Pool { shared, refill: Some(refill) })
    }

    /// A prepared sandbox, if one is ready.
    pub(super) fn take(&self) -> Option<Prepared> {
        let taken = self.shared.ready.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        self.shared.wake.notify_all();
        taken
    }
}

fn refill(inner: &Inner, shared: &Shared, target: usize, root: usize) {
    loop {
        {
            let ready = shared.ready.lock().unwrap_or_else(PoisonError::into_inner);
            let ready = shared
                .wake
                .wait_while(ready, |r| r.len() >= target && !shared.stop.load(Ordering::SeqCst))
                .unwrap_or_else(PoisonError::into_inner);
            drop(ready);
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let made = inner
            .prepare(&default_sizes(), root, &super::prepared::Extras::default())
            .and_then(|p| p.wait_ready().map(|()| p));
        match made {
            Ok(p) => shared.ready.lock().unwrap_or_else(PoisonError::into_inner).push_back(p),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "preparing a warm sandbox failed");
                let ready = shared.ready.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = shared.wake.wait_timeout_while(ready, RETRY, |_| !shared.stop.load(Ordering::SeqCst));
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.refill.take() {
            let _ = t.join();
        }
        self.shared.ready.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
