//! API dialects: the request and response shapes of the services codeexec replaces, each
//! under a path prefix of its own (`[dialects]`), so their clients work unchanged. Every
//! dialect is a thin translation: it turns its request into a native [`ExecuteRequest`],
//! which goes through [`plan`] and the run or the judge as `POST /v1/execute` does (or
//! into the job store as `POST /v1/jobs` does), and turns the native answer into its own.
//! No dialect runs anything itself.
//!
//! One module per dialect: `piston.rs` (Piston v2), `judge0.rs` (Judge0 CE 1.13.1),
//! `codeexec_go.rs`, `aggiecode.rs`, `engine.rs`, `codeengine.rs` (the seed services).

mod aggiecode;
mod codeengine;
mod codeexec_go;
mod engine;
mod judge0;
mod piston;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::Api;
use super::error::ApiError;
use super::plan::plan;
use super::routes::{Caller, Peer, Resp, RunLog, perform};
use super::types::ExecuteRequest;
use crate::config::DialectMount;
use crate::run::Cancel;

/// `GET /v1/capabilities` → `dialects`: one served dialect.
#[derive(Debug, Serialize)]
pub(super) struct DialectOffer {
    pub(super) name: &'static str,
    pub(super) prefix: String,
}

/// The dialects served, for `/v1/capabilities`.
pub(super) fn offers(mounts: &[DialectMount]) -> Vec<DialectOffer> {
    mounts.iter().map(|m| DialectOffer { name: m.name, prefix: m.prefix.clone() }).collect()
}

/// The dialect serving `path`, if any: a dialect at its own prefix first; the one mounted
/// at `/` only for paths the native API does not have (`native`).
pub(super) fn select<'a>(mounts: &'a [DialectMount], path: &str, native: bool) -> Option<&'a DialectMount> {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
    mounts
        .iter()
        .find(|m| m.prefix != "/" && under(&m.prefix))
        .or_else(|| (!native).then(|| mounts.iter().find(|m| m.prefix == "/")).flatten())
}

/// One request to a dialect: `path` is what follows its prefix (`/execute`).
pub(super) struct Call<'a> {
    pub(super) api: &'a Arc<Api>,
    pub(super) req: Request<Incoming>,
    pub(super) peer: Peer,
    pub(super) path: String,
    pub(super) request_id: &'a str,
    pub(super) log: &'a mut RunLog,
}

/// Answers a request to `mount`'s dialect, in that dialect's own shapes (errors included).
pub(super) async fn handle(
    api: &Arc<Api>,
    mount: &DialectMount,
    req: Request<Incoming>,
    peer: Peer,
    request_id: &str,
    log: &mut RunLog,
) -> Resp {
    let full = req.uri().path();
    let rest = if mount.prefix == "/" { full } else { &full[mount.prefix.len()..] };
    let path = if rest.is_empty() { "/".to_owned() } else { rest.to_owned() };
    let call = Call { api, req, peer, path, request_id, log };
    match mount.name {
        "piston" => piston::handle(call).await,
        "judge0" => judge0::handle(call).await,
        "codeexec-go" => codeexec_go::handle(call).await,
        "aggiecode" => aggiecode::handle(call).await,
        "engine" => engine::handle(call).await,
        _ => codeengine::handle(call).await,
    }
}

/// Runs a native request as `POST /v1/execute` does (a queue place, the plan, a run slot),
/// and answers its native body.
pub(super) async fn execute(
    api: &Api,
    dto: ExecuteRequest,
    caller: Caller,
    request_id: &str,
    log: &mut RunLog,
) -> Result<Value, ApiError> {
    let ticket = api.limiter.admit()?;
    let planned = plan(api, dto, caller)?;
    log.language = Some(planned.lang.id.clone());
    let slot = api.limiter.slot(ticket).await?;
    let (body, status, took) = perform(api, planned, slot, Cancel::new()?, request_id).await?;
    log.status = Some(status);
    log.run_ms = Some(took.as_secs_f64() * 1000.0);
    Ok(body)
}

/// A native request from its JSON (what a dialect builds).
pub(super) fn native(request: Value) -> Result<ExecuteRequest, ApiError> {
    serde_json::from_value(request).map_err(|e| ApiError::Internal(format!("a dialect built a bad request: {e}")))
}

/// The text of a native stage's or test's `stdout`/`stderr` (decoded when it came as
/// base64, because it was not UTF-8).
pub(super) fn stream(part: &Value, name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let text = part.get(name).and_then(Value::as_str).unwrap_or("");
    if part.get(format!("{name}_encoding")).and_then(Value::as_str) == Some("base64") {
        return base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default();
    }
    text.as_bytes().to_vec()
}

/// A JSON answer with any status.
pub(super) fn reply<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    super::json(status, body)
}

/// An answer with an empty body.
pub(super) fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A `text/plain` answer.
pub(super) fn plain(status: StatusCode, text: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(text.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The value of a query parameter (percent-decoded; `+` is a space).
pub(super) fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

fn decode_component(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).and_then(|(h, l)| u8::try_from(h * 16 + l).ok()),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A dialect's job as the store keeps it: the native request, and what the dialect needs
/// to answer in its own shape (`{"name": "judge0", …}`), which the worker puts beside the
/// native result as `dialect`.
pub(super) fn envelope(dialect: Value, request: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"dialect": dialect, "request": request})).unwrap_or_default()
}

/// A stored job request: a native one, or a dialect's envelope (its native request and
/// the dialect's part).
pub(super) fn stored(bytes: &[u8]) -> Result<(ExecuteRequest, Option<Value>), serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    let dialect = match v.as_object_mut() {
        Some(m) if m.contains_key("dialect") && m.contains_key("request") && m.len() == 2 => m.remove("dialect"),
        _ => None,
    };
    match dialect {
        Some(d) => Ok((serde_json::from_value(v["request"].take())?, Some(d))),
        None => Ok((serde_json::from_value(v)?, None)),
    }
}

/// A dialect job's callback, in its dialect's shape: the method and body (None: a native
/// job, called back as `POST /v1/jobs` documents).
pub(super) fn callback(job: &crate::job::Job) -> Option<(hyper::Method, Bytes)> {
    let meta = job.result.as_ref()?.get("dialect")?;
    match meta.get("name").and_then(Value::as_str)? {
        "judge0" => judge0::callback(job, meta),
        "engine" => engine::callback(job, meta),
        _ => None,
    }
}

/// What the dialects keep in memory: Judge0's `wait=true` submissions (which run at once,
/// not through the job store), for `GET /submissions/{token}`.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) judge0: std::sync::Mutex<judge0::Recent>,
}
