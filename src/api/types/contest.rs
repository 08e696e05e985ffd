//! Wire types of contest rules (batches, repeated runs, which time counts) and what a
//! judge response says of them: the score, each batch's, the checker program's compile,
//! each test's points and the checker's run.

use serde::{Deserialize, Serialize};

use super::{StageInfo, Times};
use crate::judge::{BatchResult, Judged, TestResult};
use crate::pipeline::{Outcome, Verdict};
use crate::run::{Side, Status, Transcript};

/// A batch another names: by name or by index.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a batch's name or index")]
pub(in crate::api) enum BatchRef {
    Name(String),
    Index(usize),
}

/// `{"name": "small", "points": 30, "tests": [0, 1], "depends_on": []}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct BatchIn {
    pub(in crate::api) name: String,
    pub(in crate::api) points: f64,
    pub(in crate::api) tests: Vec<usize>,
    #[serde(default)]
    pub(in crate::api) depends_on: Vec<BatchRef>,
}

/// `"time_limit_by"`: the time that counts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::api) enum TimeByIn {
    Cpu,
    Wall,
}

/// `"protocol"` of a checker program.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::api) enum ProtocolIn {
    Testlib,
    Kattis,
}

/// `"interactor"`: the problem's interactor, run at once with the program, each one's
/// stdout the other's stdin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct InteractorIn {
    pub(in crate::api) language: String,
    pub(in crate::api) code: Option<String>,
    pub(in crate::api) files: Option<Vec<super::FileIn>>,
    pub(in crate::api) limits: Option<super::LimitsIn>,
    /// `testlib` (default) or `kattis`: how it is called and what its exit code means.
    pub(in crate::api) protocol: Option<ProtocolIn>,
    /// Bytes of each test's transcript the response shows (default 0: none).
    pub(in crate::api) transcript_bytes: Option<usize>,
}

/// What a judge response adds with contest rules (each part only when there is one).
#[derive(Debug, Default, Serialize)]
pub(in crate::api) struct ContestOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batches: Option<Vec<BatchOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checker: Option<CheckerOut>,
    /// The interactor's stages (instead of a checker's).
    #[serde(skip_serializing_if = "Option::is_none")]
    interactor: Option<CheckerOut>,
}

#[derive(Debug, Serialize)]
struct BatchOut {
    name: String,
    status: &'static str,
    message: Option<String>,
    score: f64,
    max_score: f64,
}

/// The checker program's stages.
#[derive(Debug, Serialize)]
struct CheckerOut {
    /// `ok`, or why it cannot check (`compile_error`, `syntax_error`, `internal_error`).
    status: &'static str,
    message: Option<String>,
    compile_cache: Option<&'static str>,
    compile: Option<StageInfo>,
    diagnostics: Vec<crate::diagnostics::Diagnostic>,
}

impl ContestOut {
    pub(in crate::api) fn new(j: &Judged) -> Self {
        let score = j.score();
        ContestOut {
            score: score.map(|s| s.0),
            max_score: score.map(|s| s.1),
            batches: (!j.batches.is_empty()).then(|| j.batches.iter().map(batch).collect()),
            checker: j.checker.as_deref().filter(|_| !j.interactive).map(checker),
            interactor: j.checker.as_deref().filter(|_| j.interactive).map(checker),
        }
    }
}

fn batch(b: &BatchResult) -> BatchOut {
    BatchOut { name: b.name.clone(), status: b.status, message: b.message.clone(), score: b.score, max_score: b.points }
}

fn checker(o: &Outcome) -> CheckerOut {
    CheckerOut {
        status: o.verdict.as_str(),
        message: (o.verdict != Verdict::Run(Status::Ok)).then(|| o.message.clone()).flatten(),
        compile_cache: o.compile_cache.map(|c| c.as_str()),
        compile: o.compile.as_ref().or(o.syntax.as_ref()).map(StageInfo::new),
        diagnostics: o.diagnostics.clone(),
    }
}

/// What a test adds with contest rules.
#[derive(Debug, Default, Serialize)]
pub(in crate::api) struct TestContestOut {
    /// The test's name (a package's tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The fraction of the test's worth a checker program gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<f64>,
    /// The checker program's run on this test.
    #[serde(skip_serializing_if = "Option::is_none")]
    checker: Option<StageInfo>,
    /// The interactor's run on this test (instead of a checker's).
    #[serde(skip_serializing_if = "Option::is_none")]
    interactor: Option<StageInfo>,
    /// What passed between the program and the interactor, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    transcript: Option<TranscriptOut>,
    /// Each run's time, when the test ran more than once.
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<Vec<Times>>,
}

/// A test's transcript: the messages in the order they passed, the first
/// `transcript_bytes` of them.
#[derive(Debug, Serialize)]
struct TranscriptOut {
    messages: Vec<MessageOut>,
    truncated: bool,
}

#[derive(Debug, Serialize)]
struct MessageOut {
    /// `program` or `interactor`.
    from: &'static str,
    data: String,
    encoding: &'static str,
}

fn transcript(t: &Transcript) -> TranscriptOut {
    let messages = t
        .messages
        .iter()
        .map(|(side, bytes)| {
            let (data, encoding) = super::text(bytes);
            let from = if *side == Side::A { "program" } else { "interactor" };
            MessageOut { from, data, encoding }
        })
        .collect();
    TranscriptOut { messages, truncated: t.truncated }
}

impl TestContestOut {
    pub(in crate::api) fn new(t: &TestResult, interactive: bool) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        TestContestOut {
            name: t.name.clone(),
            points: t.points,
            checker: t.checker.as_ref().filter(|_| !interactive).map(StageInfo::new),
            interactor: t.checker.as_ref().filter(|_| interactive).map(StageInfo::new),
            transcript: t.transcript.as_ref().map(transcript),
            runs: (!t.times.is_empty())
                .then(|| t.times.iter().map(|&(cpu, wall)| Times { cpu_ms: ms(cpu), wall_ms: ms(wall) }).collect()),
        }
    }
}
