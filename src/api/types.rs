//! Wire types of the HTTP API: what requests carry and responses say. Domain types never
//! appear on the wire; the conversions are here.

pub(super) mod contest;
pub(super) mod judge;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub(super) use judge::{CheckerIn, FileFilter, FileOut, JudgeResponse, ReturnFilesIn, TestIn};

use crate::config::LimitTable;
use crate::diagnostics::{Diagnostic, RuntimeError};
use crate::pipeline::Outcome;
use crate::run::{RunOutcome, signal_name};

/// `POST /v1/execute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecuteRequest {
    pub(super) language: String,
    pub(super) code: Option<String>,
    pub(super) files: Option<Vec<FileIn>>,
    pub(super) stdin: Option<String>,
    pub(super) args: Option<Vec<String>>,
    pub(super) limits: Option<LimitsIn>,
    /// Judge mode: the tests to run the program against.
    pub(super) tests: Option<Vec<TestIn>>,
    /// How test outputs are compared (default `trim`).
    pub(super) checker: Option<CheckerIn>,
    /// Stop at the first test that fails (default false: run all).
    pub(super) stop_on_first_failure: Option<bool>,
    /// The function harness: the function the tests call.
    pub(super) function_name: Option<String>,
    /// Return the files the program created or changed.
    pub(super) return_files: Option<ReturnFilesIn>,
    /// Only for `POST /v1/jobs`: where the result is POSTed.
    pub(super) callback_url: Option<String>,
    /// Network access: `true`, or `{"allow": ["host:port", …]}`.
    pub(super) network: Option<NetworkIn>,
    /// Host directories the operator offers, by name (each at `/mnt/<name>`).
    pub(super) mounts: Option<Vec<String>>,
    /// Contest rules (with tests): batches with points, runs of each test, extra time,
    /// the time that counts.
    pub(super) batches: Option<Vec<contest::BatchIn>>,
    pub(super) number_of_runs: Option<u32>,
    pub(super) cpu_extra_time_ms: Option<u64>,
    pub(super) time_limit_by: Option<contest::TimeByIn>,
    /// An interactor (with tests): it and the program run at once, cross-connected; it
    /// decides each test.
    pub(super) interactor: Option<contest::InteractorIn>,
    /// A Kattis/ICPC problem package (a tar archive, gzip-compressed or not, base64): its
    /// tests, checker and batches instead of the request's.
    pub(super) package: Option<String>,
    /// Answer at once with the run's events (NDJSON; SSE with `Accept: text/event-stream`).
    pub(super) stream: Option<bool>,
}

/// `network`: on or off, or on for an allow-list only.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum NetworkIn {
    /// `true` or `false`.
    On(bool),
    /// `{"allow": ["example.com:443", "198.51.100.7:53/udp"]}`.
    Spec(NetworkSpec),
}

/// `network` as an object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkSpec {
    /// The only destinations (and the resolver) the program may reach.
    pub(super) allow: Vec<String>,
}

/// One file of a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIn {
    pub(super) name: String,
    pub(super) content: String,
    #[serde(default)]
    pub(super) encoding: Encoding,
}

/// How a file's `content` is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl FileIn {
    pub(super) fn bytes(&self) -> Result<Vec<u8>, String> {
        match self.encoding {
            Encoding::Utf8 => Ok(self.content.clone().into_bytes()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.content.as_bytes())
                .map_err(|e| format!("file {:?}: content is not valid base64: {e}", self.name)),
        }
    }
}

/// The limits a request asks for, in the API's units; absent ones take the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsIn {
    pub(super) cpu_time_ms: Option<u64>,
    pub(super) wall_time_ms: Option<u64>,
    pub(super) memory_mb: Option<u64>,
    pub(super) processes: Option<u64>,
    pub(super) output_kb: Option<u64>,
    pub(super) file_size_kb: Option<u64>,
    /// The main thread's stack (at most the memory limit).
    pub(super) stack_mb: Option<u64>,
}

