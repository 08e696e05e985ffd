//! Program checkers: a problem's own checker, in any language, compiled once (through the
//! compile cache, as any program) and run once per test in a sandbox of its own, with the
//! test's input, the expected answer and the contestant's output as files. What it says
//! becomes the test's verdict; a checker that fails in any way is a `judge_error`, never
//! the contestant's fault.
//!
//! Two conventions: testlib's (arguments: input, contestant's output, answer; exit 0
//! accepted, 1 wrong answer, 2 presentation error, 3 failure, 7 partial points with the
//! fraction as the first number it prints) and Kattis' output validators (arguments: input,
//! answer, feedback directory, then the problem's flags; the contestant's output on stdin;
//! exit 42 accepted, 43 wrong answer; `judgemessage.txt` in the feedback directory).

use std::time::Duration;

use super::TestVerdict;
use crate::diagnostics::RuntimeError;
use crate::lang::Language;
use crate::limit::Limits;
use crate::pipeline::{self, CacheRef, Executor, Invocation, Outcome, Prepare, Prepared, Source};
use crate::run::{Cancel, FileContent, InputFile, Plug, RunError, RunOutcome, Status};

/// testlib 0.9.45 (see `rootfs/judge/README.md`): put beside a C++ checker's sources
/// unless it brings its own.
pub const TESTLIB_H: &[u8] = include_bytes!("../../rootfs/judge/testlib.h");

/// Where a checker finds the test's files, in its `/sandbox`.
const DIR: &str = ".judge";
/// How much of a checker's message a test keeps.
const MESSAGE: usize = 1024;
/// The least compile time a checker gets: testlib alone takes seconds to compile.
const COMPILE_TIME: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(120));
/// Bytes of a checker's stdout and stderr a test keeps.
const SHOWN: usize = 4096;

/// How a checker is called and what its exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// testlib's.
    #[default]
    Testlib,
    /// Kattis' output validators'.
    Kattis,
    /// Kattis' input validators': the test's input on stdin, the flags as arguments;
    /// exit 42 accepts it, 43 rejects it.
    KattisInput,
}

/// A checker program.
#[derive(Debug, Clone)]
pub struct ProgramChecker {
    /// Its language.
    pub lang: Language,
    /// Its source.
    pub source: Source,
    /// How it is called.
    pub protocol: Protocol,
    /// Its limits for each test (its files' size is added to the memory and disk).
    pub limits: Limits,
    /// More arguments after the protocol's (Kattis: the problem's validator flags).
    pub args: Vec<String>,
    /// The compile cache for its language.
    pub cache: Option<CacheRef>,
}

/// A compiled checker.
#[derive(Debug)]
pub struct Ready<'a> {
    spec: &'a ProgramChecker,
    prepared: Prepared,
}

/// What a checker made of one test.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The verdict (`accepted`, `wrong_answer`, `presentation_error`, `partial` or
    /// `judge_error`).
    pub verdict: TestVerdict,
    /// The fraction of the test's worth it gave (`partial`, and 1 or 0 otherwise).
    pub points: f64,
    /// Its message, or what went wrong with it.
    pub message: Option<String>,
    /// Its run, its output cut to a few KiB.
    pub run: RunOutcome,
}

/// Compiles the checker (or takes it from the cache); `Err(outcome)` when it did not
/// compile.
pub fn prepare<'a>(
    exec: &dyn Executor,
    spec: &'a ProgramChecker,
    cancel: Option<Cancel>,
) -> Result<Result<Ready<'a>, Outcome>, RunError> {
    let source = with_testlib(&spec.lang, spec.source.clone());
    let p = pipeline::prepare_with(exec, &spec.lang, source, cancel, spec.cache.as_ref(), Some(COMPILE_TIME))?;
    Ok(match p {
        Prepare::Ready(prepared) => Ok(Ready { spec, prepared }),
        Prepare::Refused(outcome) => Err(outcome),
    })
}

