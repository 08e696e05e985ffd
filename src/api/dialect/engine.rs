//! The FastAPI/Celery "engine" at `[dialects] engine` (`/engine`): `POST /execute
//! {"language": "python" | "js" | "java" | "cpp" | "go", "code", "function_name",
//! "imports", "test_cases": [{"input", "expected_output"}], "callback_url"}` → `{"message",
//! "id"}`, a native job of the function harness whose `expected_output` is compared as text
//! with the result's canonical text (`"compare_as": "text"`); `GET /status/{id}` and the
//! callback (POSTed, signed as codeexec's are) carry the engine's own payload at the top:
//! `{"id", "status", "results": [{"input", "expected_output", "actual_output", "passed",
//! "time", "memory"}], "all_passed", "error", "error_details"}` (`time` in seconds,
//! `memory` in KiB). Refusals: FastAPI's `{"detail": "..."}`.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Call, native, reply};
use crate::api::error::ApiError;
use crate::api::routes::job_routes::{checked_callback, owner, visible};
use crate::api::routes::{Caller, Resp, bearer, check_key, read_body};
use crate::job::{self, NewJob, State};

/// Answers one engine request.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let headers = call.req.headers();
    let key = headers.get("x-api-key").or_else(|| headers.get(hyper::header::AUTHORIZATION));
    let key = key.and_then(|v| v.to_str().ok()).map(|v| bearer(v).unwrap_or(v));
    let caller = match check_key(call.api, call.peer, key) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    match (call.req.method().clone(), call.path.as_str()) {
        (Method::POST, "/execute") => submit(call, caller).await.unwrap_or_else(|e| refusal(&e)),
        (Method::GET, p) if p.starts_with("/status/") => {
            let id = &p["/status/".len()..];
            match visible(call.api, id, caller).await {
                Ok(job) => reply(StatusCode::OK, &payload(&job)),
                Err(e) => refusal(&e),
            }
        }
        _ => refusal(&ApiError::NotFound),
    }
}

fn refusal(e: &ApiError) -> Resp {
    reply(e.status(), &json!({ "detail": e.message() }))
}

/// The engine's language names.
fn language(name: &str) -> &str {
    match name {
        "js" => "javascript",
        other => other,
    }
}

/// `POST /execute`: checked now, then a job.
async fn submit(call: Call<'_>, caller: Caller) -> Result<Resp, ApiError> {
    let Call { api, req, .. } = call;
    let (body, _held) = read_body(api, req).await?;
    let r: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let field = |name: &str| r.get(name).and_then(Value::as_str);
    let (Some(lang), Some(code), Some(function)) = (field("language"), field("code"), field("function_name")) else {
        return Err(ApiError::Invalid("language, code and function_name are required strings".into()));
    };
    let cases = r.get("test_cases").and_then(Value::as_array).cloned().unwrap_or_default();
    let tests: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut t = json!({ "input": arguments(c.get("input").unwrap_or(&Value::Null)) });
            if let Some(e) = c.get("expected_output").filter(|e| !e.is_null()) {
                t["expected_output"] = e.clone();
            }
            t
        })
        .collect();
    let lang = language(lang);
    let request = json!({
        "language": lang,
        "code": with_imports(lang, r.get("imports"), code),
        "function_name": function,
        "tests": tests,
        "compare_as": "text",
    });
    crate::api::plan::plan(api, native(request.clone())?, caller)?;
    let callback = match field("callback_url") {
        Some(url) => Some(checked_callback(api, url.to_owned()).await?),
        None => None,
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let meta = json!({"name": "engine", "cases": cases});
    let new = NewJob {
        id: id.clone(),
        owner: owner(api, caller),
        request: super::envelope(meta, request),
        callback,
        idempotency_key: None,
    };
    api.jobs.store.submit(new).await?;
    Ok(reply(StatusCode::OK, &json!({"message": "Execution started", "id": id})))
}

/// A test case's `input` as the function's arguments: an array is the arguments; a string
/// that is JSON is read as such (an array: the arguments; else one argument); anything
/// else is the one argument.
fn arguments(input: &Value) -> Value {
    match input {
        Value::Array(_) => input.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(a @ Value::Array(_)) => a,
            Ok(v) => json!([v]),
            Err(_) => json!([s]),
        },
        other => json!([other]),
    }
}