/// The response to a completed request, whatever the program did. The top-level fields
/// are those of the stage that decided (`stage`): the program's run, or the syntax check or
/// compiler that refused it; each stage that ran is also given whole.
#[derive(Debug, Serialize)]
pub(super) struct ExecuteResponse {
    pub(super) request_id: String,
    pub(super) status: &'static str,
    pub(super) stage: &'static str,
    pub(super) exceeded: Option<&'static str>,
    pub(super) exit_code: Option<i32>,
    pub(super) signal: Option<i32>,
    pub(super) signal_name: Option<String>,
    pub(super) message: Option<String>,
    pub(super) stdout: String,
    pub(super) stdout_encoding: &'static str,
    pub(super) stdout_truncated: bool,
    pub(super) stderr: String,
    pub(super) stderr_encoding: &'static str,
    pub(super) stderr_truncated: bool,
    pub(super) time: Times,
    pub(super) memory_peak_kb: u64,
    pub(super) language: LanguageRef,
    pub(super) syntax: Option<StageInfo>,
    pub(super) compile: Option<StageInfo>,
    pub(super) run: Option<StageInfo>,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) error: Option<RuntimeError>,
    /// `hit` or `miss` (null: nothing compiled, or no cache).
    pub(super) compile_cache: Option<&'static str>,
    /// The files the program created or changed (with `return_files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) files_truncated: Option<bool>,
}

/// One stage as it ran.
#[derive(Debug, Serialize)]
pub(super) struct StageInfo {
    pub(super) status: &'static str,
    pub(super) exceeded: Option<&'static str>,
    pub(super) exit_code: Option<i32>,
    pub(super) signal: Option<i32>,
    pub(super) signal_name: Option<String>,
    pub(super) message: Option<String>,
    pub(super) stdout: String,
    pub(super) stdout_encoding: &'static str,
    pub(super) stdout_truncated: bool,
    pub(super) stderr: String,
    pub(super) stderr_encoding: &'static str,
    pub(super) stderr_truncated: bool,
    pub(super) time: Times,
    pub(super) memory_peak_kb: u64,
}

impl StageInfo {
    pub(super) fn new(o: &RunOutcome) -> Self {
        let (stdout, stdout_encoding) = text(&o.stdout);
        let (stderr, stderr_encoding) = text(&o.stderr);
        StageInfo {
            status: o.status.as_str(),
            exceeded: o.exceeded.map(|e| e.as_str()),
            exit_code: o.exit_code,
            signal: o.signal,
            signal_name: o.signal.map(signal_name),
            message: o.message.clone(),
            stdout,
            stdout_encoding,
            stdout_truncated: o.stdout_truncated,
            stderr,
            stderr_encoding,
            stderr_truncated: o.stderr_truncated,
            time: Times { cpu_ms: o.cpu_time.as_secs_f64() * 1000.0, wall_ms: o.wall_time.as_secs_f64() * 1000.0 },
            memory_peak_kb: o.memory_peak_bytes / 1024,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Times {
    pub(super) cpu_ms: f64,
    pub(super) wall_ms: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct LanguageRef {
    pub(super) id: String,
    pub(super) version: String,
}

impl ExecuteResponse {
    pub(super) fn new(request_id: &str, o: Outcome, language: LanguageRef, filter: Option<&FileFilter>) -> Self {
        let (stage, last) = o.last();
        let top = StageInfo::new(last);
        let (files, files_truncated) = judge::files_out(filter, o.run.as_ref(), &mut judge::Budget::default());
        ExecuteResponse {
            request_id: request_id.to_owned(),
            status: o.verdict.as_str(),
            stage,
            exceeded: top.exceeded,
            exit_code: top.exit_code,
            signal: top.signal,
            signal_name: top.signal_name,
            message: o.message.clone(),
            stdout: top.stdout,
            stdout_encoding: top.stdout_encoding,
            stdout_truncated: top.stdout_truncated,
            stderr: top.stderr,
            stderr_encoding: top.stderr_encoding,
            stderr_truncated: top.stderr_truncated,
            time: top.time,
            memory_peak_kb: top.memory_peak_kb,
            language,
            syntax: o.syntax.as_ref().map(StageInfo::new),
            compile: o.compile.as_ref().map(StageInfo::new),
            run: o.run.as_ref().map(StageInfo::new),
            compile_cache: o.compile_cache.map(|c| c.as_str()),
            diagnostics: o.diagnostics,
            error: o.error,
            files,
            files_truncated,
        }
    }
}

/// Output as text when it is UTF-8, else base64.
pub(super) fn text(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), "base64"),
    }
}

/// `GET /v1/languages`.
#[derive(Debug, Serialize)]
pub(super) struct LanguagesResponse {
    pub(super) languages: Vec<LanguageInfo>,
}

#[derive(Debug, Serialize)]
pub(super) struct LanguageInfo {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) aliases: Vec<String>,
    pub(super) available: bool,
    pub(super) version: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) compiled: bool,
    pub(super) syntax_check: Option<&'static str>,
    pub(super) main_file: String,
    pub(super) rootfs: String,
    /// The image it runs on: name and digest.
    pub(super) image: Option<ImageInfo>,
    /// Its image is missing and it runs on the host's root instead (`images.host_fallback`).
    pub(super) fallback: Option<String>,
    pub(super) default_limits: LimitTable,
}