impl Ready<'_> {
    /// The checker's stages (its compile).
    pub fn outcome(&self) -> &Outcome {
        &self.prepared.outcome
    }

    /// The limits it runs within.
    pub fn limits(&self) -> &Limits {
        &self.spec.limits
    }

    /// Runs the checker on one test.
    pub fn check(
        &self,
        exec: &dyn Executor,
        input: &[u8],
        answer: &[u8],
        output: &[u8],
        cancel: Option<Cancel>,
    ) -> Result<Checked, RunError> {
        let inv = self.invocation(input, answer, Some(output), &self.spec.limits, cancel);
        let ran = pipeline::run(exec, &self.spec.lang, &self.prepared, inv)?;
        Ok(decide(self.spec.protocol, ran.run, ran.error.as_ref()))
    }

    /// Runs the program as the interactor of one test, within `limits`: its stdin and
    /// stdout go to `plug` (the contestant's, through the relay), the test's input and
    /// answer are its files. testlib's interactors get the input, an output file of their
    /// own and the answer as arguments; Kattis' the input, the answer and the feedback
    /// directory, then the flags.
    pub fn interact(
        &self,
        exec: &dyn Executor,
        input: &[u8],
        answer: &[u8],
        limits: &Limits,
        plug: Plug,
        cancel: Option<Cancel>,
    ) -> Result<Checked, RunError> {
        let mut inv = self.invocation(input, answer, None, limits, cancel);
        inv.plug = Some(plug);
        let ran = pipeline::run(exec, &self.spec.lang, &self.prepared, inv)?;
        Ok(decide_as("interactor", self.spec.protocol, ran.run, ran.error.as_ref()))
    }

    /// The checker's run on one test; `output` None: it is an interactor (no output file,
    /// nothing on stdin).
    fn invocation(
        &self,
        input: &[u8],
        answer: &[u8],
        output: Option<&[u8]>,
        limits: &Limits,
        cancel: Option<Cancel>,
    ) -> Invocation {
        let spec = self.spec;
        let file = |name: &str, contents: &[u8]| InputFile {
            path: format!("{DIR}/{name}"),
            contents: contents.to_vec(),
            executable: false,
        };
        let path = |name: &str| format!("/sandbox/{DIR}/{name}");
        let (mut files, mut args, stdin) = match (spec.protocol, output) {
            (Protocol::Testlib, Some(output)) => (
                vec![file("input", input), file("output", output), file("answer", answer)],
                vec![path("input"), path("output"), path("answer")],
                Vec::new(),
            ),
            // the interactor writes its own output file (testlib's `tout`)
            (Protocol::Testlib, None) => (
                vec![file("input", input), file("answer", answer)],
                vec![path("input"), path("output"), path("answer")],
                Vec::new(),
            ),
            (Protocol::Kattis, output) => (
                vec![file("input", input), file("answer", answer), file("feedback/.keep", b"")],
                vec![path("input"), path("answer"), format!("{}/", path("feedback"))],
                output.unwrap_or_default().to_vec(),
            ),
            (Protocol::KattisInput, _) => (Vec::new(), Vec::new(), input.to_vec()),
        };
        args.extend(spec.args.iter().cloned());
        let size: u64 = files.iter().map(|f| f.contents.len() as u64).sum::<u64>() + stdin.len() as u64;
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.saturating_add(size);
        limits.disk_bytes = limits.disk_bytes.max(size.saturating_add(size / 4).saturating_add(16 << 20));
        files.shrink_to_fit();
        Invocation {
            stdin,
            args,
            limits,
            cancel,
            collect_files: spec.protocol == Protocol::Kattis,
            access: Default::default(),
            files,
            live: None,
            plug: None,
        }
    }
}

/// The checker's files with testlib beside a C++ checker's sources, unless it has its own.
fn with_testlib(lang: &Language, source: Source) -> Source {
    if !lang.sources.iter().any(|ext| ext == ".cpp") {
        return source;
    }
    let mut files = match source {
        Source::Files(files) => files,
        Source::Code(code) => {
            vec![InputFile { path: lang.main_file.clone(), contents: code.into_bytes(), executable: false }]
        }
    };
    if !files.iter().any(|f| f.path == "testlib.h") {
        files.push(InputFile { path: "testlib.h".into(), contents: TESTLIB_H.to_vec(), executable: false });
    }
    Source::Files(files)
}

/// The verdict a checker's run gives. A checker that died of an uncaught error (a Python
/// traceback exits 1, which would otherwise read as "wrong answer") crashed.
fn decide(protocol: Protocol, run: RunOutcome, error: Option<&RuntimeError>) -> Checked {
    decide_as("checker", protocol, run, error)
}

