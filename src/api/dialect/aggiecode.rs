//! stub
use super::Call;
use crate::api::routes::Resp;

pub(super) async fn handle(_call: Call<'_>) -> Resp {
    super::empty(hyper::StatusCode::NOT_FOUND)
}
