//! Wire types of judge requests (`tests`, `checker`, `function_name`) and of files out
//! (`return_files`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{LanguageRef, LimitsIn, StageInfo, Times, text};
use crate::diagnostics::{Diagnostic, RuntimeError};
use crate::judge::{Judged, TestResult};
use crate::run::{FileContent, OutputFile, RunOutcome, signal_name};

/// One test of a judge request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct TestIn {
    /// The program's stdin (not with `function_name`).
    pub(in crate::api) stdin: Option<String>,
    /// The function's arguments, a JSON array (only with `function_name`).
    pub(in crate::api) input: Option<Value>,
    /// What it should print (a string), or return (any JSON value, `null` included, with
    /// `function_name`); absent: the test passes when the program ends well.
    #[serde(default, deserialize_with = "present")]
    pub(in crate::api) expected_output: Option<Value>,
    /// Arguments after the program.
    pub(in crate::api) args: Option<Vec<String>>,
    /// This test's limits over the request's.
    pub(in crate::api) limits: Option<LimitsIn>,
    /// `stdin` is `utf8` (default) or `base64`.
    #[serde(default)]
    pub(in crate::api) stdin_encoding: super::Encoding,
    /// `expected_output` is `utf8` (default) or `base64`.
    #[serde(default)]
    pub(in crate::api) expected_output_encoding: super::Encoding,
}

/// A field that is there, even as `null` (serde's `Option` takes `null` for absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `"checker": "trim"` or `{"type": "float", "absolute": 1e-6, "relative": 1e-6}`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a checker name (\"exact\", \"trim\", \"tokens\", \"float\") or {\"type\": \"float\", \"absolute\": …, \"relative\": …} or {\"type\": \"program\", \"language\": …, \"code\": …}"
)]
pub(in crate::api) enum CheckerIn {
    Name(String),
    Spec(Box<CheckerSpec>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CheckerSpec {
    #[serde(rename = "type")]
    pub(in crate::api) kind: String,
    pub(in crate::api) absolute: Option<f64>,
    pub(in crate::api) relative: Option<f64>,
    /// Built-in checkers but `exact`: letters match in either case.
    pub(in crate::api) ignore_case: Option<bool>,
    /// `program`: the checker's language, source (`code` or `files`), limits, protocol.
    pub(in crate::api) language: Option<String>,
    pub(in crate::api) code: Option<String>,
    pub(in crate::api) files: Option<Vec<super::FileIn>>,
    pub(in crate::api) limits: Option<LimitsIn>,
    pub(in crate::api) protocol: Option<super::contest::ProtocolIn>,
}

/// `"return_files": true` (everything the program created or changed) or a list of glob
/// patterns over paths relative to `/sandbox`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "true, false, or a list of glob patterns")]
pub(in crate::api) enum ReturnFilesIn {
    All(bool),
    Globs(Vec<String>),
}

/// A file the program left in `/sandbox`.
#[derive(Debug, Serialize)]
pub(in crate::api) struct FileOut {
    pub(in crate::api) name: String,
    /// `file` or `symlink`.
    #[serde(rename = "type")]
    pub(in crate::api) kind: &'static str,
    /// Bytes of a file, of a symlink's target text.
    pub(in crate::api) size: u64,
    pub(in crate::api) executable: bool,
    /// A file's content (`utf8` or `base64`), a symlink's target: never followed.
    pub(in crate::api) content: String,
    pub(in crate::api) encoding: &'static str,
}

/// Which files go back, and how many bytes at most.
#[derive(Debug, Clone)]
pub(in crate::api) struct FileFilter {
    /// None: all.
    pub(in crate::api) globs: Option<Vec<glob::Pattern>>,
}

/// The most files a response carries (all its tests together).
pub(in crate::api) const MAX_RETURN_FILES: usize = 100;
/// The most bytes of file content a response carries (all its tests together, before
/// encoding).
pub(in crate::api) const MAX_RETURN_BYTES: u64 = 4 << 20;

/// What a response may still carry: files, their bytes, and tests' output.
#[derive(Debug, Clone, Copy)]
pub(in crate::api) struct Budget {
    files: usize,
    file_bytes: u64,
    output: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { files: MAX_RETURN_FILES, file_bytes: MAX_RETURN_BYTES, output: RESPONSE_OUTPUT_SHOWN }
    }
}

impl FileFilter {
    pub(in crate::api) fn wants(&self, path: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.globs.as_ref().is_none_or(|g| g.iter().any(|p| p.matches_with(path, opts)))
    }

