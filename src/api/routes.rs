//! The route table and its handlers. Each handler decodes, calls the layer below, and
//! encodes; nothing here touches a sandbox.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::error::{ApiError, from_json};
use super::types::{
    CgroupInfo, ExecuteRequest, ExecuteResponse, HealthResponse, LanguageInfo, LanguageRef, LanguagesResponse,
    LimitsIn, RunsInfo, SeccompInfo, VersionResponse,
};
use super::{Api, json};
use crate::config::LimitTable;
use crate::lang::{Availability, Language, When};
use crate::pipeline::{self, Program, Source};
use crate::run::{Cancel, InputFile};

/// Where a request came from: the Unix socket needs no key, TCP does when keys are set.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    Unix,
    Tcp(SocketAddr),
}

type Resp = Response<Full<Bytes>>;

/// What the request log line says about a run.
#[derive(Debug, Default)]
struct RunLog {
    language: Option<String>,
    status: Option<&'static str>,
    /// Time in the executor (sandbox and program), to tell it from the API's own.
    run_ms: Option<f64>,
}

/// One request's log line, written when it is answered, or when hyper drops the request
/// because its client went away (the run, if any, is killed then).
struct AccessLog {
    request_id: String,
    peer: Peer,
    method: Method,
    path: String,
    started: Instant,
    code: Option<u16>,
    run: RunLog,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let peer = match self.peer {
            Peer::Unix => "unix".to_owned(),
            Peer::Tcp(a) => a.to_string(),
        };
        let (request_id, method, path) = (&self.request_id, &self.method, &self.path);
        let language = self.run.language.as_deref().unwrap_or("-");
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match self.code {
            Some(code) => tracing::info!(
                %request_id, %peer, %method, %path, code, language, run = self.run.status.unwrap_or("-"),
                run_ms = self.run.run_ms.unwrap_or(0.0), ms, "request"
            ),
            None => {
                tracing::info!(%request_id, %peer, %method, %path, language, ms, "request abandoned: the client went away")
            }
        }
    }
}

/// Answers one request (never fails: errors become responses) and logs one line for it.
pub(super) async fn handle(api: Arc<Api>, req: Request<Incoming>, peer: Peer) -> Resp {
    let mut log = AccessLog {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        peer,
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        started: Instant::now(),
        code: None,
        run: RunLog::default(),
    };
    let result = match authorize(&api, &req, peer) {
        Ok(()) => route(&api, req, &log.request_id, &mut log.run).await,
        Err(e) => Err(e),
    };
    let mut resp = result.unwrap_or_else(|e| {
        if let ApiError::Internal(m) = &e {
            tracing::error!(request_id = %log.request_id, message = %m, "internal error");
        }
        e.into_response(&log.request_id)
    });
    if let Ok(v) = HeaderValue::from_str(&log.request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    log.code = Some(resp.status().as_u16());
    resp
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Execute,
    Languages,
    Health,
    Version,
}

/// The route table: (method, path) and what each answers with.
const ROUTES: [(Method, &str, Endpoint); 4] = [
    (Method::POST, "/v1/execute", Endpoint::Execute),
    (Method::GET, "/v1/languages", Endpoint::Languages),
    (Method::GET, "/health", Endpoint::Health),
    (Method::GET, "/version", Endpoint::Version),
];

/// The endpoint for a method and path: 404 for an unknown path, 405 (with what is
/// allowed) for a known path asked with another method.
fn select(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    match ROUTES.iter().find(|(_, p, _)| *p == path) {
        Some((m, _, e)) if m == method => Ok(*e),
        Some((m, _, _)) => Err(ApiError::MethodNotAllowed(if *m == Method::POST { POST } else { GET })),
        None => Err(ApiError::NotFound),
    }
}

async fn route(api: &Api, req: Request<Incoming>, request_id: &str, log: &mut RunLog) -> Result<Resp, ApiError> {
    match select(req.method(), req.uri().path())? {
        Endpoint::Execute => execute(api, req, request_id, log).await,
        Endpoint::Languages => Ok(languages(api)),
        Endpoint::Health => Ok(health(api)),
        Endpoint::Version => Ok(version()),
    }
}

/// On TCP with keys configured: `X-Api-Key: KEY` or `Authorization: Bearer KEY`, compared in
/// constant time against every key.
fn authorize(api: &Api, req: &Request<Incoming>, peer: Peer) -> Result<(), ApiError> {
    if matches!(peer, Peer::Unix) || api.policy.api_keys.is_empty() {
        return Ok(());
    }
    let headers = req.headers();
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let mut ok = subtle::Choice::from(0);
    for key in &api.policy.api_keys {
        ok |= key.as_bytes().ct_eq(given.as_bytes());
    }
    if bool::from(ok) { Ok(()) } else { Err(ApiError::Unauthorized) }
}

/// The token of `Authorization: Bearer TOKEN` (the scheme in any case, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

async fn execute(api: &Api, req: Request<Incoming>, request_id: &str, log: &mut RunLog) -> Result<Resp, ApiError> {
    // a place first, so a full daemon reads no more bodies
    let ticket = api.limiter.admit()?;
    let body = read_json_body(api, req).await?;
    let dto: ExecuteRequest = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    let (mut program, lang, version) = plan(api, dto)?;
    log.language = Some(lang.id.clone());
    let slot = api.limiter.slot(ticket).await?;
    let cancel = Cancel::new()?;
    program.cancel = Some(cancel.clone());
    let id = api.next_run.fetch_add(1, Ordering::Relaxed);
    // Dropped when the client goes away (hyper drops this future) or the run ends: in the
    // first case the run is killed.
    let _running = Running::new(api, id, cancel)?;
    let executor = Arc::clone(&api.executor);
    let language = lang.clone();
    let (outcome, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let outcome = pipeline::execute(&*executor, &language, program);
        drop(slot);
        (outcome, started.elapsed())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the run's thread failed: {e}")))?;
    log.run_ms = Some(took.as_secs_f64() * 1000.0);
    let outcome = outcome?;
    log.status = Some(outcome.verdict.as_str());
    let lang = LanguageRef { id: lang.id.clone(), version };
    Ok(json(StatusCode::OK, &ExecuteResponse::new(request_id, outcome, lang)))
}

/// A run in progress: registered for shutdown, cancelled if dropped before it ends.
struct Running<'a> {
    api: &'a Api,
    id: u64,
}

impl<'a> Running<'a> {
    /// Registers the run; none may start once the shutdown's grace period is over.
    fn new(api: &'a Api, id: u64, cancel: Cancel) -> Result<Self, ApiError> {
        let mut inflight = api.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inflight.stopping {
            return Err(ApiError::Stopping);
        }
        inflight.runs.insert(id, cancel);
        Ok(Running { api, id })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let removed = self.api.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).runs.remove(&self.id);
        // a run that already ended ignores the token
        if let Some(c) = removed {
            c.cancel();
        }
    }
}

