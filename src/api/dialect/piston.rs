//! Piston v2 (`engineer-man/piston`, API 3.1.1): `GET /runtimes`, `POST /execute`,
//! `GET /packages`, at `[dialects] piston` (`/api/v2`). The traps its clients need
//! (`../shared/reference/compat.md` §1): JSON whatever the `Content-Type` (piston-client
//! sends `text/plain`), `-1` and `0` limits meaning the server's default, an empty file
//! name meaning none, node-semver version ranges (`nodejs-semver`), a failed compile
//! repeated as `run`, a syntax error folded into `run` as Piston's interpreters report it.

use hyper::{Method, StatusCode};
use nodejs_semver::{Range, Version};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Call, execute, native, reply, stream};
use crate::api::error::ApiError;
use crate::api::routes::{Caller, Resp, bearer, check_key, read_body};
use crate::lang::{Availability, Language};

/// Piston's names for codeexec's languages: (native id, Piston name, Piston's aliases,
/// the `runtime` Piston reports for packages that provide several languages).
const NAMES: [Names; 10] = [
    ("python", "python", &["py", "py3", "python3", "python3.12"], None),
    ("javascript", "javascript", &["node-javascript", "node-js", "js"], Some("node")),
    ("typescript", "typescript", &["ts", "node-ts", "tsc", "typescript5", "ts5"], None),
    ("ruby", "ruby", &["ruby3", "rb"], None),
    ("bash", "bash", &["sh"], None),
    ("c", "c", &["gcc"], Some("gcc")),
    ("cpp", "c++", &["cpp", "g++"], Some("gcc")),
    ("java", "java", &[], None),
    ("go", "go", &["golang"], None),
    ("rust", "rust", &["rs"], None),
];