    /// The files that match, within what the response may still carry; `true` when some
    /// were left out.
    pub(in crate::api) fn apply(
        &self,
        files: &[OutputFile],
        truncated: bool,
        budget: &mut Budget,
    ) -> (Vec<FileOut>, bool) {
        let mut out = Vec::new();
        let mut left_out = truncated;
        for f in files.iter().filter(|f| self.wants(&f.path)) {
            let (kind, raw, executable): (&str, &[u8], bool) = match &f.content {
                FileContent::File { bytes, executable } => ("file", bytes, *executable),
                FileContent::Symlink(target) => ("symlink", target.as_bytes(), false),
            };
            if budget.files == 0 || raw.len() as u64 > budget.file_bytes {
                left_out = true;
                continue;
            }
            budget.files -= 1;
            budget.file_bytes -= raw.len() as u64;
            let (content, encoding) = text(raw);
            out.push(FileOut { name: f.path.clone(), kind, size: raw.len() as u64, executable, content, encoding });
        }
        (out, left_out)
    }
}

/// A run's `files` and `files_truncated` in a response: absent unless asked for, empty for
/// a run that never happened.
pub(in crate::api) fn files_out(
    filter: Option<&FileFilter>,
    run: Option<&RunOutcome>,
    budget: &mut Budget,
) -> (Option<Vec<FileOut>>, Option<bool>) {
    match (filter, run) {
        (Some(f), Some(r)) => {
            let (files, cut) = f.apply(&r.files, r.files_truncated, budget);
            (Some(files), Some(cut))
        }
        (Some(_), None) => (Some(Vec::new()), Some(false)),
        (None, _) => (None, None),
    }
}

/// The response to a judge request.
#[derive(Debug, Serialize)]
pub(in crate::api) struct JudgeResponse {
    pub(in crate::api) request_id: String,
    /// `accepted`, the first failed test's verdict, or `syntax_error`/`compile_error`.
    pub(in crate::api) status: &'static str,
    pub(in crate::api) message: Option<String>,
    pub(in crate::api) language: LanguageRef,
    /// `hit` or `miss` (null: nothing compiled, or no cache).
    pub(in crate::api) compile_cache: Option<&'static str>,
    pub(in crate::api) syntax: Option<StageInfo>,
    pub(in crate::api) compile: Option<StageInfo>,
    pub(in crate::api) diagnostics: Vec<Diagnostic>,
    pub(in crate::api) tests: Vec<TestOut>,
    pub(in crate::api) summary: Summary,
    /// Score, batches and checker program, with contest rules.
    #[serde(flatten)]
    pub(in crate::api) contest: super::contest::ContestOut,
}

/// One test's result.
#[derive(Debug, Serialize)]
pub(in crate::api) struct TestOut {
    pub(in crate::api) index: usize,
    pub(in crate::api) status: &'static str,
    pub(in crate::api) message: Option<String>,
    pub(in crate::api) exceeded: Option<&'static str>,
    pub(in crate::api) exit_code: Option<i32>,
    pub(in crate::api) signal: Option<i32>,
    pub(in crate::api) signal_name: Option<String>,
    pub(in crate::api) stdout: String,
    pub(in crate::api) stdout_encoding: &'static str,
    pub(in crate::api) stdout_truncated: bool,
    pub(in crate::api) stderr: String,
    pub(in crate::api) stderr_encoding: &'static str,
    pub(in crate::api) stderr_truncated: bool,
    pub(in crate::api) time: Times,
    pub(in crate::api) memory_peak_kb: u64,
    pub(in crate::api) error: Option<RuntimeError>,
    /// What the function returned (function harness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::api) returned: Option<Value>,
    /// The result was too large to show (the checker compared it whole).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(in crate::api) returned_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::api) files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::api) files_truncated: Option<bool>,
    /// Points, the checker's run and repeated runs, with contest rules.
    #[serde(flatten)]
    pub(in crate::api) contest: super::contest::TestContestOut,
}

#[derive(Debug, Serialize)]
pub(in crate::api) struct Summary {
    pub(in crate::api) passed: usize,
    pub(in crate::api) total: usize,
    pub(in crate::api) all_passed: bool,
    pub(in crate::api) max_cpu_ms: f64,
    pub(in crate::api) max_wall_ms: f64,
    pub(in crate::api) max_memory_kb: u64,
}

/// How much of each test's stdout and stderr a response shows (the checker saw it all).
pub(in crate::api) const TEST_OUTPUT_SHOWN: usize = 64 * 1024;
/// How much stdout and stderr a judge response shows in all, its tests together.
pub(in crate::api) const RESPONSE_OUTPUT_SHOWN: usize = 16 << 20;

impl JudgeResponse {
    pub(in crate::api) fn new(request_id: &str, j: Judged, language: LanguageRef, files: Option<&FileFilter>) -> Self {
        let status = j.status();
        let passed = j.passed();
        let total = j.tests.len();
        let ran: Vec<_> = j.tests.iter().filter_map(|t| t.run.as_ref()).collect();
        let summary = Summary {
            passed,
            total,
            all_passed: passed == total,
            max_cpu_ms: ran.iter().map(|r| r.cpu_time.as_secs_f64() * 1000.0).fold(0.0, f64::max),
            max_wall_ms: ran.iter().map(|r| r.wall_time.as_secs_f64() * 1000.0).fold(0.0, f64::max),
            max_memory_kb: ran.iter().map(|r| r.memory_peak_bytes / 1024).max().unwrap_or(0),
        };
        let message = match status {
            "accepted" => None,
            _ => j.outcome.message.clone().or_else(|| {
                let (i, t) = j.tests.iter().enumerate().find(|(_, t)| !t.verdict.passed())?;
                Some(format!("test {i}: {}", t.message.as_deref().unwrap_or(t.verdict.as_str())))
            }),
        };
        let contest = super::contest::ContestOut::new(&j);
        JudgeResponse {
            contest,
            request_id: request_id.to_owned(),
            status,
            message,
            language,
            compile_cache: j.outcome.compile_cache.map(|c| c.as_str()),
            syntax: j.outcome.syntax.as_ref().map(StageInfo::new),
            compile: j.outcome.compile.as_ref().map(StageInfo::new),
            diagnostics: j.outcome.diagnostics.clone(),
            tests: {
                let mut budget = Budget::default();
                let interactive = j.interactive;
                let mut out = Vec::with_capacity(j.tests.len());
                for (i, t) in j.tests.into_iter().enumerate() {
                    out.push(TestOut::new(i, t, files, &mut budget, interactive));
                }
                out
            },
            summary,
        }
    }
}

/// A test's error and function result within what the response may still show (they
/// count against [`RESPONSE_OUTPUT_SHOWN`] with the outputs): an error that does not fit
/// loses its frames, a result that does not fit is dropped (`returned_truncated`).
fn shown_error_and_value(
    error: Option<RuntimeError>,
    returned: Option<Value>,
    budget: &mut Budget,
) -> (Option<RuntimeError>, Option<Value>, bool) {
    let error = error.map(|mut e| {
        let frames: usize =
            e.frames.iter().map(|f| f.file.len() + f.function.as_ref().map_or(0, String::len) + 48).sum();
        if frames > budget.output {
            e.frames = Vec::new();
        }
        let size = e.kind.len() + e.message.len() + if e.frames.is_empty() { 0 } else { frames };
        budget.output = budget.output.saturating_sub(size);
        e
    });
    let (returned, truncated) = match returned {
        Some(v) => match crate::judge::encoded_len(&v, budget.output) {
            Some(n) => {
                budget.output -= n;
                (Some(v), false)
            }
            None => (None, true),
        },
        None => (None, false),
    };
    (error, returned, truncated)
}

impl TestOut {
    fn new(index: usize, t: TestResult, filter: Option<&FileFilter>, budget: &mut Budget, interactive: bool) -> Self {
        let mut shown = |b: &[u8], truncated: bool| {
            let cut = b.len().min(TEST_OUTPUT_SHOWN).min(budget.output);
            budget.output -= cut;
            let (s, enc) = text(&b[..cut]);
            (s, enc, truncated || cut < b.len())
        };
        let (stdout, stdout_encoding, stdout_truncated, stderr, stderr_encoding, stderr_truncated) = match &t.run {
            Some(r) => {
                let o = shown(&r.stdout, r.stdout_truncated);
                let e = shown(&r.stderr, r.stderr_truncated);
                (o.0, o.1, o.2, e.0, e.1, e.2)
            }
            None => (String::new(), "utf8", false, String::new(), "utf8", false),
        };
        let (files, files_truncated) = files_out(filter, t.run.as_ref(), budget);
        let contest = super::contest::TestContestOut::new(&t, interactive);
        let returned_truncated = t.returned_truncated;
        let (error, returned, cut) = shown_error_and_value(t.error, t.returned, budget);
        let returned_truncated = returned_truncated || cut;
        let r = t.run.as_ref();
        TestOut {
            contest,
            index,
            status: t.verdict.as_str(),
            message: t.message,
            exceeded: r.and_then(|r| r.exceeded).map(|e| e.as_str()),
            exit_code: r.and_then(|r| r.exit_code),
            signal: r.and_then(|r| r.signal),
            signal_name: r.and_then(|r| r.signal).map(signal_name),
            stdout,
            stdout_encoding,
            stdout_truncated,
            stderr,
            stderr_encoding,
            stderr_truncated,
            time: Times {
                cpu_ms: r.map_or(0.0, |r| r.cpu_time.as_secs_f64() * 1000.0),
                wall_ms: r.map_or(0.0, |r| r.wall_time.as_secs_f64() * 1000.0),
            },
            memory_peak_kb: r.map_or(0, |r| r.memory_peak_bytes / 1024),
            error,
            returned,
            returned_truncated,
            files,
            files_truncated,
        }
    }
}
