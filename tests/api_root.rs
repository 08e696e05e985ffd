//! The real daemon (`codeexec serve`, the binary) over a temporary Unix socket and a TCP
//! port, running real sandboxes: languages, limits, auth, bad input, backpressure, a
//! client that hangs up, graceful shutdown, and `codeexec run --remote`. Root only (see
//! `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use codeexec::client::{Connection, Endpoint, Reply};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use common::daemon::{Daemon, get, post, runtime};
use common::{bin, processes_with_arg};

const KEY: &str = "test-key-0123456789abcdef";

/// A 200 with this run status; the whole response on failure.
fn expect_run(r: &Reply, status: &str) -> Value {
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], status, "{v:#}");
    v
}

fn expect_error(r: &Reply, status: StatusCode, needle: &str) {
    let v = r.json();
    assert_eq!(r.status, status, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains(needle), "{v} should mention {needle:?}");
    assert_eq!(v["error"]["request_id"].as_str().unwrap(), r.headers["x-request-id"].to_str().unwrap());
}

/// Writes `request` on a new connection (in the background, ignoring a close part way) and
/// returns what the daemon answers.
async fn raw_exchange(socket: &std::path::Path, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let request = request.as_bytes().to_vec();
    let writer = tokio::spawn(async move { drop(wr.write_all(&request).await) });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await.expect("an answer") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}") {
            break;
        }
    }
    writer.abort();
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits until `/health` shows this many runs running and waiting.
async fn wait_runs(endpoint: &Endpoint, running: u64, waiting: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = get(endpoint, None, "/health").await.json();
        if h["runs"]["running"] == running && h["runs"]["waiting"] == waiting {
            return;
        }
        assert!(Instant::now() < deadline, "runs never got to {running} running and {waiting} waiting: {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` for up to 30 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn languages_and_limits_through_the_daemon() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let health = get(&unix, None, "/health").await.json();
        assert_eq!(health["status"], "ok");
        if let Ok(expected) = std::env::var("CODEEXEC_EXPECT_CGROUP") {
            assert_eq!(health["cgroup"]["mode"], expected.as_str(), "{health}");
        }
        let langs = get(&unix, None, "/v1/languages").await.json();
        for id in ["python", "bash", "javascript"] {
            let l = langs["languages"].as_array().unwrap().iter().find(|l| l["id"] == id).unwrap();
            assert_eq!(l["available"], true, "{l}");
        }

        let v = expect_run(
            &post(&unix, None, &json!({"language": "python3", "code": "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])", "stdin": "hi", "args": ["a", "b c"]})).await,
            "ok",
        );
        assert_eq!(v["stdout"], "HI ['a', 'b c']\n");
        assert_eq!(v["language"]["id"], "python");
        assert!(v["language"]["version"].as_str().unwrap().starts_with('3'), "{v}");
        assert!(v["memory_peak_kb"].as_u64().unwrap() > 0 && v["time"]["wall_ms"].as_f64().unwrap() > 0.0, "{v}");

        let v = expect_run(&post(&unix, None, &json!({"language": "sh", "code": "echo \"$1\" $(cat)\nexit 3", "stdin": "in", "args": ["x"]})).await, "runtime_error");
        assert_eq!((v["stdout"].as_str(), v["exit_code"].as_i64()), (Some("x in\n"), Some(3)));

        let v = expect_run(&post(&unix, None, &json!({"language": "node", "code": "console.log([1,2].map(x => x * 2).join(','))"})).await, "ok");
        assert_eq!(v["stdout"], "2,4\n");

        // files: a module beside the main file, one of them base64
        let files = json!([
            {"name": "main.py", "content": "from lib.util import f\nprint(f())"},
            {"name": "lib/__init__.py", "content": ""},
            {"name": "lib/util.py", "content": "ZGVmIGYoKTogcmV0dXJuIDQy", "encoding": "base64"}
        ]);
        let v = expect_run(&post(&unix, None, &json!({"language": "python", "files": files})).await, "ok");
        assert_eq!(v["stdout"], "42\n");

        // the request's limits are enforced
        let v = expect_run(&post(&unix, None, &json!({"language": "python", "code": "while True: pass", "limits": {"cpu_time_ms": 300}})).await, "time_limit");
        assert_eq!(v["exceeded"], "cpu_time");
        let v = expect_run(
            &post(&unix, None, &json!({"language": "python", "code": "x = bytearray(200 << 20)\nprint(len(x))", "limits": {"memory_mb": 64}})).await,
            "memory_limit",
        );
        assert_eq!(v["exceeded"], "memory");
        let v = expect_run(&post(&unix, None, &json!({"language": "bash", "code": "yes | head -c 100000", "limits": {"output_kb": 1}})).await, "output_limit");
        assert_eq!((v["stdout"].as_str().unwrap().len(), v["stdout_truncated"].as_bool()), (1024, Some(true)));
        // a compiled language: the compiler's stage, then the program's
        let v = expect_run(&post(&unix, None, &json!({"language": "c", "code": "#include <stdio.h>\nint main(void) { puts(\"compiled\"); return 0; }\n"})).await, "ok");
        assert_eq!((v["stdout"].as_str(), v["stage"].as_str(), v["compile"]["status"].as_str()), (Some("compiled\n"), Some("run"), Some("ok")), "{v}");
        let r = post(&unix, None, &json!({"language": "c", "code": "int main(void) {\n  return y;\n}\n"})).await;
        let v = expect_run(&r, "compile_error");
        assert_eq!((v["stage"].as_str(), v["run"].is_null()), (Some("compile"), true), "{v}");
        let d = &v["diagnostics"][0];
        assert_eq!((d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64(), d["severity"].as_str()), (Some("main.c"), Some(2), Some(10), Some("error")), "{v}");
        assert!(v["stderr"].as_str().unwrap().contains("y’ undeclared"), "the compiler's own words: {v}");
        let v = expect_run(&post(&unix, None, &json!({"language": "python", "code": "def f():\n    raise ValueError('no')\nf()\n"})).await, "runtime_error");
        assert_eq!((v["error"]["type"].as_str(), v["error"]["frames"][0]["line"].as_u64()), (Some("ValueError"), Some(2)), "{v}");
        let v = expect_run(&post(&unix, None, &json!({"language": "bash", "code": "printf '\\377\\376'"})).await, "ok");
        assert_eq!((v["stdout"].as_str(), v["stdout_encoding"].as_str()), (Some("//4="), Some("base64")));
    });
}

