//! One test: the program run (as often as the rules ask, the run of median time reported),
//! held to the limits the rules say count, and its output checked by a built-in checker
//! or the problem's checker program.

use std::time::Duration;

use super::schedule::Ctx;
use super::{Expected, Rules, Test, TestResult, TestVerdict, TimeBy};
use crate::limit::Limits;
use crate::pipeline::{self, Invocation};
use crate::run::{Exceeded, RunError, RunOutcome, Status};

/// The longest extra time (the CPU limit's own bound).
const MAX_EXTRA: Duration = Duration::from_secs(3600);

/// Runs test `i` (`rules.runs` times, stopping at a failed run) and checks it.
pub(super) fn one(ctx: &Ctx<'_>, i: usize) -> Result<TestResult, RunError> {
    let t = &ctx.req.tests[i];
    for v in ctx.validators {
        let c = v.check(ctx.exec, &t.stdin, &[], &[], ctx.req.cancel.clone())?;
        if c.verdict != TestVerdict::Accepted {
            let mut r = TestResult::without_run(TestVerdict::JudgeError, c.message);
            r.checker = Some(c.run);
            return Ok(r);
        }
    }
    let rules = &ctx.req.rules;
    let runs = rules.runs.max(1) as usize;
    let mut passed: Vec<TestResult> = Vec::with_capacity(runs);
    for k in 0..runs {
        let mut r = once(ctx, t)?;
        if !r.verdict.passed() || runs == 1 {
            if runs > 1 {
                r.times = passed.iter().chain(std::iter::once(&r)).map(times).collect();
                r.message =
                    Some(format!("run {} of {runs}: {}", k + 1, r.message.as_deref().unwrap_or(r.verdict.as_str())));
            }
            return Ok(r);
        }
        passed.push(r);
    }
    let all: Vec<(Duration, Duration)> = passed.iter().map(times).collect();
    let by = |r: &TestResult| counted(times(r), rules.time_by);
    passed.sort_by_key(by);
    // the lower median of an even count: a time some run really took
    let mut r = passed.swap_remove((passed.len() - 1) / 2);
    r.times = all;
    Ok(r)
}

/// A run's CPU and wall time (zero when it did not run).
fn times(r: &TestResult) -> (Duration, Duration) {
    r.run.as_ref().map_or((Duration::ZERO, Duration::ZERO), |o| (o.cpu_time, o.wall_time))
}

fn counted((cpu, wall): (Duration, Duration), by: TimeBy) -> Duration {
    match by {
        TimeBy::Cpu => cpu,
        TimeBy::Wall => wall,
    }
}

/// The limits a test is held to (the CPU limit lifted to what the run's cores can use in
/// its wall time, when wall time counts), and those it is killed at (both with the extra
/// time).
fn limits(t: &Limits, rules: &Rules) -> (Limits, Limits) {
    let mut held = t.clone();
    if rules.time_by == TimeBy::Wall {
        // what the run's cores can use in its wall time: the CPU limit never decides
        let cores = held.cpu_millicores.div_ceil(1000).max(1);
        held.cpu_time = held.wall_time.saturating_mul(cores).min(MAX_EXTRA);
    }
    let extra = rules.extra_time.min(MAX_EXTRA);
    let mut killed = held.clone();
    killed.cpu_time = (killed.cpu_time + extra).min(MAX_EXTRA);
    killed.wall_time += extra;
    (held, killed)
}

/// A run that went past the limits it is held to (within the extra time) is over them,
/// whatever it did then; one killed at the extra time is over the limit without it.
pub(super) fn hold(run: &mut RunOutcome, held: &Limits) {
    let cpu = run.cpu_time >= held.cpu_time;
    let wall = run.wall_time > held.wall_time;
    let over = match run.status {
        Status::TimeLimit => run.exceeded,
        Status::Ok | Status::RuntimeError | Status::Signaled if cpu => Some(Exceeded::CpuTime),
        Status::Ok | Status::RuntimeError | Status::Signaled if wall => Some(Exceeded::WallTime),
        _ => return,
    };
    run.status = Status::TimeLimit;
    run.exceeded = over;
    run.message = Some(match over {
        Some(Exceeded::WallTime) => format!("wall time limit of {} ms exceeded", held.wall_time.as_millis()),
        _ => format!("cpu time limit of {} ms exceeded", held.cpu_time.as_millis()),
    });
}

