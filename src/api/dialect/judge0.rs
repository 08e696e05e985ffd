//! Judge0 CE 1.13.1 at `[dialects] judge0` (`/judge0`; `/` for a drop-in): submissions
//! (`wait=true` runs at once; otherwise a job in the job store, whose id is the token),
//! batches, `base64_encoded`, `fields`, languages with 1.13.1's ids, statuses, `/about`
//! (`1.13.1`, the version the judge0 SDK looks up), `/config_info`, `/workers`, auth with
//! `X-Auth-Token` (any configured API key). A submission is one native judge test: the
//! native checker `trim` compares `expected_output`, and the verdict becomes Judge0's
//! status as its `isolate_job.rb` decides (`submission.rs`). See
//! `../shared/reference/compat.md` §2 for the traps.

mod submission;
mod tables;

use std::collections::{HashMap, VecDeque};

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use self::submission::{FieldErrors, Record, fields, render};
use super::{Call, empty, execute, native, plain, query, reply};
use crate::api::Api;
use crate::api::error::ApiError;
use crate::api::routes::job_routes::{checked_callback, owner, visible};
use crate::api::routes::{Caller, Resp, bearer, check_key, read_body};
use crate::job::{self, NewJob, State, Submitted};
use crate::lang::Availability;

/// The version `/about` reports: the one whose language ids the judge0 SDK has.
const VERSION: &str = "1.13.1";

/// `wait=true` submissions kept for `GET /submissions/{token}` (they never enter the job
/// store); beyond, the oldest are forgotten.
const MAX_RECENT: usize = 1000;

/// `wait=true` submissions, newest last.
#[derive(Debug, Default)]
pub(in crate::api) struct Recent {
    records: HashMap<String, Record>,
    order: VecDeque<String>,
}

impl Recent {
    fn keep(&mut self, id: String, record: Record) {
        if self.records.insert(id.clone(), record).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_RECENT {
            if let Some(old) = self.order.pop_front() {
                self.records.remove(&old);
            }
        }
    }
}

/// Answers one Judge0 request.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let headers = call.req.headers();
    let token = headers
        .get("x-auth-token")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query(&call.req, "X-Auth-Token"))
        .or_else(|| {
            let auth = headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            auth.and_then(bearer).map(str::to_owned)
        });
    // Judge0's 401 has no body
    let Ok(caller) = check_key(call.api, call.peer, token.as_deref()) else { return empty(StatusCode::UNAUTHORIZED) };
    let method = call.req.method().clone();
    let path = call.path.clone();
    let api = call.api;
    match (method, path.as_str()) {
        (Method::GET, "/") | (Method::POST, "/authenticate" | "/authorize") => empty(StatusCode::OK),
        (Method::GET, "/about") => reply(StatusCode::OK, &about()),
        (Method::GET, "/version") => plain(StatusCode::OK, VERSION),
        (Method::GET, "/license") => plain(StatusCode::OK, "GPL-3.0 (Judge0); this server is codeexec, Apache-2.0"),
        (Method::GET, "/isolate") => plain(StatusCode::OK, "codeexec's own sandbox (namespaces, cgroups, seccomp)"),
        (Method::GET, "/statuses") => {
            let all: Vec<Value> = tables::STATUSES.iter().map(|(id, d)| json!({"id": id, "description": d})).collect();
            reply(StatusCode::OK, &all)
        }
        (Method::GET, "/languages") => reply(StatusCode::OK, &languages(api, false)),
        (Method::GET, "/languages/all") => reply(StatusCode::OK, &languages(api, true)),
        (Method::GET, p) if p.starts_with("/languages/") => language(api, &p["/languages/".len()..]),
        (Method::GET, "/config_info") => reply(StatusCode::OK, &tables::config_info()),
        (Method::GET, "/workers") => reply(StatusCode::OK, &workers(api).await),
        (Method::POST, "/submissions") => submit(call, caller).await,
        (Method::POST, "/submissions/batch") => submit_batch(call, caller).await,
        (Method::GET, "/submissions/batch") => get_batch(&call, caller).await,
        // the index needs Judge0's authorization, which codeexec does not configure
        (Method::GET, "/submissions") => empty(StatusCode::FORBIDDEN),
        (Method::GET, p) if p.starts_with("/submissions/") => get(&call, caller, &p["/submissions/".len()..]).await,
        (Method::DELETE, p) if p.starts_with("/submissions/") => {
            delete(&call, caller, &p["/submissions/".len()..]).await
        }
        _ => reply(StatusCode::NOT_FOUND, &json!({"status": 404, "error": "Not Found"})),
    }
}

