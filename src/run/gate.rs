//! A counting gate: at most `max` holders at once, the others wait in turn (network runs
//! are capped below the run slots: each holds a link and conntrack entries on the host).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::Cancel;

#[derive(Debug)]
pub(super) struct Gate {
    max: usize,
    held: Mutex<usize>,
    freed: Condvar,
}

/// A place in the gate, given back on drop.
#[derive(Debug)]
pub(super) struct Pass<'a>(&'a Gate);

impl Gate {
    pub(super) fn new(max: usize) -> Gate {
        Gate { max: max.max(1), held: Mutex::new(0), freed: Condvar::new() }
    }

    /// Waits for a place; `None` if `cancel` fires first.
    pub(super) fn enter(&self, cancel: Option<&Cancel>) -> Option<Pass<'_>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while *held >= self.max {
            if cancel.is_some_and(Cancel::is_cancelled) {
                return None;
            }
            held = self.freed.wait_timeout(held, Duration::from_millis(50)).unwrap_or_else(PoisonError::into_inner).0;
        }
        *held += 1;
        Some(Pass(self))
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn at_most_max_hold_it_and_a_cancel_stops_the_wait() {
        let gate = Arc::new(Gate::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (gate, now, most) = (Arc::clone(&gate), Arc::clone(&now), Arc::clone(&most));
                std::thread::spawn(move || {
                    let _pass = gate.enter(None).unwrap();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let a = gate.enter(None).unwrap();
        let _b = gate.enter(None).unwrap();
        let cancel = Cancel::new().unwrap();
        cancel.cancel();
        assert!(gate.enter(Some(&cancel)).is_none());
        drop(a);
        assert!(gate.enter(Some(&cancel)).is_some(), "a free place is taken even if cancelled");
    }
}