/// A client has this long to send its body (a slow one holds no run slot meanwhile, but it
/// holds a connection).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the content type and size, then reads the body.
async fn read_json_body(api: &Api, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let max = api.policy.max_body_bytes;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(max));
    }
    let limited = Limited::new(req.into_body(), usize::try_from(max).unwrap_or(usize::MAX));
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout(BODY_TIMEOUT)),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(max)),
        Ok(Err(e)) => Err(ApiError::BadJson(format!("reading the body: {e}"))),
    }
}

/// Checks a request against the languages and the policy and turns it into a program.
fn plan(api: &Api, dto: ExecuteRequest) -> Result<(Program, &Language, String), ApiError> {
    let invalid = |m: String| ApiError::Invalid(m);
    let (lang, availability) = api.languages.find(&dto.language).map_err(|e| invalid(e.to_string()))?;
    let version = match availability {
        Availability::Available { version } => version.clone(),
        Availability::Unavailable { reason } => {
            return Err(invalid(format!("language {} is not available here: {reason}", lang.id)));
        }
    };
    let source = match (dto.code, dto.files) {
        (Some(_), Some(_)) => return Err(invalid("give either code or files, not both".into())),
        (Some(code), None) if !code.is_empty() => Source::Code(code),
        (None, Some(files)) if !files.is_empty() => {
            let mut out = Vec::with_capacity(files.len());
            for f in &files {
                crate::sandbox::check_relative_path(&f.name).map_err(|e| invalid(format!("file name: {e}")))?;
                out.push(InputFile { path: f.name.clone(), contents: f.bytes().map_err(invalid)?, executable: false });
            }
            Source::Files(out)
        }
        _ => return Err(invalid("no code: give code (a non-empty string) or files".into())),
    };
    let args = dto.args.unwrap_or_default();
    if args.iter().any(|a| a.contains('\0')) {
        return Err(invalid("args must not contain NUL bytes".into()));
    }
    let defaults = language_defaults(lang, &api.policy.default_limits, &api.policy.max_limits);
    let limits = limits(&defaults, &api.policy.max_limits, dto.limits.unwrap_or_default())?;
    let program = Program {
        source,
        stdin: dto.stdin.unwrap_or_default().into_bytes(),
        args,
        limits,
        cancel: None,
        collect_files: false,
        cache: None,
    };
    Ok((program, lang, version))
}

/// A language's run limits over the configured defaults, none above the maxima.
pub(super) fn language_defaults(lang: &Language, default: &LimitTable, max: &LimitTable) -> LimitTable {
    let t = lang.run.limits.over_table(default);
    LimitTable {
        cpu_time_ms: t.cpu_time_ms.min(max.cpu_time_ms),
        wall_time_ms: t.wall_time_ms.min(max.wall_time_ms),
        memory_mb: t.memory_mb.min(max.memory_mb),
        processes: t.processes.min(max.processes),
        output_kb: t.output_kb.min(max.output_kb),
        file_size_kb: t.file_size_kb.min(max.file_size_kb),
    }
}

