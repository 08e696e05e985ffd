//! One delivery: attempts, each resolving and checking the target again and connecting to
//! a checked address itself (no library resolves anything), TLS for https, and the waits
//! between them.

use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{CallbackError, Policy, Target, resolve, sign, tls};
use crate::error_chain;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver's answer was final: a redirect (never followed), or a 4xx other than
    /// 408 and 429.
    Rejected,
    /// Not sent, or not sent again: the target resolved to an address the policy refuses,
    /// the body is over `max_body`, the job id is not a valid header value, or TLS cannot
    /// be set up with the policy's `extra_roots`.
    Refused,
    /// Every attempt failed in a way worth retrying (5xx, 408, 429, timeout, connection or
    /// DNS error), and none is left.
    Exhausted,
}

/// What a delivery did, for the job's record and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// How it ended.
    pub outcome: Outcome,
    /// Attempts started (0 when nothing could be sent at all).
    pub attempts: u32,
    /// The last attempt's HTTP status, if it got an answer.
    pub status: Option<u16>,
    /// What went wrong at the last attempt (`None` once delivered).
    pub error: Option<String>,
    /// From the start of the first attempt to the end of the last.
    pub elapsed: Duration,
}

/// How an attempt connects to a checked address; tests substitute one that records.
pub(super) type Connect =
    dyn Fn(SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> + Send + Sync;

/// POSTs `body` to the target until it is delivered, refused or out of attempts (see the
/// module documentation for the headers, the signature and what is retried). Never fails:
/// what happened is in the returned [`Delivery`].
pub async fn deliver(target: &Target, job_id: &str, body: Bytes, policy: &Policy) -> Delivery {
    deliver_with(target, job_id, Method::POST, body, policy).await
}

/// As [`deliver`], with another method (an API dialect's callback: Judge0 PUTs).
pub async fn deliver_with(target: &Target, job_id: &str, method: Method, body: Bytes, policy: &Policy) -> Delivery {
    let via =
        |addr| -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> { Box::pin(TcpStream::connect(addr)) };
    deliver_via(target, job_id, (method, body), policy, &via).await
}

pub(super) async fn deliver_via(
    target: &Target,
    job_id: &str,
    (method, body): (Method, Bytes),
    policy: &Policy,
    connect: &Connect,
) -> Delivery {
    let started = Instant::now();
    let mut d = Delivery { outcome: Outcome::Refused, attempts: 0, status: None, error: None, elapsed: Duration::ZERO };
    if let Some(why) = unsendable(job_id, &body, policy) {
        tracing::warn!(job = %job_id, host = %target.authority(), reason = %why, "callback not sent");
        d.error = Some(why);
        return d;
    }
    let tls = match target.is_https().then(|| tls::connector(&policy.extra_roots)).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            d.error = Some(error_chain(&e));
            tracing::error!(job = %job_id, error = d.error, "callback not sent: TLS cannot be set up");
            return d;
        }
    };
    let via = Via { connect, tls: tls.as_ref(), method: &method };
    let attempts = policy.attempts.max(1);
    for n in 1..=attempts {
        d.attempts = n;
        let tried = tokio::time::timeout(policy.timeout, attempt(target, job_id, &body, n, policy, &via)).await;
        let tried = tried.unwrap_or_else(|_| Attempt::Failed(format!("no answer within {:?}", policy.timeout)));
        let (status, step) = next_step(&tried);
        d.status = status.map(|s| s.as_u16());
        d.error = tried.error();
        let retry_after = match step {
            Step::Done(outcome) => {
                d.outcome = outcome;
                break;
            }
            Step::Retry(after) => after,
        };
        d.outcome = Outcome::Exhausted;
        tracing::info!(job = %job_id, host = %target.authority(), attempt = n, status = d.status, error = d.error, "callback attempt failed");
        if n < attempts {
            let wait = retry_after.map_or_else(|| backoff(policy, n, job_id), |r| r.min(policy.max_backoff));
            tokio::time::sleep(wait).await;
        }
    }
    d.elapsed = started.elapsed();
    tracing::info!(job = %job_id, host = %target.authority(), attempts = d.attempts, outcome = ?d.outcome, status = d.status, error = d.error, "callback finished");
    d
}

/// Why nothing can be sent at all, checked before the first attempt.
fn unsendable(job_id: &str, body: &Bytes, policy: &Policy) -> Option<String> {
    if body.len() > policy.max_body {
        return Some(format!("the body has {} bytes, over the limit of {}", body.len(), policy.max_body));
    }
    if HeaderValue::from_str(job_id).is_err() {
        return Some(format!("the job id {job_id:?} is not a valid header value"));
    }
    None
}

/// One attempt's result.
#[derive(Debug)]
pub(super) enum Attempt {
    /// The receiver answered (only its status and headers are read).
    Answered {
        /// The status.
        status: StatusCode,
        /// Its `Retry-After`, when in seconds.
        retry_after: Option<Duration>,
    },
    /// The policy refused an address: nothing was sent, and nothing will be.
    Refused(String),
    /// DNS, connecting or the exchange failed, or the time ran out.
    Failed(String),
}