/// Answers one Piston request.
pub(super) async fn handle(call: Call<'_>) -> Resp {
    let headers = call.req.headers();
    // a self-hosted Piston has no keys; emkc's clients send one raw in Authorization
    let key = headers.get("x-api-key").or_else(|| headers.get(hyper::header::AUTHORIZATION));
    let key = key.and_then(|v| v.to_str().ok()).map(|v| bearer(v).unwrap_or(v));
    let caller = match check_key(call.api, call.peer, key) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    let method = call.req.method().clone();
    match (method, call.path.as_str()) {
        (Method::GET, "/runtimes") => reply(StatusCode::OK, &runtimes(call.api)),
        (Method::GET, "/packages") => reply(StatusCode::OK, &packages(call.api)),
        (Method::POST | Method::DELETE, "/packages") => {
            message(StatusCode::NOT_IMPLEMENTED, "packages are installed by the operator, not through this API")
        }
        (Method::POST, "/execute") => execute_route(call, caller).await.unwrap_or_else(|r| r),
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `{"message": …}` with a status: Piston's error shape.
fn message(status: StatusCode, text: &str) -> Resp {
    reply(status, &json!({ "message": text }))
}

/// A native refusal in Piston's shape: its own message, the native status (a Piston
/// validation error is 400; an internal one 500 with an empty body).
fn refusal(e: &ApiError) -> Resp {
    match e {
        ApiError::Invalid(m) => message(StatusCode::BAD_REQUEST, m),
        ApiError::BadJson(m) => reply(StatusCode::BAD_REQUEST, &json!({ "stack": format!("SyntaxError: {m}") })),
        ApiError::Internal(_) => super::empty(StatusCode::INTERNAL_SERVER_ERROR),
        other => message(other.status(), &other.message()),
    }
}

/// `GET /runtimes` item.
#[derive(Debug, Serialize)]
struct Runtime {
    language: &'static str,
    version: String,
    aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'static str>,
}

/// Piston's names for a native language: (native id, name, aliases, runtime).
type Names = (&'static str, &'static str, &'static [&'static str], Option<&'static str>);

/// Each available language with its Piston names, its version as semver.
fn available(api: &crate::api::Api) -> impl Iterator<Item = (&'static Names, &Language, String)> {
    api.languages.all().iter().filter_map(|(lang, availability)| {
        let Availability::Available { version } = availability else { return None };
        let names = NAMES.iter().find(|n| n.0 == lang.id)?;
        Some((names, lang, semver_of(version)))
    })
}

fn runtimes(api: &crate::api::Api) -> Vec<Runtime> {
    available(api)
        .map(|((_, name, aliases, runtime), lang, version)| {
            let mut all: Vec<String> = aliases.iter().map(|a| (*a).to_owned()).collect();
            for a in lang.names() {
                if a != *name && !all.iter().any(|x| x == a) {
                    all.push(a.to_owned());
                }
            }
            Runtime { language: name, version, aliases: all, runtime: *runtime }
        })
        .collect()
}

fn packages(api: &crate::api::Api) -> Vec<Value> {
    available(api)
        .map(|((_, name, _, _), _, version)| json!({"language": name, "language_version": version, "installed": true}))
        .collect()
}

/// A toolchain's version string as `X.Y.Z` (Piston's runtimes are semver): the first
/// dotted number in it, padded (`5.2.15(1)-release` → `5.2.15`, `21` → `21.0.0`).
fn semver_of(version: &str) -> String {
    let start = version.find(|c: char| c.is_ascii_digit()).unwrap_or(version.len());
    let digits: String = version[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts: Vec<&str> = digits.split('.').filter(|p| !p.is_empty()).take(3).collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    parts
        .iter()
        .map(|p| p.trim_start_matches('0').to_owned())
        .map(|p| if p.is_empty() { "0".into() } else { p })
        .collect::<Vec<_>>()
        .join(".")
}

/// `POST /execute`.
async fn execute_route(call: Call<'_>, caller: Caller) -> Result<Resp, Resp> {
    let Call { api, req, request_id, log, .. } = call;
    let (body, _held) = read_body(api, req).await.map_err(|e| refusal(&e))?;
    let request: Value = serde_json::from_slice(&body).map_err(|e| refusal(&ApiError::BadJson(e.to_string())))?;
    let (name, lang_id, version, dto) = translate(api, &request).map_err(|m| message(StatusCode::BAD_REQUEST, &m))?;
    let dto = native(dto).map_err(|e| refusal(&e))?;
    let body = execute(api, dto, caller, request_id, log).await.map_err(|e| refusal(&e))?;
    let _ = lang_id;
    Ok(reply(StatusCode::OK, &answer(name, version, &body)))
}

/// The limits Piston's requests may set: (Piston's field, the native limit, how to turn
/// Piston's unit into the native one).
const LIMITS: [(&str, Option<&str>); 6] = [
    ("run_timeout", Some("wall_time_ms")),
    ("run_cpu_time", Some("cpu_time_ms")),
    ("run_memory_limit", Some("memory_mb")),
    // the compile stage keeps the language's own limits: checked, not applied
    ("compile_timeout", None),
    ("compile_cpu_time", None),
    ("compile_memory_limit", None),
];

/// A Piston request as the native one: (Piston's name, the native id, the version
/// matched, the native request). The error is Piston's message.
fn translate(api: &crate::api::Api, r: &Value) -> Result<(&'static str, String, String, Value), String> {
    let language = r.get("language").and_then(Value::as_str).ok_or("language is required as a string")?;
    let version = r.get("version").and_then(Value::as_str).ok_or("version is required as a string")?;
    let files = r.get("files").and_then(Value::as_array).ok_or("files is required as an array")?;
    let unknown = || format!("{language}-{version} runtime is unknown");
    let range = Range::parse(version).map_err(|_| unknown())?;
    let lower = language.to_ascii_lowercase();
    let ((_, name, _, _), lang, matched) = available(api)
        .filter(|((_, name, aliases, _), lang, _)| {
            *name == lower || aliases.contains(&lower.as_str()) || lang.names().any(|n| n == lower)
        })
        .filter(|(_, _, v)| Version::parse(v).is_ok_and(|v| range.satisfies(&v)))
        .max_by(|a, b| Version::parse(&a.2).ok().cmp(&Version::parse(&b.2).ok()))
        .ok_or_else(unknown)?;
    let mut out = json!({"language": lang.id});
    let files = native_files(lang, files)?;
    out["files"] = Value::Array(files);
    let mut stdin = match r.get("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("stdin must be a string".into()),
    };
    // Piston ends stdin with a newline when it has none
    if !stdin.ends_with('\n') {
        stdin.push('\n');
    }
    out["stdin"] = Value::String(stdin);
    match r.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            let args: Vec<String> = a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
            out["args"] = json!(args);
        }
        Some(_) => return Err("args must be an array".into()),
    }
    out["limits"] = limits(api, lang, r)?;
    Ok((name, lang.id.clone(), matched, out))
}

/// Piston's `files` as native ones: the first is the main file (named as the language's
/// main file when it has no name), utf8/base64/hex contents.
fn native_files(lang: &Language, files: &[Value]) -> Result<Vec<Value>, String> {
    use base64::Engine as _;
    let mut out = Vec::with_capacity(files.len());
    let mut utf8 = false;
    for (i, f) in files.iter().enumerate() {
        let content =
            f.get("content").and_then(Value::as_str).ok_or(format!("files[{i}].content is required as a string"))?;
        let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        let name = match name {
            Some(n) => n.to_owned(),
            None if i == 0 => lang.main_file.clone(),
            None => format!("file{i}.code"),
        };
        let (content, encoding) = match f.get("encoding").and_then(Value::as_str) {
            Some("base64") => (content.to_owned(), "base64"),
            Some("hex") => {
                let bytes = hex::decode(content).map_err(|e| format!("files[{i}].content is not valid hex: {e}"))?;
                (base64::engine::general_purpose::STANDARD.encode(bytes), "base64")
            }
            _ => {
                utf8 = true;
                (content.to_owned(), "utf8")
            }
        };
        out.push(json!({"name": name, "content": content, "encoding": encoding}));
    }
    if !utf8 {
        return Err("files must include at least one utf8 encoded file".into());
    }
    Ok(out)
}

/// Piston's limits as native ones: a number each; absent, 0 and -1 take the default (as
/// its clients send -1 for "no limit"); above the configured maximum is refused.
fn limits(api: &crate::api::Api, lang: &Language, r: &Value) -> Result<Value, String> {
    let max = &api.policy.max_limits;
    let defaults = crate::api::plan::language_defaults(lang, &api.policy.default_limits, max);
    let mut out = json!({});
    for (field, native) in LIMITS {
        let Some(v) = r.get(field).filter(|v| !v.is_null()) else { continue };
        let n = v.as_f64().ok_or(format!("If specified, {field} must be a number"))?;
        if n == 0.0 || n == -1.0 {
            continue;
        }
        if n < 0.0 {
            return Err(format!("{field} must be non-negative"));
        }
        let (limit, value) = match field {
            "run_timeout" | "compile_timeout" => (max.wall_time_ms, n.ceil()),
            "run_cpu_time" | "compile_cpu_time" => (max.cpu_time_ms, n.ceil()),
            // bytes to MiB, rounded up
            _ => (max.memory_mb << 20, n.ceil()),
        };
        #[allow(clippy::cast_precision_loss)]
        if value > limit as f64 {
            return Err(format!("{field} cannot exceed the configured limit of {limit}"));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = value as u64;
        match native {
            Some("memory_mb") => out["memory_mb"] = json!(value.div_ceil(1 << 20).max(1)),
            Some(name) => out[name] = json!(value.max(1)),
            None => {}
        }
    }
    // a wall limit below the CPU default would make the CPU limit moot: keep CPU within wall
    if let Some(wall) = out.get("wall_time_ms").and_then(Value::as_u64)
        && out.get("cpu_time_ms").is_none()
        && defaults.cpu_time_ms > wall
    {
        out["cpu_time_ms"] = json!(wall);
    }
    Ok(out)
}

/// The native answer as Piston's: `run`, and `compile` when the language compiles.
fn answer(name: &str, version: String, body: &Value) -> Value {
    let compile = body.get("compile").filter(|c| !c.is_null()).map(stage);
    let run = match (body.get("run").filter(|r| !r.is_null()), body.get("syntax").filter(|s| !s.is_null())) {
        (Some(run), _) => stage(run),
        // the syntax check refused it: Piston's interpreter would have failed the run
        (None, Some(syntax)) if compile.is_none() => stage(syntax),
        // a failed compile: Piston repeats it as the run
        _ => compile.clone().unwrap_or_else(|| stage(body)),
    };
    let mut out = json!({"language": name, "version": version, "run": run});
    if let Some(c) = compile {
        out["compile"] = c;
    }
    out
}

/// A native stage (or test) as Piston's ten keys.
fn stage(s: &Value) -> Value {
    let stdout = String::from_utf8_lossy(&stream(s, "stdout")).into_owned();
    let stderr = String::from_utf8_lossy(&stream(s, "stderr")).into_owned();
    let status = s.get("status").and_then(Value::as_str).unwrap_or("internal_error");
    let exit = s.get("exit_code").and_then(Value::as_i64);
    let signal = s.get("signal").and_then(Value::as_i64);
    let signal_name = s.get("signal_name").and_then(Value::as_str);
    let wall = s.get("exceeded").and_then(Value::as_str) == Some("wall_time");
    let stderr_over = s.get("stderr_truncated").and_then(Value::as_bool) == Some(true)
        && s.get("stdout_truncated").and_then(Value::as_bool) != Some(true);
    let (code, status, signal, message): (Option<i64>, Option<&str>, Option<String>, Option<String>) = match status {
        "ok" | "syntax_error" | "compile_error" if exit.unwrap_or(0) == 0 => (Some(0), None, None, None),
        "time_limit" => (
            None,
            Some("TO"),
            Some("SIGKILL".into()),
            Some(if wall { "Time limit exceeded (wall clock)" } else { "Time limit exceeded" }.into()),
        ),
        "output_limit" if stderr_over => {
            (None, Some("EL"), Some("SIGKILL".into()), Some("stderr length exceeded".into()))
        }
        "output_limit" => (None, Some("OL"), Some("SIGKILL".into()), Some("stdout length exceeded".into())),
        "internal_error" => (None, Some("XX"), None, s.get("message").and_then(Value::as_str).map(str::to_owned)),
        _ => match (signal, exit) {
            (Some(n), _) => (
                None,
                Some("SG"),
                Some(signal_name.map_or_else(|| format!("SIG{n}"), str::to_owned)),
                Some(format!("Caught fatal signal {n}")),
            ),
            // the memory limit kills with SIGKILL (Piston has no status of its own for it)
            (None, None) if status == "memory_limit" => {
                (None, Some("SG"), Some("SIGKILL".into()), Some("Caught fatal signal 9".into()))
            }
            (None, code) => {
                let code = code.unwrap_or(1);
                (Some(code), Some("RE"), None, Some(format!("Exited with error status {code}")))
            }
        },
    };
    let time = s.get("time");
    let ms = |k: &str| time.and_then(|t| t.get(k)).and_then(Value::as_f64).unwrap_or(0.0);
    let memory = s.get("memory_peak_kb").and_then(Value::as_u64).unwrap_or(0) * 1024;
    json!({
        "stdout": stdout,
        "stderr": stderr,
        "output": format!("{stdout}{stderr}"),
        "code": code,
        "signal": signal,
        "message": message,
        "status": status,
        "cpu_time": ms("cpu_ms"),
        "wall_time": ms("wall_ms"),
        "memory": memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_semver() {
        assert_eq!(semver_of("3.11.2"), "3.11.2");
        assert_eq!(semver_of("5.2.15(1)-release"), "5.2.15");
        assert_eq!(semver_of("21"), "21.0.0");
        assert_eq!(semver_of("go1.19.8"), "1.19.8");
        assert_eq!(semver_of("17.0.13.1"), "17.0.13");
        assert_eq!(semver_of("unknown"), "0.0.0");
    }

    #[test]
    fn ranges_follow_node_semver() {
        let v = Version::parse("3.11.2").unwrap();
        for (range, ok) in [
            ("*", true),
            ("3.11.2", true),
            ("3.11", true),
            ("3.x", true),
            ("^3.10", true),
            ("~3.11.0", true),
            ("3.12", false),
            ("3.11.1", false),
            (">=3 <4", true),
            ("2.x || 3.11.x", true),
            ("3.10.0 - 3.12.0", true),
        ] {
            assert_eq!(Range::parse(range).unwrap().satisfies(&v), ok, "{range}");
        }
    }

    #[test]
    fn stages_take_pistons_shape() {
        let ok = json!({"status": "ok", "exit_code": 0, "signal": null, "stdout": "hi\n", "stderr": "",
                        "time": {"cpu_ms": 1.5, "wall_ms": 2.0}, "memory_peak_kb": 10});
        let s = stage(&ok);
        assert_eq!(s["stdout"], "hi\n");
        assert_eq!(s["output"], "hi\n");
        assert_eq!(s["code"], 0);
        assert!(s["status"].is_null() && s["signal"].is_null() && s["message"].is_null());
        assert_eq!(s["memory"], 10240);
        assert_eq!(s.as_object().unwrap().len(), 10);
        let re = stage(&json!({"status": "runtime_error", "exit_code": 3, "stdout": "", "stderr": "x"}));
        assert_eq!((re["code"].clone(), re["status"].clone()), (json!(3), json!("RE")));
        assert_eq!(re["message"], "Exited with error status 3");
        let to = stage(&json!({"status": "time_limit", "exceeded": "wall_time", "exit_code": null, "signal": 9}));
        assert_eq!(
            (to["status"].clone(), to["signal"].clone(), to["code"].clone()),
            (json!("TO"), json!("SIGKILL"), Value::Null)
        );
        assert_eq!(to["message"], "Time limit exceeded (wall clock)");
        let sg = stage(&json!({"status": "runtime_error", "signal": 11, "signal_name": "SIGSEGV"}));
        assert_eq!((sg["status"].clone(), sg["signal"].clone()), (json!("SG"), json!("SIGSEGV")));
        let ol = stage(&json!({"status": "output_limit", "stdout_truncated": true}));
        assert_eq!((ol["status"].clone(), ol["message"].clone()), (json!("OL"), json!("stdout length exceeded")));
        let b64 = stage(&json!({"status": "ok", "stdout": "/w==", "stdout_encoding": "base64"}));
        assert_eq!(b64["stdout"], "\u{fffd}");
    }

    #[test]
    fn a_failed_compile_is_repeated_as_run() {
        let body = json!({"status": "compile_error", "compile": {"status": "runtime_error", "exit_code": 1,
                          "stdout": "", "stderr": "main.cpp: error"}, "run": null, "syntax": null});
        let a = answer("c++", "12.2.0".into(), &body);
        assert_eq!(a["run"], a["compile"]);
        assert_eq!(a["compile"]["status"], "RE");
        let syntax = json!({"status": "syntax_error", "syntax": {"status": "runtime_error", "exit_code": 1,
                            "stdout": "", "stderr": "SyntaxError"}, "compile": null, "run": null});
        let a = answer("python", "3.11.2".into(), &syntax);
        assert!(a.get("compile").is_none());
        assert_eq!(a["run"]["stderr"], "SyntaxError");
    }
}
