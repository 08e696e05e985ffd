//! Judge mode: one program, checked and compiled once, then run against many tests, each
//! in a fresh sandbox with its own stdin, arguments and limits, its output compared with
//! the expected one by a [`Checker`]. Tests may run in parallel (as many at once as the
//! caller has run slots for); results keep the tests' order.
//!
//! A program refused before it runs (syntax or compile error) marks every test with that
//! verdict. So does a program of an interpreted language whose failed test turns out to
//! be a syntax error: it never parsed, so no test really ran.

pub mod checker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

pub use checker::Checker;

use crate::diagnostics::RuntimeError;
use crate::lang::Language;
use crate::limit::Limits;
use crate::pipeline::{self, CacheRef, Executor, Invocation, Outcome, Prepare, Prepared, Source, Verdict};
use crate::run::{Access, Cancel, RunError, RunOutcome, Status};

/// What a test expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Nothing: the test passes when the program ends well (`ok`).
    Nothing,
    /// This output.
    Output(Vec<u8>),
    /// This value returned by the function (function harness).
    Value(Value),
}

/// One test.
#[derive(Debug, Clone)]
pub struct Test {
    /// The program's stdin (for the function harness: the arguments, as the harness encodes
    /// them).
    pub stdin: Vec<u8>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// What it should print or return.
    pub expected: Expected,
}

/// Splits a harness run's stdout into the user's own output and the returned value (see
/// `harness::split_output`): the judge is handed it so it does not depend on the harness.
pub type SplitOutput = fn(&[u8]) -> (Vec<u8>, Option<Result<Value, String>>);

/// A judge request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The program.
    pub source: Source,
    /// The tests, in order.
    pub tests: Vec<Test>,
    /// How outputs are compared.
    pub checker: Checker,
    /// Stop at the first test that does not pass (the rest are `skipped`).
    pub stop_on_failure: bool,
    /// Output or function harness (with the harness's output splitter).
    pub function: Option<SplitOutput>,
    /// Kills whatever runs.
    pub cancel: Option<Cancel>,
    /// The compile cache.
    pub cache: Option<CacheRef>,
    /// What each test's result keeps once it is checked.
    pub keep: Keep,
    /// What each test's run may reach: network, host mounts.
    pub access: Access,
}

/// What a test's result keeps once checked, so a request of many tests with large
/// outputs holds no more than its response can show.
#[derive(Debug, Clone)]
pub struct Keep {
    /// Bytes of stdout, and of stderr, per test (the rest is dropped, `*_truncated` set).
    pub output: usize,
    /// The files out, when asked for.
    pub files: Option<FileKeep>,
}

impl Default for Keep {
    fn default() -> Self {
        Keep { output: usize::MAX, files: None }
    }
}

/// Which files a test keeps, and how many in all tests together (first come, first kept).
#[derive(Clone)]
pub struct FileKeep {
    /// Whether a path (relative to `/sandbox`) is wanted.
    pub wanted: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Files kept, all tests together.
    pub count: usize,
    /// Bytes kept, all tests together.
    pub bytes: u64,
}

impl std::fmt::Debug for FileKeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeep").field("count", &self.count).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

/// A test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestVerdict {
    /// It ended well and its output matched.
    Accepted,
    /// It ended well, and its output did not match.
    WrongAnswer,
    /// It ended well and expected nothing.
    Ok,
    /// It did not end well: how (never `Status::Ok`; a program killed by a signal no limit
    /// explains is a `RuntimeError`, its signal in the run).
    Run(Status),
    /// The program never parsed.
    SyntaxError,
    /// The program did not compile.
    CompileError,
    /// Not run: an earlier test failed and the request stops at the first failure.
    Skipped,
}

impl TestVerdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TestVerdict::Accepted => "accepted",
            TestVerdict::WrongAnswer => "wrong_answer",
            TestVerdict::Ok => "ok",
            TestVerdict::Run(s) => s.as_str(),
            TestVerdict::SyntaxError => "syntax_error",
            TestVerdict::CompileError => "compile_error",
            TestVerdict::Skipped => "skipped",
        }
    }

    /// Whether the test passed.
    pub fn passed(self) -> bool {
        matches!(self, TestVerdict::Accepted | TestVerdict::Ok)
    }
}

