//! "AggieCode" at `[dialects] aggiecode` (`/aggiecode`): `POST /api/execute {"language",
//! "code", "stdin"}` → `{"stdout", "stderr", "error", "execution_time_ms"}`. `error` is
//! null when the program ended well, else tells the kinds apart: `Compilation Error: …`
//! (a syntax check or compiler refused it), `Runtime Error: …` (the program failed, with
//! its uncaught error or exit code), `Time Limit Exceeded`, `Memory Limit Exceeded`,
//! `Output Limit Exceeded`. Refusals: `{"error": "..."}` with 400 (401 without a key).

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Call, execute, native, reply, stream};
use crate::api::error::ApiError;
use crate::api::routes::{Resp, bearer, check_key, read_body};

/// Answers one AggieCode request.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let headers = call.req.headers();
    let key = headers.get("x-api-key").or_else(|| headers.get(hyper::header::AUTHORIZATION));
    let key = key.and_then(|v| v.to_str().ok()).map(|v| bearer(v).unwrap_or(v));
    let caller = match check_key(call.api, call.peer, key) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    if (call.req.method(), call.path.as_str()) != (&Method::POST, "/api/execute") {
        return reply(StatusCode::NOT_FOUND, &json!({"error": "not found"}));
    }
    let super::Call { api, req, request_id, log, .. } = call;
    let run = async {
        let (body, _held) = read_body(api, req).await?;
        let r: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
        let (Some(language), Some(code)) =
            (r.get("language").and_then(Value::as_str), r.get("code").and_then(Value::as_str))
        else {
            return Err(ApiError::Invalid("language and code are required strings".into()));
        };
        let stdin = r.get("stdin").and_then(Value::as_str).unwrap_or("");
        let dto = native(json!({"language": language, "code": code, "stdin": stdin}))?;
        execute(api, dto, caller, request_id, log).await
    };
    match run.await {
        Ok(body) => reply(StatusCode::OK, &answer(&body)),
        Err(e) => refusal(&e),
    }
}

fn refusal(e: &ApiError) -> Resp {
    let status = if matches!(e, ApiError::Invalid(_)) { StatusCode::BAD_REQUEST } else { e.status() };
    reply(status, &json!({ "error": e.message() }))
}

/// The native answer in AggieCode's shape.
fn answer(body: &Value) -> Value {
    let text = |name: &str| String::from_utf8_lossy(&stream(body, name)).into_owned();
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    let error = match body.get("status").and_then(Value::as_str).unwrap_or("internal_error") {
        "ok" => Value::Null,
        "syntax_error" | "compile_error" => json!(format!("Compilation Error: {message}")),
        "time_limit" => json!("Time Limit Exceeded"),
        "memory_limit" => json!("Memory Limit Exceeded"),
        "output_limit" => json!("Output Limit Exceeded"),
        _ => json!(format!("Runtime Error: {message}")),
    };
    let ms = body.get("time").and_then(|t| t.get("wall_ms")).and_then(Value::as_f64).unwrap_or(0.0);
    json!({"stdout": text("stdout"), "stderr": text("stderr"), "error": error, "execution_time_ms": ms.round()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_apart() {
        let ok = answer(&json!({"status": "ok", "stdout": "1\n", "stderr": "", "time": {"wall_ms": 12.4}}));
        assert_eq!(ok, json!({"stdout": "1\n", "stderr": "", "error": null, "execution_time_ms": 12.0}));
        let ce = answer(&json!({"status": "compile_error", "message": "main.c:1:1: oops"}));
        assert_eq!(ce["error"], "Compilation Error: main.c:1:1: oops");
        assert_eq!(answer(&json!({"status": "time_limit"}))["error"], "Time Limit Exceeded");
        assert_eq!(answer(&json!({"status": "memory_limit"}))["error"], "Memory Limit Exceeded");
        let re = answer(&json!({"status": "runtime_error", "message": "ZeroDivisionError: division by zero"}));
        assert_eq!(re["error"], "Runtime Error: ZeroDivisionError: division by zero");
    }
}
