//! Judge mode: one program, checked and compiled once, then run against many tests, each
//! in a fresh sandbox with its own stdin, arguments and limits, its output compared with
//! the expected one by a [`Checker`]. Tests may run in parallel (as many at once as the
//! caller has run slots for); results keep the tests' order.
//!
//! A program refused before it runs (syntax or compile error) marks every test with that
//! verdict. So does a program of an interpreted language whose failed test turns out to
//! be a syntax error: it never parsed, so no test really ran.
//!
//! Contest rules ([`Rules`]) add a checker program of the problem's own (`program`), an
//! interactor run at once with the program and cross-connected with it (`interact`),
//! batches of tests with points (`batch`), and repeated runs and time rules (`trial`).

pub mod batch;
pub mod checker;
mod interact;
mod keep;
pub mod program;
mod schedule;
mod trial;

use std::time::Duration;

use serde_json::Value;

pub use batch::{Batch, BatchResult};
pub use checker::Checker;
pub use keep::encoded_len;
pub use program::{ProgramChecker, Protocol};

use crate::diagnostics::RuntimeError;
use crate::lang::Language;
use crate::limit::Limits;
use crate::pipeline::{self, CacheRef, Executor, Outcome, Prepare, Source, Verdict};
use crate::run::{Access, Cancel, RunError, RunOutcome, Status, Transcript};

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
    /// Its name, if it has one (a package's tests: `secret/01`).
    pub name: Option<String>,
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
    /// Contest rules: a checker program, batches, repeated runs, time rules.
    pub rules: Rules,
}

/// How a contest judges, beyond comparing outputs.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The problem's own checker (instead of `checker`).
    pub program: Option<Box<ProgramChecker>>,
    /// The problem's interactor: it runs at once with the program, each one's stdout the
    /// other's stdin, and decides each test (instead of any checker). A test's `stdin` is
    /// its input file and the expected output its answer file; the program gets neither.
    pub interactor: Option<Box<ProgramChecker>>,
    /// Bytes of each interactive test's transcript kept (0: none).
    pub transcript_bytes: usize,
    /// Programs that must accept each test's input before the program runs on it
    /// ([`Protocol::KattisInput`]); one that does not makes the test a `judge_error`.
    pub input_validators: Vec<ProgramChecker>,
    /// The built-in checkers (not `exact`) ignore the case of ASCII letters.
    pub ignore_case: bool,
    /// Batches of tests with points (validated by [`batch::order`]).
    pub batches: Vec<Batch>,
    /// Runs of each test (0 and 1: once); the run of median time is reported.
    pub runs: u32,
    /// Extra time past the limits before the program is killed: a program that ends
    /// within it is still over its limit, but its true time is known.
    pub extra_time: Duration,
    /// Which time decides the limit and the median.
    pub time_by: TimeBy,
}

/// The time that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeBy {
    /// CPU time (the CPU limit decides; the wall limit only catches a program that waits).
    #[default]
    Cpu,
    /// Wall-clock time (the CPU limit is raised to the wall limit).
    Wall,
}

/// What a test's result keeps once checked, so a request of many tests with large
/// outputs holds no more than its response can show.
#[derive(Debug, Clone)]
pub struct Keep {
    /// Bytes of stdout, and of stderr, per test (the rest is dropped, `*_truncated` set),
    /// and of a function's result as JSON (a larger one is dropped, `returned_truncated`).
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
    /// A checker program said the output's format is wrong.
    PresentationError,
    /// A checker program gave part of the test's points.
    Partial,
    /// The problem's checker failed (crashed, timed out, exited with "fail" or nonsense):
    /// not the contestant's fault.
    JudgeError,
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
            TestVerdict::PresentationError => "presentation_error",
            TestVerdict::Partial => "partial",
            TestVerdict::JudgeError => "judge_error",
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
    /// What the function returned (function harness), when it is within
    /// [`Keep::output`] as JSON (the checker compared it whole).
    pub returned: Option<Value>,
    /// The function returned a value too large to keep.
    pub returned_truncated: bool,
    /// The fraction of the test's worth a checker program gave (with one).
    pub points: Option<f64>,
    /// The checker program's run (with one).
    pub checker: Option<RunOutcome>,
    /// Each run's CPU and wall time, when the test ran more than once.
    pub times: Vec<(Duration, Duration)>,
    /// The test's name, if it has one.
    pub name: Option<String>,
    /// What passed between the program and the interactor (with one, when asked for):
    /// the contestant's side is `Side::A`.
    pub transcript: Option<Transcript>,
}

impl TestResult {
    fn without_run(verdict: TestVerdict, message: Option<String>) -> Self {
        TestResult {
            verdict,
            message,
            run: None,
            error: None,
            returned: None,
            returned_truncated: false,
            points: None,
            checker: None,
            times: Vec::new(),
            name: None,
            transcript: None,
        }
    }

    /// The fraction of its worth the test earned: 1 passed, a checker's for `partial`, else 0.
    pub fn fraction(&self) -> f64 {
        match self.verdict {
            v if v.passed() => 1.0,
            TestVerdict::Partial => self.points.unwrap_or(0.0),
            _ => 0.0,
        }
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
    /// The checker program's stages (its compile), with one.
    pub checker: Option<Box<Outcome>>,
    /// Each batch's result, in the request's order (none without batches).
    pub batches: Vec<BatchResult>,
    /// `checker` is the problem's interactor.
    pub interactive: bool,
}

impl Judged {
    /// The overall verdict's wire name: `judge_error` when the problem's checker failed
    /// anywhere, `accepted` when every test passed, else the first failed test's verdict
    /// (or the program's, when it never ran).
    pub fn status(&self) -> &'static str {
        if self.checker.as_ref().is_some_and(|c| c.verdict != Verdict::Run(Status::Ok))
            || self.tests.iter().any(|t| t.verdict == TestVerdict::JudgeError)
        {
            return TestVerdict::JudgeError.as_str();
        }
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