/// One test's result.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The verdict.
    pub verdict: TestVerdict,
    /// A sentence: how the output differs, or what the run hit.
    pub message: Option<String>,
    /// The run (None when it did not run). For the function harness its stdout is the
    /// user's own output, without the harness's result line.
    pub run: Option<RunOutcome>,
    /// The uncaught error, when it died of one.
    pub error: Option<RuntimeError>,
    /// What the function returned (function harness).
    pub returned: Option<Value>,
}

impl TestResult {
    fn without_run(verdict: TestVerdict, message: Option<String>) -> Self {
        TestResult { verdict, message, run: None, error: None, returned: None }
    }
}

/// A judged program.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The stages before the tests (syntax, compile, diagnostics); its verdict is the
    /// program's when it was refused, else `ok`.
    pub outcome: Outcome,
    /// The tests' results, in the tests' order.
    pub tests: Vec<TestResult>,
}

impl Judged {
    /// The overall verdict's wire name: `accepted` when every test passed, else the
    /// first failed test's verdict (or the program's, when it never ran).
    pub fn status(&self) -> &'static str {
        if self.outcome.verdict != Verdict::Run(Status::Ok) {
            return self.outcome.verdict.as_str();
        }
        match self.tests.iter().find(|t| !t.verdict.passed() && t.verdict != TestVerdict::Skipped) {
            Some(t) => t.verdict.as_str(),
            None => "accepted",
        }
    }

    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.verdict.passed()).count()
    }
}

/// Judges `req` in `lang`. Once the program is ready, `workers(n)` is asked how many tests
/// may run at once (at most `n`, the tests there are); the caller takes its run slots then,
/// not while the compiler runs. `Err` only when nothing could be attempted.
pub fn judge(
    exec: &dyn Executor,
    lang: &Language,
    req: Request,
    workers: &mut dyn FnMut(usize) -> usize,
) -> Result<Judged, RunError> {
    let prepared = match pipeline::prepare(exec, lang, req.source.clone(), req.cancel.clone(), req.cache.as_ref())? {
        Prepare::Ready(p) => p,
        Prepare::Refused(outcome) => return Ok(refused(outcome, req.tests.len())),
    };
    let workers = workers(req.tests.len());
    let tests = run_tests(exec, lang, &prepared, &req, workers)?;
    // a program that never parsed fails every test: one that passed any did parse
    let none_passed = !tests.iter().any(|t| t.verdict.passed());
    if none_passed && tests.iter().any(|t| t.verdict == TestVerdict::Run(Status::RuntimeError)) {
        if let Some(c) = pipeline::syntax_after_failure(exec, lang, &prepared, req.cancel.clone())? {
            if c.refused {
                let outcome = pipeline::refused_after_failure(prepared.outcome.clone(), c);
                return Ok(refused(outcome, req.tests.len()));
            }
        }
    }
    Ok(Judged { outcome: prepared.outcome.clone(), tests })
}

/// Every test marked with the verdict of a program that never ran.
fn refused(outcome: Outcome, n: usize) -> Judged {
    let verdict = match outcome.verdict {
        Verdict::SyntaxError => TestVerdict::SyntaxError,
        Verdict::CompileError => TestVerdict::CompileError,
        Verdict::Run(s) => TestVerdict::Run(s),
    };
    let message = outcome.message.clone();
    Judged { outcome, tests: vec![TestResult::without_run(verdict, message); n] }
}

fn run_tests(
    exec: &dyn Executor,
    lang: &Language,
    p: &Prepared,
    req: &Request,
    workers: usize,
) -> Result<Vec<TestResult>, RunError> {
    let n = req.tests.len();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let done = Mutex::new(Finished {
        results: (0..n).map(|_| None).collect(),
        frontier: 0,
        left: req.keep.files.as_ref().map_or((0, 0), |f| (f.count, f.bytes)),
    });
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= n {
                break;
            }
            let result = if req.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                Ok(TestResult::without_run(
                    TestVerdict::Run(Status::InternalError),
                    Some("not run: the request was cancelled".into()),
                ))
            } else if stop.load(Ordering::SeqCst) {
                Ok(TestResult::without_run(
                    TestVerdict::Skipped,
                    Some("not run: an earlier test failed (stop_on_first_failure)".into()),
                ))
            } else {
                one(exec, lang, p, req, &req.tests[i]).map(|mut r| {
                    trim(&mut r, &req.keep);
                    r
                })
            };
            let failed = result.as_ref().map_or(true, |r| !r.verdict.passed());
            if failed && (req.stop_on_failure || result.is_err()) {
                stop.store(true, Ordering::SeqCst);
            }
            done.lock().unwrap_or_else(PoisonError::into_inner).store(i, result);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers.clamp(1, n.max(1)) {
            s.spawn(work);
        }
        work();
    });
    let mut out = Vec::with_capacity(n);
    for r in done.into_inner().unwrap_or_else(PoisonError::into_inner).results {
        match r {
            Some(Ok(t)) => out.push(t),
            // an error that stopped the others is the answer, not the tests it made skip
            Some(Err(e)) => return Err(e),
            None => out.push(never_ran()),
        }
    }
    Ok(out)
}