fn about() -> Value {
    json!({
        "version": VERSION,
        "homepage": "https://judge0.com",
        "source_code": "https://github.com/judge0/judge0",
        "maintainer": "codeexec, serving Judge0 CE 1.13.1's API",
    })
}

fn error(status: StatusCode, text: &str) -> Resp {
    reply(status, &json!({ "error": text }))
}

/// A native refusal in Judge0's shapes.
fn refusal(e: &ApiError) -> Resp {
    match e {
        ApiError::Invalid(m) => reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": m})),
        ApiError::BadJson(_) => empty(StatusCode::BAD_REQUEST),
        ApiError::Busy | ApiError::JobsFull(_) | ApiError::QueueFull(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "queue is full")
        }
        other => error(other.status(), &other.message()),
    }
}

/// The language's name with codeexec's version, and its native entry.
fn language_of(api: &Api, id: i64) -> Option<(&'static tables::Id, &crate::lang::Language, String)> {
    let entry = tables::find(id)?;
    let (lang, availability) = api.languages.find(entry.native).ok()?;
    let Availability::Available { version } = availability else { return None };
    Some((entry, lang, entry.name.replace("{}", version)))
}

fn languages(api: &Api, all: bool) -> Vec<Value> {
    let mut out: Vec<(String, Value)> = tables::IDS
        .iter()
        .filter(|l| l.listed)
        .filter_map(|l| language_of(api, i64::from(l.id)))
        .map(|(l, _, name)| {
            let v = if all {
                json!({"id": l.id, "name": name, "is_archived": false})
            } else {
                json!({"id": l.id, "name": name})
            };
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

fn language(api: &Api, id: &str) -> Resp {
    let Some((entry, lang, name)) = id.parse().ok().and_then(|id| language_of(api, id)) else {
        return reply(StatusCode::NOT_FOUND, &json!({"status": 404, "error": "Not Found"}));
    };
    let body = json!({
        "id": entry.id,
        "name": name,
        "is_archived": false,
        "source_file": lang.main_file,
        "compile_cmd": lang.compile.as_ref().map(|c| c.command.join(" ")),
        "run_cmd": lang.run.command.join(" "),
    });
    reply(StatusCode::OK, &body)
}

async fn workers(api: &Api) -> Vec<Value> {
    let size = api.jobs.store.pending().await.unwrap_or(0);
    let (slots, running) = (api.policy.concurrency, api.limiter.running());
    vec![json!({
        "queue": "default", "size": size, "available": slots, "idle": slots.saturating_sub(running),
        "working": running, "paused": 0, "failed": 0,
    })]
}

/// The query flags every submission route reads.
struct Flags {
    base64: bool,
    fields: Vec<&'static str>,
}

#[allow(clippy::result_large_err)] // the error is the answer, made once
fn flags(req: &hyper::Request<hyper::body::Incoming>) -> Result<Flags, Resp> {
    let fields = fields(query(req, "fields").as_deref()).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    Ok(Flags { base64: query(req, "base64_encoded").as_deref() == Some("true"), fields })
}

/// Reads the body as a JSON object (JSON whatever the content type; empty is `{}`).
async fn body(api: &Api, req: hyper::Request<hyper::body::Incoming>) -> Result<Map<String, Value>, Resp> {
    let (bytes, _held) = read_body(api, req).await.map_err(|e| refusal(&e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(empty(StatusCode::BAD_REQUEST)),
    }
}

/// A new token: a UUID; the job's id is the same UUID without dashes.
fn token() -> (String, String) {
    let u = uuid::Uuid::new_v4();
    (u.hyphenated().to_string(), u.simple().to_string())
}

/// `POST /submissions`.
async fn submit(call: Call<'_>, caller: Caller) -> Resp {
    let Call { api, req, request_id, log, .. } = call;
    let f = match flags(&req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let wait = query(&req, "wait").as_deref() == Some("true");
    let r = match body(api, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (mut record, request) = match prepare(api, &r, f.base64) {
        Ok(x) => x,
        Err(errors) => return reply(StatusCode::UNPROCESSABLE_ENTITY, &errors),
    };
    let (token, id) = token();
    record.token = token.clone();
    if !wait {
        return match enqueue(api, caller, id, record, request).await {
            Ok(()) => reply(StatusCode::CREATED, &json!({ "token": token })),
            Err(resp) => resp,
        };
    }
    if record.callback_url.is_some() {
        // Judge0 calls back after a wait too; the job path does it for async submissions
        return reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"callback_url": ["is only for wait=false here"]}));
    }
    let dto = match native(request) {
        Ok(d) => d,
        Err(e) => return refusal(&e),
    };
    let answer = match execute(api, dto, caller, request_id, log).await {
        Ok(b) => b,
        Err(e) => return refusal(&e),
    };
    record.decide(&answer, job::now_ms());
    let name = language_of(api, record.language_id).map(|l| l.2).unwrap_or_default();
    let shown = render(&record, &f.fields, f.base64, &name);
    api.dialects.judge0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keep(id, record);
    match shown {
        Ok(v) => reply(StatusCode::CREATED, &v),
        Err(()) => reply(StatusCode::CREATED, &json!({"token": token, "error": UTF8_ERROR})),
    }
}

const UTF8_ERROR: &str =
    "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter";
const UTF8_ERROR_MANY: &str =
    "some attributes for one or more submissions cannot be converted to UTF-8, use base64_encoded=true query parameter";

/// A submission's record and native request, or its field errors.
fn prepare(api: &Api, r: &Map<String, Value>, base64: bool) -> Result<(Record, Value), FieldErrors> {
    let record = submission::parse(r, base64, job::now_ms())?;
    let Some((_, lang, _)) = language_of(api, record.language_id) else {
        let mut e = FieldErrors::new();
        e.insert("language_id".into(), vec![format!("language with id {} is not available", record.language_id)]);
        return Err(e);
    };
    let request = record.native(&lang.id, &lang.main_file);
    Ok((record, request))
}

/// Queues a submission as a job (checked as `POST /v1/jobs` checks it).
async fn enqueue(api: &Api, caller: Caller, id: String, record: Record, request: Value) -> Result<(), Resp> {
    let field = |name: &str, m: String| reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({ name: [m] }));
    let dto = native(request.clone()).map_err(|e| refusal(&e))?;
    crate::api::plan::plan(api, dto, caller).map_err(|e| match e {
        ApiError::Invalid(m) => field("base", m),
        other => refusal(&other),
    })?;
    let callback = match &record.callback_url {
        Some(url) => Some(checked_callback(api, url.clone()).await.map_err(|e| field("callback_url", e.message()))?),
        None => None,
    };
    let meta = json!({"name": "judge0", "record": record});
    let new = NewJob {
        id,
        owner: owner(api, caller),
        request: super::envelope(meta, request),
        callback,
        idempotency_key: None,
    };
    match api.jobs.store.submit(new).await {
        Ok(Submitted::Accepted(_) | Submitted::Existing(_)) => Ok(()),
        Err(e) => Err(refusal(&ApiError::from(e))),
    }
}

/// The record a token names, as it is now (None: unknown).
async fn lookup(api: &Api, caller: Caller, token: &str) -> Option<Record> {
    let id = uuid::Uuid::parse_str(token).ok()?.simple().to_string();
    if let Some(r) = api.dialects.judge0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).records.get(&id) {
        return Some(r.clone());
    }
    let job = visible(api, &id, caller).await.ok()?;
    from_job(&job)
}

/// A job's record: its submission, decided when it is done.
fn from_job(job: &job::Job) -> Option<Record> {
    let result = job.result.as_ref();
    let meta = result.and_then(|r| r.get("dialect")).and_then(|m| m.get("record"));
    let mut record = match meta {
        Some(m) => serde_json::from_value::<Record>(m.clone()).ok()?,
        // queued or running: only what the job itself says (its request is in the store)
        None => Record {
            token: uuid::Uuid::parse_str(&job.id).ok()?.hyphenated().to_string(),
            created_at: job.created_at,
            ..Record::default()
        },
    };
    match (job.status, result) {
        (State::Queued, _) => record.status_id = 1,
        (State::Running, _) => record.status_id = 2,
        (State::Done, Some(r)) => record.decide(r, job.finished_at.unwrap_or_else(job::now_ms)),
        _ => {
            record.status_id = 13;
            record.finished_at = job.finished_at;
            record.message = job.error.as_ref().map(|e| e.message.clone().into_bytes());
            record.codeexec_status = job.error.as_ref().map(|e| e.code.clone());
        }
    }
    Some(record)
}

/// `GET /submissions/{token}`.
async fn get(call: &Call<'_>, caller: Caller, token: &str) -> Resp {
    let f = match flags(&call.req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(record) = lookup(call.api, caller, token).await else {
        return reply(StatusCode::NOT_FOUND, &json!({"status": 404, "error": "Not Found"}));
    };
    let name = language_of(call.api, record.language_id).map(|l| l.2).unwrap_or_default();
    match render(&record, &f.fields, f.base64, &name) {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(()) => error(StatusCode::BAD_REQUEST, UTF8_ERROR),
    }
}

/// `DELETE /submissions/{token}`: a queued or running one is cancelled; the answer is
/// always base64, as Judge0's.
async fn delete(call: &Call<'_>, caller: Caller, token: &str) -> Resp {
    let f = match flags(&call.req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let api = call.api;
    let id = uuid::Uuid::parse_str(token).map(|u| u.simple().to_string()).unwrap_or_default();
    let kept = api.dialects.judge0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).records.remove(&id);
    let record = match kept {
        Some(r) => Some(r),
        None => match visible(api, &id, caller).await {
            Ok(job) => {
                let job = match api.jobs.store.cancel(&id, "deleted through Judge0's DELETE").await {
                    Ok(job::Cancelled::Now(j)) => {
                        api.jobs.kill(&id);
                        j
                    }
                    _ => job,
                };
                from_job(&job)
            }
            Err(_) => None,
        },
    };
    let Some(record) = record else {
        return reply(StatusCode::NOT_FOUND, &json!({"status": 404, "error": "Not Found"}));
    };
    let name = language_of(api, record.language_id).map(|l| l.2).unwrap_or_default();
    match render(&record, &f.fields, true, &name) {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(()) => error(StatusCode::BAD_REQUEST, UTF8_ERROR),
    }
}

/// `POST /submissions/batch`: each queued as a job; `wait` and `fields` do not apply.
async fn submit_batch(call: Call<'_>, caller: Caller) -> Resp {
    let Call { api, req, .. } = call;
    let base64 = query(&req, "base64_encoded").as_deref() == Some("true");
    let r = match body(api, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let items = r.get("submissions").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Err(resp) = batch_size(items.len()) {
        return resp;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut any = false;
    for item in &items {
        let empty_map = Map::new();
        let prepared = prepare(api, item.as_object().unwrap_or(&empty_map), base64);
        let (mut record, request) = match prepared {
            Ok(x) => x,
            Err(errors) => {
                out.push(json!(errors));
                continue;
            }
        };
        let (token, id) = token();
        record.token = token.clone();
        match enqueue(api, caller, id, record, request).await {
            Ok(()) => {
                any = true;
                out.push(json!({ "token": token }));
            }
            Err(resp) if resp.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                out.push(json!({"error": "the submission does not fit this server's languages or limits"}));
            }
            Err(resp) => return resp,
        }
    }
    reply(if any { StatusCode::CREATED } else { StatusCode::UNPROCESSABLE_ENTITY }, &out)
}

#[allow(clippy::result_large_err)] // the error is the answer, made once
fn batch_size(n: usize) -> Result<(), Resp> {
    match n {
        0 => Err(error(StatusCode::BAD_REQUEST, "there should be at least one submission in a batch")),
        n if n > tables::MAX_BATCH => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("number of submissions in a batch should be less than or equal to {}", tables::MAX_BATCH),
        )),
        _ => Ok(()),
    }
}

/// `GET /submissions/batch?tokens=a,b`: `null` for an unknown token.
async fn get_batch(call: &Call<'_>, caller: Caller) -> Resp {
    let f = match flags(&call.req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let header = call.req.headers().get("tokens").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let tokens = query(&call.req, "tokens").or(header).unwrap_or_default();
    let tokens: Vec<&str> = tokens.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if let Err(resp) = batch_size(tokens.len()) {
        return resp;
    }
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let v = match lookup(call.api, caller, t).await {
            None => Value::Null,
            Some(record) => {
                let name = language_of(call.api, record.language_id).map(|l| l.2).unwrap_or_default();
                match render(&record, &f.fields, f.base64, &name) {
                    Ok(v) => v,
                    Err(()) => return error(StatusCode::BAD_REQUEST, UTF8_ERROR_MANY),
                }
            }
        };
        out.push(v);
    }
    reply(StatusCode::OK, &json!({ "submissions": out }))
}

/// A finished job's callback, as Judge0 sends it: a PUT of the default fields, base64.
pub(super) fn callback(job: &job::Job, _meta: &Value) -> Option<(Method, bytes::Bytes)> {
    let record = from_job(job)?;
    let body = render(&record, &submission::DEFAULT_FIELDS, true, "").ok()?;
    Some((Method::PUT, bytes::Bytes::from(serde_json::to_vec(&body).ok()?)))
}