/// [`decide`] for a program in another role (`interactor`), which its messages name.
fn decide_as(role: &str, protocol: Protocol, mut run: RunOutcome, error: Option<&RuntimeError>) -> Checked {
    let feedback = feedback(&mut run);
    let said = message(&run, feedback.as_deref());
    let judge_error = |why: String, run: RunOutcome| Checked {
        verdict: TestVerdict::JudgeError,
        points: 0.0,
        message: Some(match &said {
            Some(m) => format!("{why}: {m}"),
            None => why,
        }),
        run,
    };
    if !matches!(run.status, Status::Ok | Status::RuntimeError) {
        let what = run.message.clone().unwrap_or_else(|| run.status.as_str().to_owned());
        return judge_error(format!("the {role} failed ({what})"), shorten(run));
    }
    if let Some(e) = error {
        return judge_error(format!("the {role} crashed ({}: {})", e.kind, e.message), shorten(run));
    }
    let code = run.exit_code.unwrap_or(-1);
    let verdict = |verdict, points| Checked { verdict, points, message: said.clone(), run: shorten(run.clone()) };
    match (protocol, code) {
        (Protocol::Testlib, 0) | (Protocol::Kattis | Protocol::KattisInput, 42) => verdict(TestVerdict::Accepted, 1.0),
        (Protocol::KattisInput, 43) => {
            judge_error("the input validator rejected the test's input".into(), shorten(run))
        }
        (Protocol::Testlib, 1) | (Protocol::Kattis, 43) => verdict(TestVerdict::WrongAnswer, 0.0),
        // 4 is testlib's "dirt" (extra output) and 8 its unexpected end of file: both
        // presentation errors as testlib itself reports them
        (Protocol::Testlib, 2 | 4 | 8) => verdict(TestVerdict::PresentationError, 0.0),
        (Protocol::Testlib, 3) => {
            judge_error(format!("the {role} failed (exit code 3: testlib's _fail)"), shorten(run))
        }
        (Protocol::Testlib, 7) => match fraction(&run) {
            Some(f) if f >= 1.0 => verdict(TestVerdict::Accepted, 1.0),
            Some(f) => verdict(TestVerdict::Partial, f),
            None => judge_error(
                format!(
                    "the {role} exited with 7 (partial points) without a fraction from 0 to 1 as the first number it printed"
                ),
                shorten(run),
            ),
        },
        (_, c) => judge_error(format!("the {role} exited with code {c}, which means no verdict"), shorten(run)),
    }
}

/// The fraction of a partial verdict: the first token of its stdout, else of its stderr
/// (where testlib's `quitp` writes `points 0.5 …`), a number from 0 to 1.
fn fraction(run: &RunOutcome) -> Option<f64> {
    let first = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        let mut tokens = text.split_whitespace().filter(|t| *t != "points");
        tokens.next().map(str::to_owned)
    };
    let token = first(&run.stdout).or_else(|| first(&run.stderr))?;
    let f: f64 = token.parse().ok()?;
    (f.is_finite() && (0.0..=1.0).contains(&f)).then_some(f)
}