/// The tests' results as they come in, and the files they may still keep: those are
/// spent in the tests' order (whichever finishes first), so the same request keeps the
/// same files.
struct Finished {
    results: Vec<Option<Result<TestResult, RunError>>>,
    /// Every test before it has finished and spent its share.
    frontier: usize,
    /// Files and bytes left for the tests from the frontier on.
    left: (usize, u64),
}

impl Finished {
    fn store(&mut self, i: usize, result: Result<TestResult, RunError>) {
        self.results[i] = Some(result);
        while let Some(Some(r)) = self.results.get_mut(self.frontier) {
            if let Ok(t) = r {
                spend(t, &mut self.left);
            }
            self.frontier += 1;
        }
    }
}

/// Trims a checked test's result to what it may keep: its output, and the wanted files
/// within the caps of all tests (what is left of them is settled in test order, `spend`).
fn trim(r: &mut TestResult, keep: &Keep) {
    let Some(run) = r.run.as_mut() else { return };
    for (out, truncated) in [(&mut run.stdout, &mut run.stdout_truncated), (&mut run.stderr, &mut run.stderr_truncated)]
    {
        if out.len() > keep.output {
            out.truncate(keep.output);
            out.shrink_to_fit();
            *truncated = true;
        }
    }
    let Some(files) = &keep.files else { return };
    let mut left = (files.count, files.bytes);
    run.files.retain(|f| (files.wanted)(&f.path));
    keep_within(&mut run.files, &mut run.files_truncated, &mut left);
}

/// A test's files within what all tests may still keep.
fn spend(r: &mut TestResult, left: &mut (usize, u64)) {
    if let Some(run) = r.run.as_mut() {
        keep_within(&mut run.files, &mut run.files_truncated, left);
    }
}

fn keep_within(files: &mut Vec<crate::run::OutputFile>, truncated: &mut bool, left: &mut (usize, u64)) {
    let before = files.len();
    files.retain(|f| {
        let size = match &f.content {
            crate::run::FileContent::File { bytes, .. } => bytes.len() as u64,
            crate::run::FileContent::Symlink(t) => t.len() as u64,
        };
        if left.0 == 0 || size > left.1 {
            *truncated = true;
            return false;
        }
        left.0 -= 1;
        left.1 -= size;
        true
    });
    if files.len() < before {
        files.shrink_to_fit();
    }
}

fn never_ran() -> TestResult {
    TestResult::without_run(TestVerdict::Run(Status::InternalError), Some("the test was never run".into()))
}

/// Runs one test and checks its output.
fn one(exec: &dyn Executor, lang: &Language, p: &Prepared, req: &Request, t: &Test) -> Result<TestResult, RunError> {
    let inv = Invocation {
        stdin: t.stdin.clone(),
        args: t.args.clone(),
        limits: t.limits.clone(),
        cancel: req.cancel.clone(),
        collect_files: req.keep.files.is_some(),
        access: req.access.clone(),
    };
    let ran = pipeline::run(exec, lang, p, inv)?;
    let mut run = ran.run;
    let mut result =
        TestResult { verdict: TestVerdict::Ok, message: None, run: None, error: ran.error, returned: None };
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
    let checked = match (&t.expected, answer) {
        (_, Some(None)) => Err((
            TestVerdict::Run(Status::RuntimeError),
            "the program ended before the function returned (did it exit?)".to_owned(),
        )),
        (_, Some(Some(Err(e)))) => Err((TestVerdict::WrongAnswer, format!("the result is not JSON: {e}"))),
        (Expected::Value(want), Some(Some(Ok(got)))) => {
            let r = req.checker.check_json(want, &got).map_err(|m| (TestVerdict::WrongAnswer, m));
            result.returned = Some(got);
            r
        }
        (Expected::Output(want), None) => {
            req.checker.check(want, &run.stdout).map_err(|m| (TestVerdict::WrongAnswer, m))
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
mod tests;
