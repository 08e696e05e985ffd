//! The routes that make the daemon easy to run as a service: `GET /metrics` (Prometheus,
//! `metrics.rs`). They sit in their own table, which `routes.rs` chains after its own, so
//! the run routes and these evolve apart.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::Api;
use super::error::ApiError;

/// What a service route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Metrics,
}

/// The service's routes: (method, path, endpoint).
pub(super) const ROUTES: [(Method, &str, Endpoint); 1] = [(Method::GET, "/metrics", Endpoint::Metrics)];

/// Whether `path` is answered without an API key on TCP: `/metrics` when
/// `[metrics] keyless` says so.
pub(super) fn keyless(api: &Api, path: &str) -> bool {
    path == "/metrics" && api.policy.metrics.keyless
}

pub(super) async fn route(api: &Api, endpoint: Endpoint) -> Result<Response<Full<Bytes>>, ApiError> {
    match endpoint {
        Endpoint::Metrics if !api.policy.metrics.enabled => Err(ApiError::NotFound),
        Endpoint::Metrics => {
            let text = super::metrics::encode(api)
                .await
                .map_err(|e| ApiError::Internal(format!("encoding the metrics: {e}")))?;
            Ok(text_response(text, super::metrics::CONTENT_TYPE))
        }
    }
}

fn text_response(text: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