/// Runs the test once and checks it.
fn once(ctx: &Ctx<'_>, t: &Test) -> Result<TestResult, RunError> {
    let req = ctx.req;
    let (held, killed) = limits(&t.limits, &req.rules);
    let extra = held != killed;
    let inv = Invocation {
        stdin: t.stdin.clone(),
        args: t.args.clone(),
        limits: killed,
        cancel: req.cancel.clone(),
        collect_files: req.keep.files.is_some(),
        access: req.access.clone(),
        files: Vec::new(),
        live: None,
        plug: None,
    };
    if let Some(interactor) = ctx.interactor {
        return super::interact::once(ctx, t, interactor, inv, extra.then_some(&held));
    }
    let ran = pipeline::run(ctx.exec, ctx.lang, ctx.program, inv)?;
    let mut run = ran.run;
    if extra {
        hold(&mut run, &held);
    }
    let mut result = TestResult::without_run(TestVerdict::Ok, None);
    result.error = ran.error;
    let answer = match req.function {
        Some(split) => {
            let (own, value) = split(&run.stdout);
            run.stdout = own;
            Some(value)
        }
        None => None,
    };
    if run.status != Status::Ok {
        // a judge calls a crash a runtime error, whatever signal ended it (an uncaught C++
        // exception aborts); the signal is in the run
        let status = if run.status == Status::Signaled { Status::RuntimeError } else { run.status };
        result.verdict = TestVerdict::Run(status);
        result.message.clone_from(&run.message);
        result.run = Some(run);
        return Ok(result);
    }
    if let Some(checker) = ctx.checker {
        let want = match &t.expected {
            Expected::Output(b) => b.as_slice(),
            Expected::Nothing => &[],
            Expected::Value(_) => {
                return Err(RunError::Invalid("a checker program compares outputs, not a function's values".into()));
            }
        };
        let c = checker.check(ctx.exec, &t.stdin, want, &run.stdout, req.cancel.clone())?;
        result.verdict = c.verdict;
        result.points = Some(c.points);
        result.message = c.message;
        result.checker = Some(c.run);
        result.run = Some(run);
        return Ok(result);
    }
    check(ctx, t, run, answer, result)
}

/// Checks an output (or a function's value) with the built-in checker.
fn check(
    ctx: &Ctx<'_>,
    t: &Test,
    run: RunOutcome,
    answer: Option<Option<Result<serde_json::Value, String>>>,
    mut result: TestResult,
) -> Result<TestResult, RunError> {
    let checker = ctx.req.checker;
    let ignore_case = ctx.req.rules.ignore_case;
    let checked = match (&t.expected, answer) {
        (_, Some(None)) => Err((
            TestVerdict::Run(Status::RuntimeError),
            "the program ended before the function returned (did it exit?)".to_owned(),
        )),
        (_, Some(Some(Err(e)))) => Err((TestVerdict::WrongAnswer, format!("the result is not JSON: {e}"))),
        (Expected::Value(want), Some(Some(Ok(got)))) => {
            let r = checker.check_json(want, &got).map_err(|m| (TestVerdict::WrongAnswer, m));
            result.returned = Some(got);
            r
        }
        (Expected::Output(want), None) => {
            checker.check_case(want, &run.stdout, ignore_case).map_err(|m| (TestVerdict::WrongAnswer, m))
        }
        (Expected::Nothing, Some(Some(Ok(got)))) => {
            result.returned = Some(got);
            Ok(())
        }
        (Expected::Nothing, _) => Ok(()),
        (Expected::Value(_), None) | (Expected::Output(_), Some(_)) => {
            return Err(RunError::Invalid("a test's expected output does not fit the request's mode".into()));
        }
    };
    result.verdict = match (&t.expected, checked) {
        (_, Err((v, m))) => {
            result.message = Some(m);
            v
        }
        (Expected::Nothing, Ok(())) => TestVerdict::Ok,
        (_, Ok(())) => TestVerdict::Accepted,
    };
    result.run = Some(run);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_time_kills_later_but_holds_to_the_limit() {
        let rules = Rules { extra_time: Duration::from_millis(500), ..Rules::default() };
        let t = Limits { cpu_time: Duration::from_secs(1), wall_time: Duration::from_secs(3), ..Limits::default() };
        let (held, killed) = limits(&t, &rules);
        assert_eq!((held.cpu_time, killed.cpu_time), (Duration::from_secs(1), Duration::from_millis(1500)));
        assert_eq!(killed.wall_time, Duration::from_millis(3500));
        let mut run = RunOutcome {
            status: Status::Ok,
            exceeded: None,
            exit_code: Some(0),
            signal: None,
            message: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_time: Duration::from_millis(1200),
            wall_time: Duration::from_millis(1300),
            memory_peak_bytes: 0,
            files: Vec::new(),
            files_truncated: false,
        };
        hold(&mut run, &held);
        assert_eq!((run.status, run.exceeded), (Status::TimeLimit, Some(Exceeded::CpuTime)));
        assert_eq!(run.message.as_deref(), Some("cpu time limit of 1000 ms exceeded"));
        assert_eq!(run.cpu_time, Duration::from_millis(1200), "the true time is kept");
        run.status = Status::Ok;
        run.cpu_time = Duration::from_millis(900);
        hold(&mut run, &held);
        assert_eq!(run.status, Status::Ok);
    }

    #[test]
    fn wall_time_can_be_the_limit_that_counts() {
        let rules = Rules { time_by: TimeBy::Wall, ..Rules::default() };
        let t = Limits { cpu_time: Duration::from_secs(1), wall_time: Duration::from_secs(2), ..Limits::default() };
        let (held, killed) = limits(&t, &rules);
        assert_eq!(held.cpu_time, Duration::from_secs(2), "the CPU limit never decides first");
        assert_eq!(killed, held);
        let two = Limits { cpu_millicores: 1500, ..t };
        assert_eq!(limits(&two, &rules).0.cpu_time, Duration::from_secs(4), "two cores' worth");
        assert_eq!(counted((Duration::from_secs(1), Duration::from_secs(2)), TimeBy::Wall), Duration::from_secs(2));
    }
}