/// A Kattis validator's `judgemessage.txt`, taken out of the collected files.
fn feedback(run: &mut RunOutcome) -> Option<String> {
    let files = std::mem::take(&mut run.files);
    files.into_iter().find_map(|f| match f.content {
        FileContent::File { bytes, .. } if f.path == format!("{DIR}/feedback/judgemessage.txt") => {
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    })
}

/// What the checker said: its feedback file, else its stderr, else its stdout (testlib
/// writes to stderr), trimmed to a first kilobyte.
fn message(run: &RunOutcome, feedback: Option<&str>) -> Option<String> {
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let text = [feedback.unwrap_or(""), &stderr, &stdout].into_iter().map(str::trim).find(|t| !t.is_empty())?;
    let cut = (0..=text.len().min(MESSAGE)).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let mut m = text[..cut].to_owned();
    if cut < text.len() {
        m.push('…');
    }
    Some(m)
}

/// The checker's run with its output cut to what a response shows of it.
fn shorten(mut run: RunOutcome) -> RunOutcome {
    for (out, truncated) in [(&mut run.stdout, &mut run.stdout_truncated), (&mut run.stderr, &mut run.stderr_truncated)]
    {
        if out.len() > SHOWN {
            out.truncate(SHOWN);
            *truncated = true;
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, stdout: &str, stderr: &str) -> RunOutcome {
        RunOutcome {
            status: if code == 0 { Status::Ok } else { Status::RuntimeError },
            exceeded: None,
            exit_code: Some(code),
            signal: None,
            message: None,
            stdout: stdout.into(),
            stderr: stderr.into(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_time: Duration::ZERO,
            wall_time: Duration::ZERO,
            memory_peak_bytes: 0,
            files: Vec::new(),
            files_truncated: false,
        }
    }

    #[test]
    fn testlib_exit_codes_are_verdicts() {
        let v = |code, out: &str, err: &str| decide(Protocol::Testlib, exited(code, out, err), None);
        assert_eq!(v(0, "", "ok 3 numbers").verdict, TestVerdict::Accepted);
        let wa = v(1, "", "wrong answer 1st numbers differ - expected: '3', found: '4'");
        assert_eq!(wa.verdict, TestVerdict::WrongAnswer);
        assert_eq!(wa.message.as_deref(), Some("wrong answer 1st numbers differ - expected: '3', found: '4'"));
        assert_eq!(v(2, "", "").verdict, TestVerdict::PresentationError);
        assert_eq!(v(4, "", "").verdict, TestVerdict::PresentationError);
        let fail = v(3, "", "FAIL answer is broken");
        assert_eq!(fail.verdict, TestVerdict::JudgeError);
        assert!(fail.message.unwrap().contains("FAIL answer is broken"));
        assert_eq!(v(5, "", "").verdict, TestVerdict::JudgeError);
    }

    #[test]
    fn partial_points_are_the_first_number_printed() {
        let v = |out: &str, err: &str| decide(Protocol::Testlib, exited(7, out, err), None);
        let p = v("0.25 half of it\n", "");
        assert_eq!((p.verdict, p.points), (TestVerdict::Partial, 0.25));
        // testlib's quitp writes "points 0.5 message" to stderr
        let p = v("", "points 0.5 close");
        assert_eq!((p.verdict, p.points), (TestVerdict::Partial, 0.5));
        assert_eq!(v("1", "").verdict, TestVerdict::Accepted);
        for bad in ["", "1.5", "-0.1", "half", "nan"] {
            assert_eq!(v(bad, "").verdict, TestVerdict::JudgeError, "{bad:?}");
        }
    }

    #[test]
    fn a_checker_that_dies_is_a_judge_error() {
        let mut o = exited(0, "", "");
        o.status = Status::TimeLimit;
        o.message = Some("cpu time limit of 1000 ms exceeded".into());
        let c = decide(Protocol::Testlib, o, None);
        assert_eq!(c.verdict, TestVerdict::JudgeError);
        assert!(c.message.unwrap().contains("cpu time limit"));
        let mut o = exited(0, "", "");
        o.status = Status::Signaled;
        o.exit_code = None;
        assert_eq!(decide(Protocol::Testlib, o, None).verdict, TestVerdict::JudgeError);
    }

    #[test]
    fn an_uncaught_error_is_a_crash_not_a_wrong_answer() {
        let e = RuntimeError { kind: "ZeroDivisionError".into(), message: "division by zero".into(), frames: vec![] };
        let c = decide(Protocol::Testlib, exited(1, "", "Traceback …"), Some(&e));
        assert_eq!(c.verdict, TestVerdict::JudgeError);
        assert!(c.message.unwrap().starts_with("the checker crashed (ZeroDivisionError: division by zero)"));
    }

    #[test]
    fn kattis_validators_answer_42_or_43_with_a_feedback_file() {
        let mut o = exited(43, "", "");
        o.files = vec![crate::run::OutputFile {
            path: ".judge/feedback/judgemessage.txt".into(),
            content: FileContent::File { bytes: b"wrong count\n".to_vec(), executable: false },
        }];
        let c = decide(Protocol::Kattis, o, None);
        assert_eq!((c.verdict, c.message.as_deref()), (TestVerdict::WrongAnswer, Some("wrong count")));
        assert!(c.run.files.is_empty());
        assert_eq!(decide(Protocol::Kattis, exited(42, "", ""), None).verdict, TestVerdict::Accepted);
        assert_eq!(decide(Protocol::Kattis, exited(0, "", ""), None).verdict, TestVerdict::JudgeError);
        assert_eq!(decide(Protocol::Kattis, exited(1, "", ""), None).verdict, TestVerdict::JudgeError);
    }

    #[test]
    fn cpp_checkers_get_testlib_unless_they_bring_it() {
        let cpp = crate::lang::builtin("cpp").unwrap();
        let Source::Files(files) = with_testlib(&cpp, Source::Code("int main(){}".into())) else { panic!() };
        assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["main.cpp", "testlib.h"]);
        assert!(files[1].contents.starts_with(b"/*") && files[1].contents.len() > 100_000);
        let own = InputFile { path: "testlib.h".into(), contents: b"// mine".to_vec(), executable: false };
        let Source::Files(files) = with_testlib(&cpp, Source::Files(vec![own.clone()])) else { panic!() };
        assert_eq!(files, [own]);
        let py = crate::lang::builtin("python").unwrap();
        assert!(matches!(with_testlib(&py, Source::Code("x".into())), Source::Code(_)));
    }
}