/// A language's image in `GET /v1/languages`.
#[derive(Debug, Serialize)]
pub(super) struct ImageInfo {
    pub(super) name: String,
    pub(super) digest: String,
}

/// `GET /health`.
#[derive(Debug, Serialize)]
pub(super) struct HealthResponse {
    pub(super) status: &'static str,
    pub(super) version: &'static str,
    pub(super) uptime_s: u64,
    pub(super) cgroup: CgroupInfo,
    pub(super) rootfs: String,
    pub(super) seccomp: SeccompInfo,
    pub(super) runs: RunsInfo,
    pub(super) jobs: JobsInfo,
    /// Null when disabled.
    pub(super) compile_cache: Option<CacheInfo>,
    /// Network runs (what a caller may ask for: `GET /v1/capabilities`).
    pub(super) network: NetworkInfo,
    /// Names of the host directories offered (at `/mnt/<name>`).
    pub(super) mounts: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct NetworkInfo {
    pub(super) enabled: bool,
    pub(super) uplink: Option<String>,
    pub(super) max_concurrent: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct JobsInfo {
    /// Queued or running (in a fleet: the fleet's); null when the store cannot be asked.
    pub(super) pending: Option<usize>,
    pub(super) max_pending: usize,
    /// Jobs this daemon has taken: waiting for a slot, running, or delivering a callback.
    pub(super) held: usize,
    /// Where jobs are kept: `memory`, `sqlite PATH` or `redis (consumer NAME)`.
    pub(super) store: String,
}

#[derive(Debug, Serialize)]
pub(super) struct CacheInfo {
    pub(super) entries: usize,
    pub(super) bytes: u64,
    pub(super) max_bytes: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct CgroupInfo {
    pub(super) mode: &'static str,
    pub(super) layout: String,
}

#[derive(Debug, Serialize)]
pub(super) struct SeccompInfo {
    pub(super) profile: String,
    pub(super) instructions: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct RunsInfo {
    pub(super) concurrency: usize,
    pub(super) queue: usize,
    pub(super) running: usize,
    pub(super) waiting: usize,
}

/// `GET /version`.
#[derive(Debug, Serialize)]
pub(super) struct VersionResponse {
    pub(super) name: &'static str,
    pub(super) version: &'static str,
}

/// The body of every error response.
#[derive(Debug, Serialize)]
pub(super) struct ErrorResponse<'a> {
    pub(super) error: ErrorBody<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct ErrorBody<'a> {
    pub(super) code: &'static str,
    pub(super) message: &'a str,
    pub(super) request_id: &'a str,
}
