//! Interactive tests: the program and the problem's interactor run at once, each in a
//! sandbox of its own, cross-connected through the relay of `run::cross` (the program's
//! stdout is the interactor's stdin and the other way round). The interactor gets the
//! test's input and answer as files, the program neither; the interactor's exit code
//! decides as a checker's would (testlib's or Kattis' convention).
//!
//! Who ended first decides whose word counts, as contest judges do it:
//! - the interactor ended first and did not accept: its verdict (a program that then
//!   died of the closed pipe, or waited, did so because of it); a failed interactor
//!   (crash, limit, testlib's `_fail`, a code that means nothing) is a `judge_error`;
//! - otherwise a program that did not end well is judged by how it ended (a deadlock, both
//!   waiting, ends at the program's wall limit: `time_limit`);
//! - otherwise the interactor's verdict, `judge_error` when it failed (it hung or crashed
//!   after the program ended well).
//!
//! The interactor's wall limit is at least the program's (with its extra time) plus
//! [`GRACE`], so in a deadlock the program is the one killed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::schedule::Ctx;
use super::{Expected, Test, TestResult, TestVerdict, program, trial};
use crate::limit::Limits;
use crate::pipeline::{self, Invocation};
use crate::run::{self, RunError, Side, Status};

/// How long the interactor may outlive the program's wall limit: time to read the EOF
/// and say its verdict.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Runs test `t` once with `interactor`; `inv` is the program's run (killed at its limits),
/// `held` the limits it is held to when they differ (extra time).
pub(super) fn once(
    ctx: &Ctx<'_>,
    t: &Test,
    interactor: &program::Ready<'_>,
    mut inv: Invocation,
    held: Option<&Limits>,
) -> Result<TestResult, RunError> {
    let req = ctx.req;
    let answer = match &t.expected {
        Expected::Output(b) => b.as_slice(),
        Expected::Nothing => &[],
        Expected::Value(_) => {
            return Err(RunError::Invalid("an interactor talks to a program, not to a function".into()));
        }
    };
    let (contestant, other, relay) = run::cross(req.rules.transcript_bytes)?;
    let stop = relay.stopper();
    let running = AtomicUsize::new(2);
    // the relay ends once both runs have returned, whatever it still waits for
    let finish = || {
        if running.fetch_sub(1, Ordering::SeqCst) == 1 {
            stop.cancel();
        }
    };
    let mut limits = interactor.limits().clone();
    limits.wall_time = limits.wall_time.max(inv.limits.wall_time + GRACE);
    inv.stdin = Vec::new();
    inv.plug = Some(contestant);
    let (ran, checked, transcript) = std::thread::scope(|s| {
        let c = s.spawn(|| {
            let r = pipeline::run(ctx.exec, ctx.lang, ctx.program, inv);
            finish();
            r
        });
        let i = s.spawn(|| {
            let r = interactor.interact(ctx.exec, &t.stdin, answer, &limits, other, req.cancel.clone());
            finish();
            r
        });
        let transcript = relay.run();
        (join(c), join(i), transcript)
    });
    let (ran, checked) = (ran?, checked?);
    let mut run = ran.run;
    if let Some(held) = held {
        trial::hold(&mut run, held);
    }
    let mut result = TestResult::without_run(TestVerdict::Ok, None);
    result.error = ran.error;
    if interactor_decides(run.status, checked.verdict, transcript.ended_first(Side::B)) {
        result.verdict = checked.verdict;
        result.points = Some(checked.points);
        result.message = checked.message;
    } else {
        // a judge calls a crash a runtime error, whatever signal ended it
        let status = if run.status == Status::Signaled { Status::RuntimeError } else { run.status };
        result.verdict = TestVerdict::Run(status);
        result.message.clone_from(&run.message);
    }
    result.checker = Some(checked.run);
    result.run = Some(run);
    result.transcript = (req.rules.transcript_bytes > 0).then_some(transcript);
    Ok(result)
}

/// Whether the interactor's verdict is the test's (else the program's way of ending is):
/// see the module's comment.
fn interactor_decides(program: Status, interactor: TestVerdict, interactor_first: bool) -> bool {
    (interactor_first && interactor != TestVerdict::Accepted) || program == Status::Ok
}

/// A scoped thread's result; its panic goes on here.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whose_word_counts() {
        use {Status as S, TestVerdict as V};
        // the interactor said no, then the program died of it (or was left waiting)
        assert!(interactor_decides(S::RuntimeError, V::WrongAnswer, true));
        assert!(interactor_decides(S::TimeLimit, V::PresentationError, true));
        // it crashed first: its fault, not the waiting program's
        assert!(interactor_decides(S::TimeLimit, V::JudgeError, true));
        // it accepted, and the program then failed on its own
        assert!(!interactor_decides(S::TimeLimit, V::Accepted, true));
        // the program ended first, badly: a deadlock is its wall time limit
        assert!(!interactor_decides(S::TimeLimit, V::PresentationError, false));
        assert!(!interactor_decides(S::RuntimeError, V::JudgeError, false));
        // the program ended well: the interactor decides, hung or not
        assert!(interactor_decides(S::Ok, V::Accepted, false));
        assert!(interactor_decides(S::Ok, V::JudgeError, false));
    }
}
