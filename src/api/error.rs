//! Every error the API answers with, and the one place it becomes a response:
//! `{"error": {"code", "message", "request_id"}}` with a status that fits.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};

use super::types::{ErrorBody, ErrorResponse};
use crate::job::StoreError;
use crate::run::RunError;

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ApiError {
    /// 400: the body is not JSON (the message says where).
    BadJson(String),
    /// 401: no API key or a wrong one.
    Unauthorized,
    /// 403: the caller may not have what it asks for (network, a host mount).
    Forbidden(String),
    /// 404: no such path.
    NotFound,
    /// 404: no such job (the message says how long jobs are kept).
    NoSuchJob(String),
    /// 404: no such session (never opened, or closed by its client).
    NoSuchSession(String),
    /// 410: the session ended by itself (idle, lifetime, a daemon restart).
    SessionExpired(String),
    /// 429: the sessions' bound (or the key's) is reached.
    SessionsFull(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed(&'static [Method]),
    /// 408: the body did not arrive in time.
    BodyTimeout(std::time::Duration),
    /// 409: the request does not fit the resource's state (cancelling an ended job).
    Conflict(String),
    /// 413: the body is over the configured maximum.
    TooLarge(u64),
    /// 415: not JSON.
    UnsupportedMediaType,
    /// 422: well-formed, but not a valid request.
    Invalid(String),
    /// 429: every run slot and queue place is taken.
    Busy,
    /// 429: the daemon's job bounds are reached (the message says which).
    JobsFull(String),
    /// 429: the API key is over its rate or its runs at once (`[rate_limit]`).
    RateLimited {
        /// When to try again.
        retry_after: std::time::Duration,
        /// Which limit.
        message: String,
    },
    /// 503: the fleet's shared job queue is full.
    QueueFull(String),
    /// 503: the job store (Redis) cannot be reached.
    StoreUnavailable(String),
    /// 500: our bug.
    Internal(String),
    /// 503: the daemon is stopping and starts no more runs.
    Stopping,
}

impl ApiError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoSuchJob(_) | ApiError::NoSuchSession(_) => StatusCode::NOT_FOUND,
            ApiError::SessionExpired(_) => StatusCode::GONE,
            ApiError::SessionsFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy | ApiError::JobsFull(_) | ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::QueueFull(_) | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(super) fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound | ApiError::NoSuchJob(_) | ApiError::NoSuchSession(_) => "not_found",
            ApiError::SessionExpired(_) => "session_expired",
            ApiError::SessionsFull(_) => "too_many_sessions",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Invalid(_) => "invalid_request",
            ApiError::Busy | ApiError::JobsFull(_) => "too_many_requests",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal_error",
            ApiError::Stopping => "shutting_down",
        }
    }

    pub(super) fn message(&self) -> String {
        match self {
            ApiError::BadJson(m)
            | ApiError::Invalid(m)
            | ApiError::Conflict(m)
            | ApiError::NoSuchJob(m)
            | ApiError::NoSuchSession(m)
            | ApiError::SessionExpired(m)
            | ApiError::SessionsFull(m)
            | ApiError::QueueFull(m)
            | ApiError::StoreUnavailable(m)
            | ApiError::Forbidden(m) => m.clone(),
            ApiError::JobsFull(m) => format!("{m}; retry later"),
            ApiError::RateLimited { message, retry_after } => {
                format!("{message}; retry in {} ms", retry_after.as_millis())
            }
            ApiError::Unauthorized => "unauthorized".into(),
            ApiError::NotFound => "no such path".into(),
            ApiError::MethodNotAllowed(m) => {
                format!("method not allowed; allowed: {}", m.iter().map(Method::as_str).collect::<Vec<_>>().join(", "))
            }
            ApiError::BodyTimeout(t) => format!("the request body did not arrive within {} s", t.as_secs()),
            ApiError::TooLarge(max) => format!("the request body is over the maximum of {max} bytes"),
            ApiError::UnsupportedMediaType => "the request body must be JSON (Content-Type: application/json)".into(),
            ApiError::Busy => "every run slot and queue place is taken; retry later".into(),
            ApiError::Internal(m) => format!("internal error: {m}"),
            ApiError::Stopping => "the daemon is shutting down and starts no more runs".into(),
        }
    }

    /// The response, naming `request_id` so a report can be matched with the logs.
    pub(super) fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let message = self.message();
        let body = ErrorResponse { error: ErrorBody { code: self.code(), message: &message, request_id } };
        let mut resp = super::json(self.status(), &body);
        let headers = resp.headers_mut();
        match &self {
            ApiError::MethodNotAllowed(m) => {
                let allow = m.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    headers.insert(ALLOW, v);
                }
            }
            ApiError::Busy | ApiError::JobsFull(_) | ApiError::QueueFull(_) | ApiError::StoreUnavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after, .. } => {
                // whole seconds (RFC 9110), rounded up so a client that waits is let in
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Invalid(m) => ApiError::Invalid(m),
            RunError::Limit(e) => ApiError::Invalid(e.to_string()),
            RunError::Busy(_) => ApiError::Busy,
            other => ApiError::Internal(crate::error_chain(&other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy(m) => ApiError::JobsFull(m),
            e @ StoreError::QueueFull { .. } => ApiError::QueueFull(e.to_string()),
            e @ StoreError::Redis(_) => ApiError::StoreUnavailable(format!("{}; retry later", crate::error_chain(&e))),
            other => ApiError::Internal(crate::error_chain(&other)),
        }
    }
}

