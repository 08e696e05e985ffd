//! stub
use super::Call;
use crate::api::routes::Resp;

pub(super) async fn handle(_call: Call<'_>) -> Resp {
    super::empty(hyper::StatusCode::NOT_FOUND)
}

pub(super) fn callback(_job: &crate::job::Job, _meta: &serde_json::Value) -> Option<(hyper::Method, bytes::Bytes)> {
    None
}