/// The request's limits over the defaults, each checked against its maximum.
fn limits(default: &LimitTable, max: &LimitTable, asked: LimitsIn) -> Result<crate::limit::Limits, ApiError> {
    let pick = |name: &str, asked: Option<u64>, default: u64, max: u64| match asked {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::Invalid(format!("limits.{name} = {v}: must be 1 to {max}"))),
    };
    let table = LimitTable {
        cpu_time_ms: pick("cpu_time_ms", asked.cpu_time_ms, default.cpu_time_ms, max.cpu_time_ms)?,
        wall_time_ms: pick("wall_time_ms", asked.wall_time_ms, default.wall_time_ms, max.wall_time_ms)?,
        memory_mb: pick("memory_mb", asked.memory_mb, default.memory_mb, max.memory_mb)?,
        processes: pick("processes", asked.processes, default.processes, max.processes)?,
        output_kb: pick("output_kb", asked.output_kb, default.output_kb, max.output_kb)?,
        file_size_kb: pick("file_size_kb", asked.file_size_kb, default.file_size_kb, max.file_size_kb)?,
    };
    let limits = table.to_limits();
    limits.validate().map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(limits)
}

fn languages(api: &Api) -> Resp {
    let languages = api
        .languages
        .all()
        .iter()
        .map(|(l, a)| {
            let (available, version, reason) = match a {
                Availability::Available { version } => (true, Some(version.clone()), None),
                Availability::Unavailable { reason } => (false, None, Some(reason.clone())),
            };
            LanguageInfo {
                id: l.id.clone(),
                name: l.name.clone(),
                aliases: l.aliases.clone(),
                available,
                version,
                reason,
                compiled: l.compiled(),
                syntax_check: l.syntax.as_ref().map(|s| match s.when {
                    When::Always => "always",
                    When::OnFailure => "on_failure",
                }),
                main_file: l.main_file.clone(),
                rootfs: if l.placement.image.is_some() || l.placement.missing.is_some() {
                    l.rootfs.clone()
                } else {
                    "host".into()
                },
                image: l
                    .placement
                    .image
                    .as_ref()
                    .map(|i| super::types::ImageInfo { name: i.name.clone(), digest: i.digest.clone() }),
                fallback: l.placement.fallback.clone(),
                default_limits: language_defaults(l, &api.policy.default_limits, &api.policy.max_limits),
            }
        })
        .collect();
    json(StatusCode::OK, &LanguagesResponse { languages })
}

fn health(api: &Api) -> Resp {
    let d = &api.description;
    let body = HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: api.uptime().as_secs(),
        cgroup: CgroupInfo { mode: d.cgroup_mode, layout: d.cgroup_layout.clone() },
        rootfs: d.rootfs.clone(),
        seccomp: SeccompInfo { profile: d.seccomp_profile.clone(), instructions: d.seccomp_instructions },
        runs: RunsInfo {
            concurrency: api.policy.concurrency,
            queue: api.policy.queue,
            running: api.limiter.running(),
            waiting: api.limiter.waiting(),
        },
    };
    json(StatusCode::OK, &body)
}

fn version() -> Resp {
    json(StatusCode::OK, &VersionResponse { name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_route_table_answers_404_and_405() {
        for (m, p, e) in &ROUTES {
            assert_eq!(select(m, p).unwrap(), *e);
        }
        assert_eq!(select(&Method::GET, "/v1/execute").unwrap_err(), ApiError::MethodNotAllowed(&[Method::POST]));
        assert_eq!(select(&Method::DELETE, "/health").unwrap_err(), ApiError::MethodNotAllowed(&[Method::GET]));
        assert_eq!(select(&Method::GET, "/v2/execute").unwrap_err(), ApiError::NotFound);
        assert_eq!(select(&Method::GET, "/health/").unwrap_err(), ApiError::NotFound);
    }

    #[test]
    fn the_readme_documents_every_route() {
        let readme = include_str!("../../README.md");
        for (m, p, _) in &ROUTES {
            let line = format!("### `{} {p}`", m.as_str());
            assert!(readme.contains(&line), "README.md has no section {line:?}");
        }
    }

    #[test]
    fn limits_take_defaults_and_check_maxima() {
        let c = Config::default();
        let (d, m) = (&c.limits.default, &c.limits.max);
        let l = limits(d, m, LimitsIn { memory_mb: Some(512), ..LimitsIn::default() }).unwrap();
        assert_eq!(l.memory_bytes, 512 << 20);
        assert_eq!(l.cpu_time, std::time::Duration::from_millis(d.cpu_time_ms));
        for bad in [
            LimitsIn { memory_mb: Some(0), ..LimitsIn::default() },
            LimitsIn { memory_mb: Some(m.memory_mb + 1), ..LimitsIn::default() },
            LimitsIn { cpu_time_ms: Some(u64::MAX), ..LimitsIn::default() },
        ] {
            let e = limits(d, m, bad).unwrap_err();
            assert!(matches!(&e, ApiError::Invalid(msg) if msg.contains("must be 1 to")), "{e:?}");
        }
    }
}