impl Attempt {
    fn error(&self) -> Option<String> {
        match self {
            Attempt::Answered { status, .. } if status.is_success() => None,
            Attempt::Answered { status, .. } => Some(format!("the receiver answered {status}")),
            Attempt::Refused(e) | Attempt::Failed(e) => Some(e.clone()),
        }
    }
}

/// What follows an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Stop here.
    Done(Outcome),
    /// Try again, after the receiver's `Retry-After` if it gave one.
    Retry(Option<Duration>),
}

/// The retry rules: 2xx delivered; 5xx, 408, 429 and failures retried; any other answer
/// (3xx included: redirects are not followed) final.
pub(super) fn next_step(a: &Attempt) -> (Option<StatusCode>, Step) {
    match a {
        Attempt::Answered { status, .. } if status.is_success() => (Some(*status), Step::Done(Outcome::Delivered)),
        Attempt::Answered { status, retry_after }
            if status.is_server_error()
                || *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS =>
        {
            (Some(*status), Step::Retry(*retry_after))
        }
        Attempt::Answered { status, .. } => (Some(*status), Step::Done(Outcome::Rejected)),
        Attempt::Refused(_) => (None, Step::Done(Outcome::Refused)),
        Attempt::Failed(_) => (None, Step::Retry(None)),
    }
}

/// How attempts reach a checked address: TCP, then TLS for https.
struct Via<'a> {
    connect: &'a Connect,
    tls: Option<&'a TlsConnector>,
    method: &'a Method,
}

/// Resolve and check, connect to a checked address, send, read the answer's head.
async fn attempt(target: &Target, job_id: &str, body: &Bytes, n: u32, policy: &Policy, via: &Via<'_>) -> Attempt {
    let addrs = match resolve(target, policy).await {
        Ok(addrs) => addrs,
        Err(e @ CallbackError::Refused(_)) => return Attempt::Refused(e.to_string()),
        Err(e) => return Attempt::Failed(error_chain(&e)),
    };
    let request = match request(target, job_id, via.method, body, n, policy) {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(format!("building the request: {e}")),
    };
    let mut last = None;
    for addr in addrs {
        let stream = match (via.connect)(addr).await {
            Ok(stream) => stream,
            Err(e) => {
                last = Some(format!("connecting to {addr}: {e}"));
                continue;
            }
        };
        let Some(tls) = via.tls else { return exchange(stream, request).await };
        return match tls::handshake(tls, &target.host(), stream).await {
            Ok(stream) => exchange(stream, request).await,
            Err(e) => Attempt::Failed(format!("TLS with {addr}: {}", error_chain(&e))),
        };
    }
    Attempt::Failed(last.unwrap_or_else(|| "no address to connect to".into()))
}

/// The POST (or a dialect's method) of attempt `n`, signed now.
fn request(
    target: &Target,
    job_id: &str,
    method: &Method,
    body: &Bytes,
    n: u32,
    policy: &Policy,
) -> hyper::http::Result<Request<Full<Bytes>>> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string();
    let mut req = Request::builder()
        .method(method.clone())
        .uri(target.path().clone())
        .header(HOST, target.authority())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("codeexec/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .header("x-codeexec-job", job_id)
        // the same key for every delivery of a job, whichever daemon sends it
        .header("idempotency-key", job_id)
        .header("x-codeexec-delivery", n.to_string())
        .header("x-codeexec-timestamp", &timestamp);
    if let Some(secret) = &policy.secret {
        req = req.header("x-codeexec-signature", sign(secret, &timestamp, body));
    }
    req.body(Full::new(body.clone()))
}

/// HTTP/1 over the connected stream, driving the connection in this task so that a timeout
/// drops (and closes) it with the attempt.
async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Attempt
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => return Attempt::Failed(format!("HTTP: {}", error_chain(&e))),
    };
    let send = async {
        sender.ready().await?;
        sender.send_request(req).await
    };
    let mut send = std::pin::pin!(send);
    let ended = tokio::select! {
        biased;
        r = &mut send => return answered(r),
        r = conn => r,
    };
    // The connection ended first: a receiver that closes right after answering (we ask it
    // to) may have handed the answer over on the way out; otherwise this fails at once.
    match (send.await, ended) {
        (Err(_), Err(e)) => Attempt::Failed(format!("HTTP: {}", error_chain(&e))),
        (r, _) => answered(r),
    }
}

fn answered(r: hyper::Result<hyper::Response<hyper::body::Incoming>>) -> Attempt {
    match r {
        Ok(resp) => Attempt::Answered { status: resp.status(), retry_after: retry_after(resp.headers()) },
        Err(e) => Attempt::Failed(format!("HTTP: {}", error_chain(&e))),
    }
}

/// `Retry-After` in seconds; the HTTP-date form is ignored (the backoff applies).
pub(super) fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().map(Duration::from_secs)
}

/// The wait after failed attempt `n`: `backoff * 2^(n-1)`, capped, of which the upper half
/// is random so that many jobs failing together do not retry in step. The randomness is
/// std's per-process random hash keys over the job id, attempt and clock (no RNG crate).
pub(super) fn backoff(policy: &Policy, n: u32, job_id: &str) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    let full = policy.backoff.saturating_mul(factor).min(policy.max_backoff);
    let half = full / 2;
    let random = std::collections::hash_map::RandomState::new().hash_one((job_id, n, SystemTime::now()));
    let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
    half + Duration::from_nanos(random % span)
}