    /// The score and the most there is, with batches.
    pub fn score(&self) -> Option<(f64, f64)> {
        if self.batches.is_empty() {
            return None;
        }
        Some((self.batches.iter().map(|b| b.score).sum(), self.batches.iter().map(|b| b.points).sum()))
    }
}

/// Judges `req` in `lang`. Once the program (and its checker) is ready, `workers(n)` is
/// asked how many tests may run at once (at most `n`, the tests there are; with an
/// interactor, twice the tests, and half the answer run at once: each test takes two
/// sandboxes); the caller takes its run slots then, not while the compiler runs. `Err` only when nothing could be
/// attempted.
pub fn judge(
    exec: &dyn Executor,
    lang: &Language,
    req: Request,
    workers: &mut dyn FnMut(usize) -> usize,
) -> Result<Judged, RunError> {
    let mut judged = judge_tests(exec, lang, &req, workers)?;
    judged.interactive = req.rules.interactor.is_some();
    judged.batches = batch::results(&req.rules.batches, &judged.tests);
    for (r, t) in judged.tests.iter_mut().zip(&req.tests) {
        r.name.clone_from(&t.name);
    }
    Ok(judged)
}

fn judge_tests(
    exec: &dyn Executor,
    lang: &Language,
    req: &Request,
    workers: &mut dyn FnMut(usize) -> usize,
) -> Result<Judged, RunError> {
    let n = req.tests.len();
    let (spec, what) = match (&req.rules.interactor, &req.rules.program) {
        (Some(i), _) => (Some(i), "interactor"),
        (None, p) => (p.as_ref(), "checker"),
    };
    let checker = match spec {
        Some(spec) => match program::prepare(exec, spec, req.cancel.clone())? {
            Ok(ready) => Some(ready),
            Err(outcome) => return Ok(broken_checker(outcome, n, what)),
        },
        None => None,
    };
    let mut validators = Vec::with_capacity(req.rules.input_validators.len());
    for spec in &req.rules.input_validators {
        match program::prepare(exec, spec, req.cancel.clone())? {
            Ok(ready) => validators.push(ready),
            Err(outcome) => return Ok(broken_checker(outcome, n, "input validator")),
        }
    }
    let prepared = match pipeline::prepare(exec, lang, req.source.clone(), req.cancel.clone(), req.cache.as_ref())? {
        Prepare::Ready(p) => p,
        Prepare::Refused(outcome) => return Ok(refused(outcome, n, checker.map(|c| Box::new(c.outcome().clone())))),
    };
    let interactive = req.rules.interactor.is_some();
    // an interactive test runs two sandboxes at once: ask for both's slots
    let workers = if interactive { (workers(2 * n) / 2).max(1) } else { workers(n) };
    let ctx = schedule::Ctx {
        exec,
        lang,
        program: &prepared,
        checker: checker.as_ref().filter(|_| !interactive),
        interactor: checker.as_ref().filter(|_| interactive),
        validators: &validators,
        req,
        workers,
    };
    let tests = schedule::run(&ctx)?;
    let checker = checker.map(|c| Box::new(c.outcome().clone()));
    // a program that never parsed fails every test: one that passed any did parse
    let none_passed = !tests.iter().any(|t| t.verdict.passed());
    if none_passed
        && tests.iter().any(|t| t.verdict == TestVerdict::Run(Status::RuntimeError))
        && let Some(c) = pipeline::syntax_after_failure(exec, lang, &prepared, req.cancel.clone())?
        && c.refused
    {
        let outcome = pipeline::refused_after_failure(prepared.outcome.clone(), c);
        return Ok(refused(outcome, n, checker));
    }
    Ok(Judged { outcome: prepared.outcome.clone(), tests, checker, batches: Vec::new(), interactive })
}

/// Every test marked with the verdict of a program that never ran.
fn refused(outcome: Outcome, n: usize, checker: Option<Box<Outcome>>) -> Judged {
    let verdict = match outcome.verdict {
        Verdict::SyntaxError => TestVerdict::SyntaxError,
        Verdict::CompileError => TestVerdict::CompileError,
        Verdict::Run(s) => TestVerdict::Run(s),
    };
    let message = outcome.message.clone();
    Judged {
        outcome,
        tests: vec![TestResult::without_run(verdict, message); n],
        checker,
        batches: Vec::new(),
        interactive: false,
    }
}

/// Every test a `judge_error`: the checker (or an input validator) did not compile; the
/// program was not tried.
fn broken_checker(checker: Outcome, n: usize, what: &str) -> Judged {
    let why = checker.message.clone().unwrap_or_else(|| checker.verdict.as_str().to_owned());
    let message = Some(format!("the {what} did not compile ({}): {why}", checker.verdict.as_str()));
    let outcome = Outcome {
        verdict: Verdict::Run(Status::Ok),
        message: None,
        syntax: None,
        compile: None,
        run: None,
        diagnostics: Vec::new(),
        error: None,
        compile_cache: None,
    };
    let tests = vec![TestResult::without_run(TestVerdict::JudgeError, message); n];
    Judged { outcome, tests, checker: Some(Box::new(checker)), batches: Vec::new(), interactive: false }
}

#[cfg(test)]
mod tests;