/// The code with the engine's `imports` (a string or a list of lines) in front (Go: after
/// its package clause, which is added when missing).
fn with_imports(lang: &str, imports: Option<&Value>, code: &str) -> String {
    let lines = match imports {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
        _ => return code.to_owned(),
    };
    if lines.trim().is_empty() {
        return code.to_owned();
    }
    if lang == "go" {
        let trimmed = code.trim_start();
        return match trimmed.strip_prefix("package main") {
            Some(rest) => format!("package main\n{lines}\n{rest}"),
            None => format!("package main\n{lines}\n{code}"),
        };
    }
    format!("{lines}\n{code}")
}

/// The engine's payload for a job, as it is now.
fn payload(job: &job::Job) -> Value {
    let status = match job.status {
        State::Queued => "queued",
        State::Running => "running",
        State::Done => "completed",
        State::Failed | State::Cancelled => "failed",
    };
    let mut out = json!({"id": job.id, "status": status, "results": [], "all_passed": false,
                         "error": null, "error_details": null});
    if let Some(e) = &job.error {
        out["error"] = json!(e.message);
        out["error_details"] = json!({"code": e.code});
    }
    let Some(result) = job.result.as_ref() else { return out };
    let empty = Vec::new();
    let cases = result.get("dialect").and_then(|d| d.get("cases")).and_then(Value::as_array).unwrap_or(&empty);
    let tests = result.get("tests").and_then(Value::as_array).unwrap_or(&empty);
    let results: Vec<Value> = tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let case = cases.get(i);
            let ms = t.get("time").and_then(|x| x.get("wall_ms")).and_then(Value::as_f64);
            json!({
                "input": case.and_then(|c| c.get("input")),
                "expected_output": case.and_then(|c| c.get("expected_output")),
                "actual_output": t.get("returned").map(crate::judge::checker::canonical_text),
                "passed": t.get("status").and_then(Value::as_str) == Some("accepted"),
                "time": ms.map(|m| m / 1000.0),
                "memory": t.get("memory_peak_kb"),
            })
        })
        .collect();
    let all_passed = !results.is_empty() && results.iter().all(|r| r["passed"] == true);
    out["results"] = json!(results);
    out["all_passed"] = json!(all_passed);
    let top = result.get("status").and_then(Value::as_str).unwrap_or("internal_error");
    if !matches!(top, "accepted" | "ok" | "wrong_answer") {
        out["error"] = result.get("message").cloned().unwrap_or(json!(top));
        out["error_details"] = json!({
            "status": top,
            "diagnostics": result.get("diagnostics"),
            "stderr": tests.iter().find_map(|t| t.get("stderr").filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
        });
    }
    out
}

/// The callback: the engine's payload at the top level, POSTed and signed as codeexec's.
pub(super) fn callback(job: &job::Job, _meta: &Value) -> Option<(Method, bytes::Bytes)> {
    let body = serde_json::to_vec(&payload(job)).ok()?;
    Some((Method::POST, bytes::Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_become_arguments() {
        assert_eq!(arguments(&json!([2, 3])), json!([2, 3]));
        assert_eq!(arguments(&json!("[2, 3]")), json!([2, 3]));
        assert_eq!(arguments(&json!("5")), json!([5]));
        assert_eq!(arguments(&json!("hello")), json!(["hello"]));
        assert_eq!(arguments(&json!({"a": 1})), json!([{"a": 1}]));
    }

    #[test]
    fn imports_go_in_front() {
        assert_eq!(with_imports("python", Some(&json!(["import math"])), "x"), "import math\nx");
        assert_eq!(
            with_imports("go", Some(&json!("import \"fmt\"")), "func f() {}"),
            "package main\nimport \"fmt\"\nfunc f() {}"
        );
        assert_eq!(with_imports("cpp", None, "x"), "x");
    }

    #[test]
    fn the_payload_is_the_engines() {
        let job = job::Job {
            id: "j".into(),
            owner: None,
            status: State::Done,
            created_at: 0,
            started_at: None,
            finished_at: None,
            runs: 1,
            result: Some(json!({"status": "wrong_answer", "dialect": {"cases": [
                {"input": "[2, 3]", "expected_output": "5"}, {"input": [1, 1], "expected_output": "3"}]},
                "tests": [{"status": "accepted", "returned": 5, "time": {"wall_ms": 1.5}, "memory_peak_kb": 9},
                          {"status": "wrong_answer", "returned": 2}]})),
            error: None,
            callback: None,
        };
        let p = payload(&job);
        assert_eq!(p["status"], "completed");
        assert_eq!(p["results"][0]["actual_output"], "5");
        assert_eq!(p["results"][0]["passed"], true);
        assert_eq!(p["results"][0]["time"], 0.0015);
        assert_eq!(p["results"][1]["passed"], false);
        assert_eq!(p["all_passed"], false);
        assert!(p["error"].is_null());
    }
}
