//! Handlers of `/v1/sessions`: each decodes, calls `api::sessions`, encodes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::{Caller, Resp, RunLog, read_json_body};
use crate::api::error::{ApiError, from_json};
use crate::api::sessions::{self, MAX_FILE_BYTES};
use crate::api::types::session::{CellIn, SessionIn};
use crate::api::{Api, json};

pub(super) async fn open(api: &Arc<Api>, req: Request<Incoming>, caller: Caller) -> Result<Resp, ApiError> {
    let (body, _held) = read_json_body(api, req).await?;
    let dto: SessionIn = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    let out = sessions::create(api, dto, caller).await?;
    Ok(json(StatusCode::CREATED, &out))
}

pub(super) fn list(api: &Api, caller: Caller) -> Resp {
    json(StatusCode::OK, &serde_json::json!({ "sessions": sessions::list(api, caller) }))
}

pub(super) async fn close(api: &Arc<Api>, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    sessions::close(api, id, caller).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "id": id, "closed": true })))
}

pub(super) async fn execute(
    api: &Arc<Api>,
    req: Request<Incoming>,
    id: &str,
    caller: Caller,
    request_id: &str,
    log: &mut RunLog,
) -> Result<Resp, ApiError> {
    let (body, _held) = read_json_body(api, req).await?;
    let dto: CellIn = serde_json::from_slice(&body).map_err(|e| from_json(&e))?;
    let out = sessions::execute(api, id, dto, caller, request_id).await?;
    log.language = Some(out.language.id.clone());
    log.status = Some(out.status);
    log.run_ms = Some(out.time.wall_ms);
    Ok(json(StatusCode::OK, &out))
}

/// The file's path, relative to `/sandbox`, from the request path.
fn file_path(path: &str) -> String {
    path.split_once("/files/").map(|(_, p)| p.to_owned()).unwrap_or_default()
}

pub(super) async fn get_file(api: &Arc<Api>, path: &str, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    let file = file_path(path);
    let bytes = sessions::with_files(api, id, caller, move |s| s.read_file(&file, MAX_FILE_BYTES)).await?;
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(resp)
}

pub(super) async fn put_file(
    api: &Arc<Api>,
    req: Request<Incoming>,
    id: &str,
    caller: Caller,
) -> Result<Resp, ApiError> {
    let file = file_path(req.uri().path());
    // found before the body is read, so a bad id costs no upload
    api.sessions.get(id, caller)?;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FILE_BYTES) {
        return Err(ApiError::TooLarge(MAX_FILE_BYTES));
    }
    let limited = Limited::new(req.into_body(), usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX));
    let data = match tokio::time::timeout(super::BODY_TIMEOUT, limited.collect()).await {
        Err(_) => return Err(ApiError::BodyTimeout(super::BODY_TIMEOUT)),
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(ApiError::TooLarge(MAX_FILE_BYTES)),
        Ok(Err(e)) => return Err(ApiError::BadJson(format!("reading the body: {e}"))),
    };
    let size = data.len();
    let name = file.clone();
    sessions::with_files(api, id, caller, move |s| s.write_file(&name, &data)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "path": file, "size": size })))
}

pub(super) async fn delete_file(api: &Arc<Api>, path: &str, id: &str, caller: Caller) -> Result<Resp, ApiError> {
    let file = file_path(path);
    let name = file.clone();
    let removed = sessions::with_files(api, id, caller, move |s| s.delete_file(&name)).await?;
    if !removed {
        return Err(ApiError::NoSuchSession(format!("no file {file:?} in session {id}")));
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "path": file, "deleted": true })))
}
