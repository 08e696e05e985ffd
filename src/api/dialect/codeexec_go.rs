//! The Go service's API at `[dialects] codeexec_go` (`/go`): `POST /execute` with
//! `X-Api-Key` (when keys are configured), `{"language", "code", "stdin"}` →
//! `{"success", "stdout", "stderr", "exit_code", "status", "time_ms", "error", "files"}`:
//! `error` is null or `{"type", "message", "line", "stack"}` (a compile error's first
//! diagnostic, or the program's uncaught error with its stack, innermost frame first), and
//! `files` the files the program wrote under its working directory (`name`, `content`,
//! `encoding`). Refusals: `{"success": false, "error": {"type": "request", "message"}}`.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Call, execute, native, reply, stream};
use crate::api::error::ApiError;
use crate::api::routes::{Resp, check_key, read_body};

/// Answers one request to the Go service's API.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let key = call.req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    let caller = match check_key(call.api, call.peer, key) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    if (call.req.method(), call.path.as_str()) != (&Method::POST, "/execute") {
        return refusal(&ApiError::NotFound);
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
        let request = json!({"language": language, "code": code, "stdin": stdin, "return_files": true});
        execute(api, native(request)?, caller, request_id, log).await
    };
    match run.await {
        Ok(body) => reply(StatusCode::OK, &answer(&body)),
        Err(e) => refusal(&e),
    }
}

fn refusal(e: &ApiError) -> Resp {
    let status = if matches!(e, ApiError::Invalid(_)) { StatusCode::BAD_REQUEST } else { e.status() };
    reply(status, &json!({"success": false, "error": {"type": "request", "message": e.message()}}))
}

/// The native answer in the Go service's shape.
fn answer(body: &Value) -> Value {
    let text = |name: &str| String::from_utf8_lossy(&stream(body, name)).into_owned();
    let status = body.get("status").and_then(Value::as_str).unwrap_or("internal_error");
    let error = match (status, body.get("error").filter(|e| !e.is_null())) {
        ("ok", _) => Value::Null,
        (_, Some(e)) => json!({
            "type": e.get("type"),
            "message": e.get("message"),
            "line": e.get("frames").and_then(|f| f.get(0)).and_then(|f| f.get("line")),
            "stack": e.get("frames").cloned().unwrap_or(json!([])),
        }),
        ("syntax_error" | "compile_error", _) => {
            let first = body.get("diagnostics").and_then(|d| d.get(0));
            json!({
                "type": status,
                "message": body.get("message"),
                "line": first.and_then(|d| d.get("line")),
                "stack": [],
            })
        }
        _ => json!({"type": status, "message": body.get("message"), "line": null, "stack": []}),
    };
    json!({
        "success": status == "ok",
        "stdout": text("stdout"),
        "stderr": text("stderr"),
        "exit_code": body.get("exit_code"),
        "status": status,
        "time_ms": body.get("time").and_then(|t| t.get("wall_ms")),
        "error": error,
        "files": body.get("files").cloned().unwrap_or(json!([])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_stack() {
        let body = json!({"status": "runtime_error", "stdout": "", "stderr": "Traceback…", "exit_code": 1,
            "message": "ZeroDivisionError: division by zero", "time": {"wall_ms": 20.0},
            "error": {"type": "ZeroDivisionError", "message": "division by zero",
                      "frames": [{"file": "main.py", "line": 2, "function": "f"},
                                 {"file": "main.py", "line": 3, "function": "<module>"}]},
            "files": [{"name": "out.txt", "content": "x", "encoding": "utf8"}]});
        let a = answer(&body);
        assert_eq!(a["success"], false);
        assert_eq!(a["error"]["type"], "ZeroDivisionError");
        assert_eq!(a["error"]["line"], 2);
        assert_eq!(a["error"]["stack"].as_array().unwrap().len(), 2);
        assert_eq!(a["files"][0]["name"], "out.txt");
        let ce = answer(&json!({"status": "compile_error", "message": "main.go:3:2: undefined: x",
                                "diagnostics": [{"line": 3}], "error": null}));
        assert_eq!((ce["error"]["type"].clone(), ce["error"]["line"].clone()), (json!("compile_error"), json!(3)));
        assert!(answer(&json!({"status": "ok", "error": null}))["error"].is_null());
    }
}
