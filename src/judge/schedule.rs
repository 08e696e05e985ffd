//! In which order tests run, and which do not: all at once (as many in parallel as there
//! are workers), or batch by batch in the order of their dependencies, a batch stopping at
//! its first failure and not starting when a batch it depends on did not pass. A test
//! shared by batches runs once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::keep::{self, Finished, Slot};
use super::{Request, TestResult, TestVerdict, batch, program, trial};
use crate::lang::Language;
use crate::pipeline::{Executor, Prepared};
use crate::run::{Cancel, RunError, Status};

/// What every test of a request shares.
pub(super) struct Ctx<'a> {
    pub(super) exec: &'a dyn Executor,
    pub(super) lang: &'a Language,
    pub(super) program: &'a Prepared,
    pub(super) checker: Option<&'a program::Ready<'a>>,
    /// The problem's interactor (then there is no checker).
    pub(super) interactor: Option<&'a program::Ready<'a>>,
    pub(super) validators: &'a [program::Ready<'a>],
    pub(super) req: &'a Request,
    pub(super) workers: usize,
}

/// Where a request's tests stand: each one's result once in, or why it was not run.
struct Board {
    results: Vec<Option<TestResult>>,
    why_not: Vec<Option<String>>,
    /// Some test failed (for `stop_on_first_failure`).
    failed: AtomicBool,
    /// Files and bytes the tests not yet run may still keep.
    left: (usize, u64),
}

const STOPPED: &str = "not run: an earlier test failed (stop_on_first_failure)";

/// Runs the request's tests; their results in the tests' order.
pub(super) fn run(ctx: &Ctx<'_>) -> Result<Vec<TestResult>, RunError> {
    let n = ctx.req.tests.len();
    let mut board = Board {
        results: vec![None; n],
        why_not: vec![None; n],
        failed: AtomicBool::new(false),
        left: ctx.req.keep.files.as_ref().map_or((0, 0), |f| (f.count, f.bytes)),
    };
    let batches = &ctx.req.rules.batches;
    if batches.is_empty() {
        run_set(ctx, &(0..n).collect::<Vec<_>>(), None, &mut board)?;
    } else {
        let order = batch::order(batches, n).map_err(RunError::Invalid)?;
        let loose: Vec<usize> = (0..n).filter(|i| !batches.iter().any(|b| b.tests.contains(i))).collect();
        run_set(ctx, &loose, None, &mut board)?;
        let mut passed = vec![false; batches.len()];
        for b in order {
            passed[b] = run_batch(ctx, b, &passed, &mut board)?;
        }
    }
    let skipped = |why: Option<String>| TestResult::without_run(TestVerdict::Skipped, why.or(Some(STOPPED.into())));
    Ok(board.results.into_iter().zip(board.why_not).map(|(r, why)| r.unwrap_or_else(|| skipped(why))).collect())
}

/// Runs batch `b`'s tests that have not run, unless a batch it depends on did not pass;
/// whether it passed.
fn run_batch(ctx: &Ctx<'_>, b: usize, passed: &[bool], board: &mut Board) -> Result<bool, RunError> {
    let batches = &ctx.req.rules.batches;
    let batch = &batches[b];
    let mut todo: Vec<usize> = batch.tests.iter().copied().filter(|&t| board.results[t].is_none()).collect();
    todo.dedup();
    let why = if let Some(&d) = batch.depends_on.iter().find(|&&d| !passed[d]) {
        Some(format!("not run: batch {:?} depends on batch {:?}, which did not pass", batch.name, batches[d].name))
    } else if batch.tests.iter().any(|&t| board.results[t].as_ref().is_some_and(|r| r.fraction() <= 0.0)) {
        Some(format!("not run: a test of batch {:?} failed", batch.name))
    } else {
        run_set(ctx, &todo, Some(&format!("not run: an earlier test of batch {:?} failed", batch.name)), board)?;
        None
    };
    if let Some(why) = why {
        for &t in &todo {
            board.why_not[t].get_or_insert(why.clone());
        }
        return Ok(false);
    }
    Ok(batch.tests.iter().all(|&t| board.results[t].as_ref().is_some_and(|r| r.verdict.passed())))
}

/// Runs the tests `indices` on the workers, in that order; with `batch` (the message of a
/// test not run) the set stops at its first test that earns nothing (one with partial
/// points does not decide the batch's least). A `RunError` stops everything and is the
/// answer.
fn run_set(ctx: &Ctx<'_>, indices: &[usize], batch: Option<&str>, board: &mut Board) -> Result<(), RunError> {
    if indices.is_empty() {
        return Ok(());
    }
    let req = ctx.req;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let done = Mutex::new(Finished::new(indices.len(), board.left));
    let failed = &board.failed;
    let work = || {
        loop {
            let k = next.fetch_add(1, Ordering::SeqCst);
            let Some(&i) = indices.get(k) else { break };
            let slot = if req.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                Slot::Done(Box::new(Ok(TestResult::without_run(
                    TestVerdict::Run(Status::InternalError),
                    Some("not run: the request was cancelled".into()),
                ))))
            } else if stop.load(Ordering::SeqCst) || (req.stop_on_failure && failed.load(Ordering::SeqCst)) {
                Slot::Stopped
            } else {
                Slot::Done(Box::new(trial::one(ctx, i).map(|mut r| {
                    keep::trim(&mut r, &req.keep);
                    r
                })))
            };
            if let Slot::Done(r) = &slot {
                let r = r.as_ref().as_ref();
                if r.map_or(true, |r| !r.verdict.passed()) {
                    failed.store(true, Ordering::SeqCst);
                }
                if r.map_or(true, |r| r.fraction() <= 0.0) && (batch.is_some() || r.is_err()) {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            done.lock().unwrap_or_else(PoisonError::into_inner).store(k, slot);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..ctx.workers.clamp(1, indices.len()) {
            s.spawn(work);
        }
        work();
    });
    let finished = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    board.left = finished.left;
    for (k, slot) in finished.results.into_iter().enumerate() {
        let i = indices[k];
        match slot {
            Slot::Done(r) => match *r {
                Ok(t) => board.results[i] = Some(t),
                // an error that stopped the others is the answer, not the tests it made skip
                Err(e) => return Err(e),
            },
            Slot::Stopped if req.stop_on_failure && failed.load(Ordering::SeqCst) => {
                board.why_not[i] = Some(STOPPED.into());
            }
            Slot::Stopped => board.why_not[i] = batch.map(str::to_owned),
            Slot::Pending => board.results[i] = Some(never_ran()),
        }
    }
    Ok(())
}

fn never_ran() -> TestResult {
    TestResult::without_run(TestVerdict::Run(Status::InternalError), Some("the test was never run".into()))
}