/// A serde_json error: a syntax error (400, with line and column) or a request of the
/// wrong shape (422: wrong type, unknown field, missing field).
pub(super) fn from_json(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::Invalid(e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            let (line, column) = (e.line(), e.column());
            let text = e.to_string();
            let what = text.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&text);
            ApiError::BadJson(format!("malformed JSON at line {line} column {column}: {what}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status_code_and_headers() {
        let cases = [
            (ApiError::BadJson("x".into()), 400, "bad_json"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed(&[Method::GET]), 405, "method_not_allowed"),
            (ApiError::BodyTimeout(std::time::Duration::from_secs(60)), 408, "request_timeout"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::TooLarge(10), 413, "payload_too_large"),
            (ApiError::UnsupportedMediaType, 415, "unsupported_media_type"),
            (ApiError::Invalid("x".into()), 422, "invalid_request"),
            (ApiError::Busy, 429, "too_many_requests"),
            (ApiError::JobsFull("x".into()), 429, "too_many_requests"),
            (
                ApiError::RateLimited { retry_after: std::time::Duration::from_millis(1500), message: "x".into() },
                429,
                "rate_limited",
            ),
            (ApiError::QueueFull("x".into()), 503, "queue_full"),
            (ApiError::StoreUnavailable("x".into()), 503, "store_unavailable"),
            (ApiError::Internal("x".into()), 500, "internal_error"),
            (ApiError::Stopping, 503, "shutting_down"),
            (ApiError::NoSuchSession("x".into()), 404, "not_found"),
            (ApiError::SessionExpired("x".into()), 410, "session_expired"),
        ];
        for (e, status, code) in cases {
            let resp = e.clone().into_response("id-1");
            assert_eq!(resp.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code);
            assert!(!e.message().is_empty());
            let headers = resp.headers();
            assert_eq!(headers.get(ALLOW).is_some(), status == 405);
            assert_eq!(
                headers.get(RETRY_AFTER).is_some(),
                status == 429 || *e.code() != *"shutting_down" && status == 503
            );
            assert_eq!(headers.get(WWW_AUTHENTICATE).is_some(), status == 401);
        }
        let limited =
            ApiError::RateLimited { retry_after: std::time::Duration::from_millis(1500), message: "x".into() };
        assert_eq!(limited.into_response("id").headers()[RETRY_AFTER], "2");
        // the runner's refusals keep their meaning
        assert_eq!(ApiError::from(RunError::Busy(8)), ApiError::Busy);
        assert_eq!(ApiError::from(RunError::Invalid("bad".into())), ApiError::Invalid("bad".into()));
        assert!(matches!(ApiError::from(RunError::NotPrivileged("x".into())), ApiError::Internal(_)));
    }
}
