//! "CodeEngine" at `[dialects] codeengine` (`/codeengine`): `GET /health` → `OK`, and
//! `POST /execute {"language": "python3" | …, "code"}` → `{"output"}`: what the program
//! printed (stdout, then stderr), or the compiler's or syntax check's output when it never
//! ran. Any native language name or alias is taken. Errors: `{"error": "..."}`.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Call, execute, native, plain, reply, stream};
use crate::api::error::ApiError;
use crate::api::routes::{Resp, bearer, check_key, read_body};

/// Answers one CodeEngine request.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let headers = call.req.headers();
    let key = headers.get("x-api-key").or_else(|| headers.get(hyper::header::AUTHORIZATION));
    let key = key.and_then(|v| v.to_str().ok()).map(|v| bearer(v).unwrap_or(v));
    let caller = match check_key(call.api, call.peer, key) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    match (call.req.method().clone(), call.path.as_str()) {
        (Method::GET, "/health") => plain(StatusCode::OK, "OK"),
        (Method::POST, "/execute") => {
            let super::Call { api, req, request_id, log, .. } = call;
            let run = async {
                let (body, _held) = read_body(api, req).await?;
                let r: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
                let (Some(language), Some(code)) =
                    (r.get("language").and_then(Value::as_str), r.get("code").and_then(Value::as_str))
                else {
                    return Err(ApiError::Invalid("language and code are required strings".into()));
                };
                let dto = native(json!({"language": language, "code": code}))?;
                execute(api, dto, caller, request_id, log).await
            };
            match run.await {
                Ok(body) => reply(StatusCode::OK, &json!({ "output": output(&body) })),
                Err(e) => refusal(&e),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

fn refusal(e: &ApiError) -> Resp {
    let status = if matches!(e, ApiError::Invalid(_)) { StatusCode::BAD_REQUEST } else { e.status() };
    reply(status, &json!({ "error": e.message() }))
}

/// What a terminal would have shown: the deciding stage's stdout, then its stderr.
fn output(body: &Value) -> String {
    let mut out = stream(body, "stdout");
    out.extend(stream(body, "stderr"));
    String::from_utf8_lossy(&out).into_owned()
}
