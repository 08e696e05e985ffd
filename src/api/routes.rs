//! The route table and its handlers. Each handler decodes, calls the layer below, and
//! encodes; nothing here touches a sandbox.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::error::{ApiError, from_json};
use super::limiter::Permit;
use super::plan::{Planned, Work, language_defaults, plan};
use super::types::{
    CacheInfo, CgroupInfo, ExecuteRequest, ExecuteResponse, HealthResponse, JobsInfo, JudgeResponse, LandlockHealth,
    LanguageInfo, LanguageRef, LanguagesResponse, NetworkInfo, RunsInfo, SeccompInfo, VersionResponse,
};
use super::{Api, json};

pub(super) mod job_routes;
mod session_routes;
use crate::judge;
use crate::lang::{Availability, When};
use crate::pipeline;
use crate::run::Cancel;

/// Where a request came from: the Unix socket needs no key, TCP does when keys are set.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    Unix,
    Tcp(SocketAddr),
}

pub(super) type Resp = Response<Full<Bytes>>;
/// A response whose body may be streamed (a live run's events).
pub(super) type Reply = Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

/// What the request log line says about a run.
#[derive(Debug, Default)]
pub(super) struct RunLog {
    pub(super) language: Option<String>,
    pub(super) status: Option<&'static str>,
    /// Time in the executor (sandbox and program), to tell it from the API's own.
    pub(super) run_ms: Option<f64>,
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
pub(super) async fn handle(api: Arc<Api>, req: Request<Incoming>, peer: Peer) -> Reply {
    let mut log = AccessLog {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        peer,
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        started: Instant::now(),
        code: None,
        run: RunLog::default(),
    };
    // ---- API dialects (api/dialect.rs): other services' shapes, each under its prefix ----
    let native = select(req.method(), req.uri().path()).is_ok();
    let mount = super::dialect::select(&api.policy.dialects, req.uri().path(), native);
    let mut keyed = None;
    let result = match mount {
        Some(mount) => {
            Ok(super::dialect::handle(&api, mount, req, peer, &log.request_id, &mut log.run).await.map(BodyExt::boxed))
        }
        // ---- end of API dialects ----
        None => match authorize(&api, &req, peer) {
            Ok(caller) => {
                keyed = Some(caller);
                match rate_check(&api, caller) {
                    Ok(()) => route(&api, req, caller, &log.request_id, &mut log.run).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
    };
    let mut resp = result.unwrap_or_else(|e| {
        if let ApiError::Internal(m) = &e {
            tracing::error!(request_id = %log.request_id, message = %m, "internal error");
        }
        api.metrics.rejected(e.code());
        e.into_response(&log.request_id).map(BodyExt::boxed)
    });
    if let Some(Caller::Key(i)) = keyed {
        api.rate.headers(i, resp.headers_mut());
    }
    if let Ok(v) = HeaderValue::from_str(&log.request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    log.code = Some(resp.status().as_u16());
    resp
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Execute,
    Connect,
    SubmitJob,
    GetJob,
    CancelJob,
    Languages,
    Capabilities,
    Health,
    Live,
    Ready,
    Version,
    /// `/metrics`, `/openapi.json`, the playground (`service.rs`).
    Service(super::service::Endpoint),
    Mcp,
    OpenSession,
    ListSessions,
    CloseSession,
    ExecuteCell,
    GetFile,
    PutFile,
    DeleteFile,
}

/// The route table: (method, path) and what each answers with; `{id}` matches one path
/// segment.
const ROUTES: [(Method, &str, Endpoint); 21] = [
    (Method::POST, "/v1/execute", Endpoint::Execute),
    (Method::GET, "/v1/connect", Endpoint::Connect),
    (Method::POST, "/v1/jobs", Endpoint::SubmitJob),
    (Method::GET, "/v1/jobs/{id}", Endpoint::GetJob),
    (Method::DELETE, "/v1/jobs/{id}", Endpoint::CancelJob),
    (Method::GET, "/v1/languages", Endpoint::Languages),
    (Method::GET, "/v1/capabilities", Endpoint::Capabilities),
    (Method::GET, "/health", Endpoint::Health),
    (Method::GET, "/livez", Endpoint::Live),
    (Method::GET, "/readyz", Endpoint::Ready),
    (Method::GET, "/version", Endpoint::Version),
    (Method::POST, "/mcp", Endpoint::Mcp),
    (Method::GET, "/mcp", Endpoint::Mcp),
    (Method::DELETE, "/mcp", Endpoint::Mcp),
    (Method::POST, "/v1/sessions", Endpoint::OpenSession),
    (Method::GET, "/v1/sessions", Endpoint::ListSessions),
    (Method::DELETE, "/v1/sessions/{id}", Endpoint::CloseSession),
    (Method::POST, "/v1/sessions/{id}/execute", Endpoint::ExecuteCell),
    (Method::GET, "/v1/sessions/{id}/files/{path}", Endpoint::GetFile),
    (Method::PUT, "/v1/sessions/{id}/files/{path}", Endpoint::PutFile),
    (Method::DELETE, "/v1/sessions/{id}/files/{path}", Endpoint::DeleteFile),
];

// ---- the service's routes (`/metrics`, `/openapi.json`, the playground): service.rs ----
/// Every route: the table above, then `service::ROUTES`.
pub(super) fn all_routes() -> impl Iterator<Item = (Method, &'static str, Endpoint)> {
    let own = ROUTES.iter().map(|(m, p, e)| (m.clone(), *p, *e));
    own.chain(super::service::ROUTES.iter().map(|(m, p, e)| (m.clone(), *p, Endpoint::Service(*e))))
}

/// Takes a token from the caller's key's bucket (`[rate_limit]`); callers without a key pass.
fn rate_check(api: &Api, caller: Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Key(i) => api.rate.check(i),
        Caller::Local => Ok(()),
    }
}
// ---- end of the service's routes ----

/// Whether `path` matches `pattern`, and the `{id}` it holds: `{id}` matches one path
/// segment, a final `{path}` the rest (one segment or more).
fn matches<'a>(pattern: &str, path: &'a str) -> Option<&'a str> {
    let Some((prefix, suffix)) = pattern.split_once("{id}") else { return (pattern == path).then_some("") };
    let rest = path.strip_prefix(prefix)?;
    let id = match suffix.strip_suffix("{path}") {
        Some(middle) => {
            let (id, file) =
                rest.split_once('/').map(|(id, r)| (id, r.strip_prefix(middle.trim_start_matches('/'))))?;
            file.filter(|f| !f.is_empty())?;
            id
        }
        None => rest.strip_suffix(suffix)?,
    };
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The endpoint (and `{id}`) for a method and path: 404 for an unknown path, 405 (with
/// what is allowed) for a known path asked with another method.
fn select<'a>(method: &Method, path: &'a str) -> Result<(Endpoint, &'a str), ApiError> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
    const GET_POST: &[Method] = &[Method::GET, Method::POST];
    const DELETE: &[Method] = &[Method::DELETE];
    const GET_PUT_DELETE: &[Method] = &[Method::GET, Method::PUT, Method::DELETE];
    const POST_GET_DELETE: &[Method] = &[Method::POST, Method::GET, Method::DELETE];
    let mut allowed = Vec::new();
    for (m, pattern, e) in all_routes() {
        if let Some(id) = matches(pattern, path) {
            if m == *method {
                return Ok((e, id));
            }
            allowed.push(m);
        }
    }
    match allowed.as_slice() {
        [] => Err(ApiError::NotFound),
        [m] if *m == Method::POST => Err(ApiError::MethodNotAllowed(POST)),
        [m] if *m == Method::DELETE => Err(ApiError::MethodNotAllowed(DELETE)),
        [_] => Err(ApiError::MethodNotAllowed(GET)),
        [a, b] if *a == Method::POST || *b == Method::POST => Err(ApiError::MethodNotAllowed(GET_POST)),
        [_, _] => Err(ApiError::MethodNotAllowed(GET_DELETE)),
        all if all.contains(&Method::POST) => Err(ApiError::MethodNotAllowed(POST_GET_DELETE)),
        _ => Err(ApiError::MethodNotAllowed(GET_PUT_DELETE)),
    }
}

async fn route(
    api: &Arc<Api>,
    req: Request<Incoming>,
    caller: Caller,
    request_id: &str,
    log: &mut RunLog,
) -> Result<Reply, ApiError> {
    let path = req.uri().path().to_owned();
    let (endpoint, id) = select(req.method(), &path)?;
    let full = |r: Resp| r.map(BodyExt::boxed);
    let resp = match endpoint {
        Endpoint::Execute => return execute(api, req, caller, request_id, log).await,
        Endpoint::Connect => return super::live::connect(api, req, caller, request_id),
        Endpoint::SubmitJob => job_routes::submit(api, req, caller, log).await,
        Endpoint::GetJob => job_routes::get(api, id, caller).await,
        Endpoint::CancelJob => job_routes::cancel(api, id, caller).await,
        Endpoint::Languages => Ok(languages(api)),
        Endpoint::Capabilities => Ok(json(StatusCode::OK, &super::access::capabilities(&api.policy, caller))),
        Endpoint::Health => Ok(health(api).await),
        Endpoint::Live => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        Endpoint::Ready if api.jobs.stopping() => {
            Ok(json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": "stopping"})))
        }
        // the runner (the sandbox machinery) is up once the daemon serves; a language must run
        Endpoint::Ready if !api.languages.all().iter().any(|(_, a)| matches!(a, Availability::Available { .. })) => {
            Ok(json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": "no_language_available"})))
        }
        Endpoint::Ready => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ready"}))),
        Endpoint::Version => Ok(version()),
        Endpoint::Service(e) => super::service::route(api, e).await,
        Endpoint::Mcp => Ok(super::mcp::handle(&api.mcp, req, caller).await),
        Endpoint::OpenSession => session_routes::open(api, req, caller).await,
        Endpoint::ListSessions => Ok(session_routes::list(api, caller)),
        Endpoint::CloseSession => session_routes::close(api, id, caller).await,
        Endpoint::ExecuteCell => session_routes::execute(api, req, id, caller, request_id, log).await,
        Endpoint::GetFile => session_routes::get_file(api, &path, id, caller).await,
        Endpoint::PutFile => session_routes::put_file(api, req, id, caller).await,
        Endpoint::DeleteFile => session_routes::delete_file(api, &path, id, caller).await,
    };
    resp.map(full)
}

/// Who is asking: what a job's owner is, so only its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// The Unix socket (its file permissions are the access control), or TCP with no keys
    /// configured: sees every job.
    Local,
    /// TCP with the API key at this index: sees its own jobs.
    Key(usize),
}

/// Paths any client may ask without a key: the probes of an orchestrator (they say
/// nothing but whether the daemon serves and takes work).
const KEYLESS: [&str; 2] = ["/livez", "/readyz"];

/// On TCP with keys configured: `X-Api-Key: KEY` or `Authorization: Bearer KEY`, compared in
/// constant time against every key.
fn authorize(api: &Api, req: &Request<Incoming>, peer: Peer) -> Result<Caller, ApiError> {
    let path = req.uri().path();
    if matches!(peer, Peer::Unix)
        || api.policy.api_keys.is_empty()
        || KEYLESS.contains(&path)
        || super::service::keyless(api, path)
    {
        return Ok(Caller::Local);
    }
    let headers = req.headers();
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer));
    check_key(api, peer, given)
}

/// The caller holding `given` (any of the configured keys, compared in constant time; a
/// local caller needs none): what every route and dialect authorizes with.
pub(super) fn check_key(api: &Api, peer: Peer, given: Option<&str>) -> Result<Caller, ApiError> {
    if matches!(peer, Peer::Unix) || api.policy.api_keys.is_empty() {
        return Ok(Caller::Local);
    }
    let given = given.map(str::trim).ok_or(ApiError::Unauthorized)?;
    // every key compared, whichever matches
    let mut found = None;
    for (i, key) in api.policy.api_keys.iter().enumerate() {
        if bool::from(key.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(i);
        }
    }
    found.map(Caller::Key).ok_or(ApiError::Unauthorized)
}

/// The token of `Authorization: Bearer TOKEN` (the scheme in any case, RFC 7235).
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

async fn execute(
    api: &Arc<Api>,
    req: Request<Incoming>,
    caller: Caller,
    request_id: &str,
    log: &mut RunLog,
) -> Result<Reply, ApiError> {
    let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // the key's own bound first: a key over it sends no body to hold
    let per_key = api.rate.run(match caller {
        Caller::Key(i) => Some(i),
        Caller::Local => None,
    })?;
    // the place only once the body is in (its bytes are held meanwhile, within a budget)
    let (body, _held) = read_json_body(api, req).await?;
    let ticket = api.limiter.admit()?;
    let dto: ExecuteRequest = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    if dto.callback_url.is_some() {
        return Err(ApiError::Invalid("callback_url is for POST /v1/jobs".into()));
    }
    let stream = super::live::format(accept.as_deref(), dto.stream);
    let planned = plan(api, dto, caller)?;
    log.language = Some(planned.lang.id.clone());
    if let Some(format) = stream {
        return super::live::stream(api, planned, ticket, per_key, format, request_id);
    }
    let waiting = Instant::now();
    let slot = api.limiter.slot(ticket).await?;
    let network = match &planned.work {
        Work::Single(p) => p.access.network.is_some(),
        Work::Judge(r) => r.access.network.is_some(),
    };
    api.metrics.started(waiting.elapsed(), network);
    let cancel = Cancel::new()?;
    let (body, status, took) = perform(api, planned, slot, cancel, request_id).await?;
    log.run_ms = Some(took.as_secs_f64() * 1000.0);
    log.status = Some(status);
    Ok(json(StatusCode::OK, &body).map(BodyExt::boxed))
}

/// A `/v1/execute` request given as JSON (the MCP tool's), answered as JSON.
pub(super) async fn execute_value(
    api: &Api,
    body: serde_json::Value,
    caller: Caller,
) -> Result<serde_json::Value, ApiError> {
    let ticket = api.limiter.admit()?;
    let dto: ExecuteRequest = serde_json::from_value(body).map_err(|e| from_json(&e))?;
    let planned = plan(api, dto, caller)?;
    let slot = api.limiter.slot(ticket).await?;
    let (body, _, _) = perform(api, planned, slot, Cancel::new()?, "mcp").await?;
    Ok(body)
}

/// Runs planned work on a blocking thread with `slot` (and, for tests, whatever extra slots
/// are free), killed through `cancel` if this future is dropped. Returns the response body,
/// the status for the log, and the time in the executor.
pub(super) async fn perform(
    api: &Api,
    planned: Planned,
    slot: Permit,
    cancel: Cancel,
    request_id: &str,
) -> Result<(serde_json::Value, &'static str, std::time::Duration), ApiError> {
    let id = api.next_run.fetch_add(1, Ordering::Relaxed);
    // Dropped when the client goes away (hyper drops this future) or the run ends: in the
    // first case the run is killed.
    let _running = Running::new(api, id, cancel.clone())?;
    let killed = cancel.clone();
    let limiter = api.limiter.clone();
    let metrics = Arc::clone(&api.metrics);
    let executor = Arc::clone(&api.executor);
    let Planned { lang, version, work, files } = planned;
    let lang_id = lang.id.clone();
    let request_id = request_id.to_owned();
    // the response is built here too: encoding many tests' outputs and files is work
    let (result, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let done = match work {
            Work::Single(mut program) => {
                program.cancel = Some(cancel);
                pipeline::execute(&*executor, &lang, program).map(Done::Single)
            }
            Work::Judge(mut request) => {
                request.cancel = Some(cancel);
                // the tests' extra slots are taken once the compile is done
                let mut extra = Vec::new();
                let mut workers = |n: usize| {
                    extra = limiter.extra(n.saturating_sub(1));
                    1 + extra.len()
                };
                judge::judge(&*executor, &lang, request, &mut workers).map(Done::Judge)
            }
        };
        drop(slot);
        let took = started.elapsed();
        if let Err(e) = &done {
            metrics.failed(e);
        }
        let compiled = match &done {
            Ok(Done::Single(o)) => Some(o),
            Ok(Done::Judge(j)) => Some(&j.outcome),
            Err(_) => None,
        };
        if let Some(o) = compiled {
            let hit = o.compile_cache.map(|c| c == pipeline::CacheUse::Hit);
            let ran = o.compile.as_ref().filter(|_| hit != Some(true)).map(|c| c.wall_time);
            metrics.compile(&lang.id, hit, ran);
        }
        let lang = LanguageRef { id: lang.id.clone(), version };
        let body = done.map_err(ApiError::from).and_then(|done| {
            let (body, status) = match done {
                Done::Single(o) => {
                    let status = o.verdict.as_str();
                    (serde_json::to_value(ExecuteResponse::new(&request_id, o, lang, files.as_ref())), status)
                }
                Done::Judge(j) => {
                    let status = j.status();
                    (serde_json::to_value(JudgeResponse::new(&request_id, j, lang, files.as_ref())), status)
                }
            };
            let body = body.map_err(|e| ApiError::Internal(format!("encoding the response: {e}")))?;
            Ok((body, status))
        });
        (body, took)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the run's thread failed: {e}")))?;
    if killed.is_cancelled() && api.stopping() {
        // killed at the shutdown's deadline: not the program's doing, nor a daemon fault
        return Err(ApiError::Stopping);
    }
    let (body, status) = result?;
    api.metrics.run(&lang_id, status, took);
    Ok((body, status, took))
}

/// What a run produced.
enum Done {
    Single(pipeline::Outcome),
    Judge(judge::Judged),
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

/// A client has this long to send its body (a slow one holds no run slot or queue place
/// meanwhile, only its connection and the bytes it has sent).
pub(super) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the content type and size, then reads the body within `BODY_TIMEOUT`, its bytes
/// held from the limiter's body budget (given back when the returned permit is dropped).
pub(super) async fn read_json_body(
    api: &Api,
    req: Request<Incoming>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_body(api, req).await
}

/// Reads the body within the size and time bounds, whatever its content type (the dialects
/// whose clients send JSON as `text/plain` need that).
pub(super) async fn read_body(
    api: &Api,
    req: Request<Incoming>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let max = api.policy.max_body_bytes;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(max));
    }
    let max_bytes = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = req.into_body();
    let mut held = None;
    let mut got = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::BadJson(format!("reading the body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if got.len() + data.len() > max_bytes {
                return Err(ApiError::TooLarge(max));
            }
            api.limiter.body_bytes(&mut held, data.len())?;
            got.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(ApiError::BodyTimeout(BODY_TIMEOUT)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok((Bytes::from(got), held)),
    }
}

fn languages(api: &Api) -> Resp {
    json(StatusCode::OK, &LanguagesResponse { languages: language_infos(api) })
}

/// `GET /v1/languages`' list as JSON values (for the MCP tool).
pub(super) fn language_list(api: &Api) -> Vec<serde_json::Value> {
    language_infos(api).iter().filter_map(|l| serde_json::to_value(l).ok()).collect()
}

fn language_infos(api: &Api) -> Vec<LanguageInfo> {
    api.languages
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
        .collect()
}

async fn health(api: &Api) -> Resp {
    let d = &api.description;
    let body = HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: api.uptime().as_secs(),
        cgroup: CgroupInfo { mode: d.cgroup_mode, layout: d.cgroup_layout.clone() },
        rootfs: d.rootfs.clone(),
        seccomp: SeccompInfo { profile: d.seccomp_profile.clone(), instructions: d.seccomp_instructions },
        landlock: LandlockHealth { enabled: d.landlock.enabled, abi: d.landlock.abi },
        runs: RunsInfo {
            concurrency: api.policy.concurrency,
            queue: api.policy.queue,
            running: api.limiter.running(),
            waiting: api.limiter.waiting(),
        },
        jobs: JobsInfo {
            pending: api.jobs.store.pending().await.ok(),
            max_pending: api.policy.max_pending_jobs,
            held: api.jobs.held(),
            store: api.jobs.store.describe(),
        },
        compile_cache: api.compile_cache.as_ref().map(|c| {
            let s = c.stats();
            CacheInfo { entries: s.entries, bytes: s.bytes, max_bytes: s.max_bytes }
        }),
        network: NetworkInfo {
            enabled: api.policy.network.is_some(),
            uplink: d.network_uplink.clone(),
            max_concurrent: api.policy.network.as_ref().map_or(0, |n| n.max_concurrent),
        },
        mounts: api.policy.mounts.iter().map(|m| m.mount.name.clone()).collect(),
    };
    json(StatusCode::OK, &body)
}

fn version() -> Resp {
    json(StatusCode::OK, &VersionResponse { name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_answers_404_and_405() {
        for (m, p, e) in all_routes() {
            let path = p.replace("{id}", "abc").replace("{path}", "data/in.csv");
            assert_eq!(select(&m, &path).unwrap(), (e, if p.contains("{id}") { "abc" } else { "" }));
        }
        assert_eq!(select(&Method::GET, "/v1/execute").unwrap_err(), ApiError::MethodNotAllowed(&[Method::POST]));
        assert_eq!(
            select(&Method::POST, "/v1/jobs/x").unwrap_err(),
            ApiError::MethodNotAllowed(&[Method::GET, Method::DELETE])
        );
        assert_eq!(select(&Method::GET, "/v1/jobs/").unwrap_err(), ApiError::NotFound);
        assert_eq!(select(&Method::GET, "/v1/jobs/a/b").unwrap_err(), ApiError::NotFound);
        assert_eq!(select(&Method::DELETE, "/health").unwrap_err(), ApiError::MethodNotAllowed(&[Method::GET]));
        assert_eq!(select(&Method::GET, "/v2/execute").unwrap_err(), ApiError::NotFound);
        assert_eq!(select(&Method::GET, "/health/").unwrap_err(), ApiError::NotFound);
        // a session's file path is the rest of the path; its id one segment
        assert_eq!(select(&Method::PUT, "/v1/sessions/s1/files/a/b/c").unwrap(), (Endpoint::PutFile, "s1"));
        assert_eq!(select(&Method::GET, "/v1/sessions/s1/files/").unwrap_err(), ApiError::NotFound);
        assert_eq!(select(&Method::POST, "/v1/sessions/a/b/execute").unwrap_err(), ApiError::NotFound);
        assert_eq!(
            select(&Method::PUT, "/mcp").unwrap_err(),
            ApiError::MethodNotAllowed(&[Method::POST, Method::GET, Method::DELETE])
        );
        assert_eq!(
            select(&Method::POST, "/v1/sessions/s1/files/a").unwrap_err(),
            ApiError::MethodNotAllowed(&[Method::GET, Method::PUT, Method::DELETE])
        );
        assert_eq!(
            select(&Method::PUT, "/v1/sessions").unwrap_err(),
            ApiError::MethodNotAllowed(&[Method::GET, Method::POST])
        );
    }

    #[test]
    fn the_readme_documents_every_route() {
        let readme = include_str!("../../README.md");
        for (m, p, _) in all_routes() {
            let line = format!("### `{} {p}`", m.as_str());
            assert!(readme.contains(&line), "README.md has no section {line:?}");
        }
    }
}