#[test]
fn bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving() {
    require_privileged!();
    let d = Daemon::start(&[
        ("CODEEXEC_SERVER_MAX_BODY_KB", "64"),
        ("CODEEXEC_SERVER_API_KEYS", &format!("another-key-0123456789,{KEY}")),
    ]);
    runtime().block_on(async {
        let unix = d.unix();
        let mut c = Connection::open(&unix, None).await.unwrap();
        let json_ct = Some("application/json");
        let cases: [(&[u8], StatusCode, &str); 5] = [
            (b"{\"language\": \"python\", \"code\": \"pri", StatusCode::BAD_REQUEST, "line 1 column 35"),
            (b"{\"language\": \"python\", \"code\": \"\xc3\x28\"}", StatusCode::BAD_REQUEST, "malformed JSON"),
            (b"[1, 2]", StatusCode::UNPROCESSABLE_ENTITY, "invalid type"),
            (b"{\"language\": 3, \"code\": \"x\"}", StatusCode::UNPROCESSABLE_ENTITY, "invalid type: integer `3`"),
            (b"", StatusCode::BAD_REQUEST, "EOF"),
        ];
        for (body, status, needle) in cases {
            let r = c.send(Method::POST, "/v1/execute", json_ct, Bytes::from_static(body)).await.unwrap();
            expect_error(&r, status, needle);
        }
        // a huge body: the answer comes before the body is read (as curl shows it; hyper's
        // client gives up when the server closes while it still writes, so this is raw)
        let huge = format!(r#"{{"language": "python", "code": "{}"}}"#, "#".repeat(1 << 20));
        let head = raw_exchange(&d.socket, &format!(
            "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{huge}",
            huge.len()
        ))
        .await;
        assert!(head.starts_with("HTTP/1.1 413") && head.contains("65536 bytes"), "{head}");
        expect_error(&c.send(Method::POST, "/v1/execute", Some("text/plain"), Bytes::from_static(b"{}")).await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "JSON");
        expect_error(&c.get("/v1/execute").await.unwrap(), StatusCode::METHOD_NOT_ALLOWED, "POST");
        expect_error(&c.get("/v2").await.unwrap(), StatusCode::NOT_FOUND, "no such path");

        for (body, needle) in [
            (json!({"language": "fortran", "code": "x"}), "supported: bash, c, cpp, go, java, javascript, python, ruby, rust, typescript"),
            (json!({"language": "python"}), "no code"),
            (json!({"language": "python", "code": "x", "limits": {"memory_mb": 0}}), "must be 1 to 4096"),
            (json!({"language": "python", "code": "x", "limits": {"cpu_time_ms": -1}}), "invalid value"),
            (json!({"language": "python", "code": "x", "limits": {"wall_time_ms": 1e12}}), "invalid type"),
            (json!({"language": "python", "code": "x", "limits": {"processes": 99_999_999_999u64}}), "must be 1 to 1024"),
            (json!({"language": "python", "code": "x", "timeout": 5}), "unknown field `timeout`"),
            (json!({"language": "python", "code": "x", "args": [1]}), "invalid type"),
        ] {
            expect_error(&post(&unix, None, &body).await, StatusCode::UNPROCESSABLE_ENTITY, needle);
        }

        // TCP wants a key; the Unix socket does not
        let ok = json!({"language": "bash", "code": "echo ok"});
        expect_error(&post(&d.tcp, None, &ok).await, StatusCode::UNAUTHORIZED, "unauthorized");
        expect_error(&post(&d.tcp, Some("not-the-key-0123456789"), &ok).await, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(expect_run(&post(&d.tcp, Some(KEY), &ok).await, "ok")["stdout"], "ok\n");
        assert_eq!(expect_run(&post(&unix, None, &ok).await, "ok")["stdout"], "ok\n");
    });
}

#[test]
fn fifty_concurrent_requests_are_all_answered_correctly() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let endpoint = if i % 2 == 0 { d.unix() } else { d.tcp.clone() };
            tasks.push(tokio::spawn(async move {
                let body = json!({"language": "bash", "code": "read n; echo $((n * 2)) \"$1\"", "stdin": format!("{i}\n"), "args": [format!("r{i}")]});
                (i, post(&endpoint, None, &body).await)
            }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            let v = expect_run(&r, "ok");
            assert_eq!(v["stdout"], format!("{} r{i}\n", i * 2));
        }
    });
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_hangs_up_has_its_run_killed() {
    require_privileged!();
    let mut d = Daemon::start(&[("CODEEXEC_RUNS_CONCURRENCY", "1"), ("CODEEXEC_RUNS_QUEUE", "1")]);
    let marker = format!("{}", 400_000 + std::process::id());
    runtime().block_on(async {
        let (unix, m) = (d.unix(), marker.clone());
        // a wall limit far beyond the test, so only the hang-up can end this run in time
        let body = json!({"language": "bash", "code": format!("sleep {m}"), "limits": {"wall_time_ms": 120_000}});
        let holder = tokio::spawn(async move { post(&unix, None, &body).await });
        eventually("the sleeping run", || !processes_with_arg(&marker).is_empty()).await;
        let unix = d.unix();
        let queued =
            tokio::spawn(async move { post(&unix, None, &json!({"language": "bash", "code": "echo queued"})).await });
        let unix = d.unix();
        wait_runs(&unix, 1, 1).await;
        let r = post(&unix, None, &json!({"language": "bash", "code": "echo too many"})).await;
        expect_error(&r, StatusCode::TOO_MANY_REQUESTS, "retry later");
        assert_eq!(r.headers["retry-after"], "1");

        // the first client hangs up: its program is killed, and the queued request runs
        holder.abort();
        let hung_up = Instant::now();
        eventually("the abandoned run's program to be killed", || processes_with_arg(&marker).is_empty()).await;
        assert!(hung_up.elapsed() < Duration::from_secs(10), "killed by the hang-up, not by a limit");
        let v = expect_run(&queued.await.unwrap(), "ok");
        assert_eq!(v["stdout"], "queued\n");
    });
    d.wait_log(Duration::from_secs(10), |l| l["message"] == "request abandoned: the client went away");
}

#[test]
fn shutdown_lets_runs_finish_within_the_grace_period() {
    require_privileged!();
    let mut d = Daemon::start(&[("CODEEXEC_SERVER_SHUTDOWN_GRACE_MS", "60000")]);
    let rt = runtime();
    let unix = d.unix();
    let run = rt
        .spawn(async move { post(&unix, None, &json!({"language": "bash", "code": "sleep 1; echo finished"})).await });
    rt.block_on(wait_runs(&d.unix(), 1, 0));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let v = expect_run(&rt.block_on(run).unwrap(), "ok");
    assert_eq!(v["stdout"], "finished\n");
    assert_eq!(d.wait_exit(Duration::from_secs(30)), 0);
    assert!(!d.socket.exists(), "the socket file is removed");
}

#[test]
fn shutdown_kills_runs_after_the_grace_period() {
    require_privileged!();
    let mut d = Daemon::start(&[("CODEEXEC_SERVER_SHUTDOWN_GRACE_MS", "300")]);
    let marker = format!("{}", 500_000 + std::process::id());
    let rt = runtime();
    let (unix, m) = (d.unix(), marker.clone());
    let run =
        rt.spawn(async move { post(&unix, None, &json!({"language": "bash", "code": format!("sleep {m}")})).await });
    rt.block_on(eventually("the run", || !processes_with_arg(&marker).is_empty()));
    d.signal(nix::sys::signal::Signal::SIGINT);
    // killed at the deadline: the daemon is shutting down, not failing
    expect_error(&rt.block_on(run).unwrap(), StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    assert_eq!(d.wait_exit(Duration::from_secs(30)), 0);
    assert!(processes_with_arg(&marker).is_empty(), "the program is gone");
    assert!(!d.socket.exists());
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    require_privileged!();
    let mut first = Daemon::start(&[]);
    let out = Command::new(bin())
        .arg("serve")
        .env_clear()
        .env("CODEEXEC_SERVER_UNIX_SOCKET", &first.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("in use by a running daemon"), "{stderr}");
    // a daemon killed outright leaves its socket file; the next one replaces it
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert!(first.socket.exists());
    let socket = first.socket.display().to_string();
    let second = Daemon::start(&[("CODEEXEC_SERVER_UNIX_SOCKET", &socket)]);
    let h = runtime().block_on(get(&second.unix(), None, "/health")).json();
    assert_eq!(h["status"], "ok");
}

#[test]
fn run_remote_prints_and_exits_like_a_local_run() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SERVER_API_KEYS", KEY)]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("prog.py");
    std::fs::write(&src, "import sys\nprint('args', sys.argv[1:])\nprint('err', file=sys.stderr)\nsys.exit(4)\n")
        .unwrap();
    let src = src.to_str().unwrap();
    let socket = format!("unix:{}", d.socket.display());
    let Endpoint::Tcp(addr) = &d.tcp else { unreachable!() };
    let tcp = format!("http://{addr}");
    let remote = |args: &[&str], key: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.arg("run").args(args).env_remove("CODEEXEC_API_KEY");
        if let Some(k) = key {
            cmd.env("CODEEXEC_API_KEY", k);
        }
        cmd.output().unwrap()
    };
    for (endpoint, key) in [(socket.as_str(), None), (tcp.as_str(), Some(KEY))] {
        let out = remote(&["--remote", endpoint, "-l", "python", src, "a", "b"], key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "runtime_error exits 1: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "args ['a', 'b']\n");
        assert!(stderr.starts_with("err\ncodeexec: runtime_error: exited with code 4"), "{stderr}");
    }
    let out = remote(&["--remote", &tcp, "--json", "--cpu-time", "200ms", "-l", "bash", src], Some(KEY));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["language"]["id"], "bash");
    let out = remote(&["--remote", &tcp, "--api-key", "wrong-key-0123456789", "-l", "python", src], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized: unauthorized"));
    // a request the daemon refuses is a usage error
    let empty = dir.path().join("empty.sh");
    std::fs::write(&empty, "").unwrap();
    let out = remote(&["--remote", &tcp, "-l", "bash", empty.to_str().unwrap()], Some(KEY));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("422 Unprocessable Entity: no code"));
}
