//! The HTTP layer end to end (listeners, routing, auth, errors, backpressure, disconnects,
//! shutdown) over a real Unix socket and TCP port, with a fake executor so it needs no
//! privileges. `tests/api_root.rs` does the same against the real daemon and sandboxes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod access;
mod contest;
mod jobs;
mod service;

use super::*;
use crate::client::{Connection, Endpoint, Reply};
use crate::config::Config;
use crate::lang::Availability;
use crate::run::{RunError, RunOutcome, RunRequest, Status};

/// Runs nothing: the program's text says what to do. `sleep` blocks until cancelled (or
/// 30 s); `fail` is an executor error (a bug: 500); anything else echoes the code, stdin
/// and argv.
#[derive(Default)]
struct Fake {
    started: AtomicUsize,
    cancelled: AtomicUsize,
    last: Mutex<Option<RunRequest>>,
}

impl Executor for Fake {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        // a compiled program's run has no files of its own (its binary is in the workdir)
        let code = req.files.first().map(|f| String::from_utf8_lossy(&f.contents).into_owned()).unwrap_or_default();
        let mut o = RunOutcome {
            status: Status::Ok,
            exceeded: None,
            exit_code: Some(0),
            signal: None,
            message: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_time: Duration::from_millis(1),
            wall_time: Duration::from_millis(2),
            memory_peak_bytes: 4096,
            files: Vec::new(),
            files_truncated: false,
        };
        // bash's syntax check (`bash -n`) passes; only runs are counted and answered
        if req.argv.get(1).is_some_and(|a| a == "-n") {
            return Ok(o);
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = Some(req.clone());
        match code.as_str() {
            "fail" => return Err(RunError::Thread(std::io::Error::other("the fake executor failed"))),
            "sleep" => {
                let cancel = req.cancel.as_ref().expect("the API passes a cancel token");
                let mut fds = [nix::poll::PollFd::new(cancel.as_fd(), nix::poll::PollFlags::POLLIN)];
                let fired = nix::poll::poll(&mut fds, 30_000u16).unwrap() > 0;
                if fired {
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    o.status = Status::InternalError;
                    o.message = Some("cancelled".into());
                }
            }
            "binary" => o.stdout = vec![0xff, 0x00, 0xfe],
            _ => {
                o.stdout = format!("{code}|{}|{}", String::from_utf8_lossy(&req.stdin), req.argv.join(" ")).into_bytes()
            }
        }
        Ok(o)
    }
}

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: Endpoint,
    api: Arc<Api>,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(edit: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock/api.sock");
        let mut config = Config::default();
        config.server.unix_socket = socket.display().to_string();
        config.server.tcp = "127.0.0.1:0".into();
        config.runs.concurrency = 4;
        // the journal, as a daemon has it by default
        config.jobs.dir = dir.path().join("jobs").display().to_string();
        edit(&mut config);
        let settings = config.validate().unwrap();
        let fake = Arc::new(Fake::default());
        let languages = Registry::with(crate::lang::load(None).unwrap(), |l| match l.id.as_str() {
            "javascript" => Availability::Unavailable { reason: "node not found".into() },
            _ => Availability::Available { version: "1.0".into() },
        });
        let description = Description {
            cgroup_mode: "v2",
            cgroup_layout: "fake".into(),
            rootfs: "host".into(),
            seccomp_profile: "default".into(),
            seccomp_instructions: 1,
            network_uplink: None,
        };
        let jobs = super::open_store(&settings).await.unwrap();
        let api = Api::new(
            Arc::clone(&fake) as Arc<dyn Executor>,
            description,
            languages,
            Policy::from(&settings),
            None,
            jobs,
        );
        let listeners = bind(&settings).await.unwrap();
        let tcp = Endpoint::Tcp(listeners.tcp_addr().unwrap().to_string());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(serve(
            Arc::clone(&api),
            listeners,
            async move { drop(stopped.await) },
            settings.shutdown_grace,
        ));
        Server { _dir: dir, socket, tcp, api, fake, stop: Some(stop), done }
    }

    async fn unix(&self) -> Connection {
        Connection::open(&Endpoint::Unix(self.socket.clone()), None).await.unwrap()
    }

    async fn tcp(&self, key: Option<&str>) -> Connection {
        Connection::open(&self.tcp, key).await.unwrap()
    }

    async fn execute(&self, body: Value) -> Reply {
        self.unix().await.post_json("/v1/execute", &body).await.unwrap()
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.done).await.expect("the server stops").unwrap();
    }
}

/// Asserts an error response: status, code, a message containing `needle`, a request id.
fn expect_error(r: &Reply, status: StatusCode, code: &str, needle: &str) {
    let v = r.json();
    assert_eq!(r.status, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} should contain {needle:?}");
    let id = v["error"]["request_id"].as_str().unwrap();
    assert_eq!(r.headers["x-request-id"].to_str().unwrap(), id);
    assert_eq!(r.headers["content-type"], "application/json");
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_answers_200_with_its_outcome() {
    let s = Server::start(|_| {}).await;
    let r = s.execute(json!({"language": "PY", "code": "print(1)", "stdin": "in", "args": ["a", "b c"]})).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["stdout"], "print(1)|in|python3 main.py a b c");
    assert_eq!(v["language"], json!({"id": "python", "version": "1.0"}));
    assert_eq!(v["time"], json!({"cpu_ms": 1.0, "wall_ms": 2.0}));
    assert_eq!(v["memory_peak_kb"], 4);
    assert_eq!(v["request_id"], r.headers["x-request-id"].to_str().unwrap());
    // the defaults apply to limits left out, the request's to those given
    let r =
        s.execute(json!({"language": "bash", "code": "x", "limits": {"memory_mb": 32, "wall_time_ms": 1500}})).await;
    assert_eq!(r.status, StatusCode::OK);
    let limits = s.fake.last.lock().unwrap().as_ref().unwrap().limits.clone();
    assert_eq!(
        (limits.memory_bytes, limits.wall_time, limits.cpu_time),
        (32 << 20, Duration::from_millis(1500), Duration::from_secs(5))
    );
    // files, base64, and the main file chosen by name
    let r = s
        .execute(json!({"language": "python", "files": [
            {"name": "lib/util.py", "content": "aGk=", "encoding": "base64"},
            {"name": "main.py", "content": "import lib"}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let last = s.fake.last.lock().unwrap().clone().unwrap();
    assert_eq!(last.argv, ["python3", "main.py"]);
    assert_eq!(last.files[0].contents, b"hi");
    // output that is not UTF-8 comes back as base64
    let v = s.execute(json!({"language": "bash", "code": "binary"})).await.json();
    assert_eq!((v["stdout"].as_str(), v["stdout_encoding"].as_str()), (Some("/wD+"), Some("base64")));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_routes_answer() {
    let s = Server::start(|_| {}).await;
    let mut c = s.unix().await;
    let v = c.get("/health").await.unwrap().json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["cgroup"]["mode"], "v2");
    assert_eq!(v["runs"], json!({"concurrency": 4, "queue": 64, "running": 0, "waiting": 0}));
    let v = c.get("/version").await.unwrap().json();
    assert_eq!(v, json!({"name": "codeexec", "version": env!("CARGO_PKG_VERSION")}));
    let v = c.get("/v1/languages").await.unwrap().json();
    let js = v["languages"].as_array().unwrap().iter().find(|l| l["id"] == "javascript").unwrap();
    assert_eq!((js["available"].as_bool(), js["reason"].as_str()), (Some(false), Some("node not found")));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_fitting_status_and_the_server_keeps_serving() {
    let s = Server::start(|c| c.server.max_body_kb = 4).await;
    let mut c = s.unix().await;
    expect_error(&c.get("/nope").await.unwrap(), StatusCode::NOT_FOUND, "not_found", "no such path");
    let r = c.get("/v1/execute").await.unwrap();
    expect_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "POST");
    assert_eq!(r.headers["allow"], "POST");
    let r = c.send(Method::DELETE, "/health", None, Bytes::new()).await.unwrap();
    assert_eq!(r.headers["allow"], "GET");
    let r = c.send(Method::POST, "/v1/execute", Some("text/plain"), Bytes::from_static(b"{}")).await.unwrap();
    expect_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "application/json");
    let r = c.send(Method::POST, "/v1/execute", None, Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // a content type with parameters is JSON too
    let body = Bytes::from_static(br#"{"language": "bash", "code": "x"}"#);
    let r = c.send(Method::POST, "/v1/execute", Some("Application/JSON; charset=utf-8"), body).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let post = |body: &'static [u8]| Bytes::from_static(body);
    let r = c
        .send(Method::POST, "/v1/execute", Some("application/json"), post(b"{\"language\": \"bash\",\n \"code\": "))
        .await
        .unwrap();
    expect_error(&r, StatusCode::BAD_REQUEST, "bad_json", "at line 2 column 9: EOF while parsing a value");
    let r = c
        .send(Method::POST, "/v1/execute", Some("application/json"), post(b"{\"language\": \"bash\" \"code\": 1}"))
        .await
        .unwrap();
    expect_error(&r, StatusCode::BAD_REQUEST, "bad_json", "line 1 column 21");
    // invalid UTF-8 inside a JSON string is not JSON
    let r = c
        .send(
            Method::POST,
            "/v1/execute",
            Some("application/json"),
            post(b"{\"language\": \"bash\", \"code\": \"\xff\xfe\"}"),
        )
        .await
        .unwrap();
    expect_error(&r, StatusCode::BAD_REQUEST, "bad_json", "line 1");
    let big = Bytes::from(format!(r#"{{"language": "bash", "code": "{}"}}"#, "x".repeat(5000)));
    let r = c.send(Method::POST, "/v1/execute", Some("application/json"), big).await.unwrap();
    expect_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "4096 bytes");
    drop(c);

    let invalid: [(Value, &str); 17] = [
        (
            json!({"language": "cobol", "code": "x"}),
            "unsupported language \"cobol\"; supported: bash, c, cpp, go, java, javascript, python, ruby, rust, typescript",
        ),
        (json!({"language": "js", "code": "x"}), "javascript is not available here: node not found"),
        (json!({"language": "bash"}), "no code"),
        (json!({"language": "bash", "code": ""}), "no code"),
        (json!({"language": "bash", "files": []}), "no code"),
        (json!({"language": "bash", "code": "x", "files": [{"name": "a", "content": ""}]}), "not both"),
        (json!({"code": "x"}), "missing field `language`"),
        (json!({"language": "bash", "code": "x", "extra": 1}), "unknown field `extra`"),
        (json!({"language": "bash", "code": 5}), "invalid type: integer `5`, expected a string"),
        (json!({"language": "bash", "code": "x", "args": "a b"}), "invalid type"),
        (
            json!({"language": "bash", "code": "x", "limits": {"memory_mb": 0}}),
            "limits.memory_mb = 0: must be 1 to 4096",
        ),
        (
            json!({"language": "bash", "code": "x", "limits": {"cpu_time_ms": 60001}}),
            "limits.cpu_time_ms = 60001: must be 1 to 60000",
        ),
        (json!({"language": "bash", "code": "x", "limits": {"wall_time_ms": -5}}), "invalid value: integer `-5`"),
        (json!({"language": "bash", "code": "x", "limits": {"processes": 1e300}}), "invalid type: floating point"),
        (json!({"language": "bash", "code": "x", "limits": {"gpu": 1}}), "unknown field `gpu`"),
        (
            json!({"language": "bash", "files": [{"name": "a", "content": "!!", "encoding": "base64"}]}),
            "not valid base64",
        ),
        (json!({"language": "bash", "files": [{"name": "../etc/x", "content": ""}]}), "file name"),
    ];
    for (body, needle) in invalid {
        let r = s.execute(body.clone()).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", needle);
    }
    let r = s.execute(json!({"language": "bash", "code": "x", "limits": {"memory_mb": 18446744073709551615u64}})).await;
    expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "must be 1 to 4096");
    // an executor failure is ours: 500, logged under the request id
    let r = s.execute(json!({"language": "bash", "code": "fail"})).await;
    expect_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the fake executor failed");
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 2, "only the valid requests ran");
    // and still serving
    assert_eq!(s.execute(json!({"language": "bash", "code": "x"})).await.status, StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_maximum_is_refused_as_it_streams() {
    let s = Server::start(|c| c.server.max_body_kb = 1).await;
    let mut raw = tokio::net::UnixStream::connect(&s.socket).await.unwrap();
    let chunk = "x".repeat(800);
    let head =
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    raw.write_all(head.as_bytes()).await.unwrap();
    // two chunks go over the 1 KiB maximum; the body's end is never sent, so the answer
    // can only come from a check made while the body streams in
    for _ in 0..2 {
        raw.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), raw.read(&mut buf))
        .await
        .expect("413 before the body ends")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_a_key_when_keys_are_set_and_the_unix_socket_never_does() {
    const KEY: &str = "0123456789abcdef-key";
    let s = Server::start(|c| c.server.api_keys = vec!["another-key-0123456789".into(), KEY.into()]).await;
    for key in [None, Some("wrong-key-0123456789"), Some("0123456789abcdef-ke"), Some("0123456789abcdef-key2")] {
        let r = s.tcp(key).await.get("/health").await.unwrap();
        expect_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized");
        assert_eq!(r.json()["error"]["message"], "unauthorized");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    // 401 comes before anything else, so an unknown path tells nothing
    expect_error(&s.tcp(None).await.get("/nope").await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized", "");
    assert_eq!(s.tcp(Some(KEY)).await.get("/health").await.unwrap().status, StatusCode::OK);
    // an orchestrator's probes need no key (and say nothing else)
    let live = s.tcp(None).await.get("/livez").await.unwrap();
    assert_eq!((live.status, live.json()), (StatusCode::OK, json!({"status": "ok"})));
    let ready = s.tcp(None).await.get("/readyz").await.unwrap();
    assert_eq!((ready.status, ready.json()), (StatusCode::OK, json!({"status": "ready"})));
    let mut c = s.tcp(None).await;
    let bearer = Bytes::new();
    let r = {
        let req = hyper::Request::builder()
            .uri("/version")
            .header("host", "x")
            .header("authorization", format!("bearer {KEY}"))
            .body(http_body_util::Full::new(bearer))
            .unwrap();
        c.raw(req).await.unwrap()
    };
    assert_eq!(r.status, StatusCode::OK);
    let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &json!({"language": "bash", "code": "x"})).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.unix().await.get("/health").await.unwrap().status, StatusCode::OK);
    s.shutdown().await;

    // no keys: TCP is open (on loopback)
    let s = Server::start(|_| {}).await;
    assert_eq!(s.tcp(None).await.get("/health").await.unwrap().status, StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_a_client_that_leaves_has_its_run_cancelled() {
    let s = Server::start(|c| {
        c.runs.concurrency = 1;
        c.runs.queue = 1;
    })
    .await;
    let sleep = json!({"language": "bash", "code": "sleep"});
    let mut running = s.unix().await;
    let mut queued = s.unix().await;
    let first =
        tokio::spawn(
            async move { running.post_json("/v1/execute", &json!({"language": "bash", "code": "sleep"})).await },
        );
    eventually("the first run", || s.api.limiter.running() == 1).await;
    let second =
        tokio::spawn(
            async move { queued.post_json("/v1/execute", &json!({"language": "bash", "code": "sleep"})).await },
        );
    eventually("the second to queue", || s.api.limiter.waiting() == 1).await;
    let r = s.execute(sleep.clone()).await;
    expect_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "retry later");
    assert_eq!(r.headers["retry-after"], "1");
    let health = s.unix().await.get("/health").await.unwrap().json();
    assert_eq!((health["runs"]["running"].as_u64(), health["runs"]["waiting"].as_u64()), (Some(1), Some(1)));
    // both clients hang up: the queued one gives its place back, the running one's run is
    // cancelled, and its slot is free once the run has really ended
    second.abort();
    eventually("the queue to empty", || s.api.limiter.waiting() == 0).await;
    first.abort();
    eventually("the run to be cancelled", || s.fake.cancelled.load(Ordering::SeqCst) == 1).await;
    eventually("the slot to be free", || s.api.limiter.running() == 0).await;
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 1, "the queued request never ran");
    assert_eq!(s.execute(json!({"language": "bash", "code": "x"})).await.status, StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_are_all_answered_correctly() {
    let s = Server::start(|c| c.runs.concurrency = 4).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let endpoint = if i % 2 == 0 { Endpoint::Unix(s.socket.clone()) } else { s.tcp.clone() };
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::open(&endpoint, None).await.unwrap();
            let r = c
                .post_json(
                    "/v1/execute",
                    &json!({"language": "bash", "code": format!("run {i}"), "stdin": i.to_string()}),
                )
                .await
                .unwrap();
            (i, r.status, r.json())
        }));
    }
    for t in tasks {
        let (i, status, v) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["stdout"], format!("run {i}|{i}|bash main.sh"));
    }
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 50);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_runs_within_the_grace_period_then_cancels_them() {
    let s = Server::start(|c| c.server.shutdown_grace_ms = 300).await;
    let socket = s.socket.clone();
    let mut c = s.unix().await;
    let run =
        tokio::spawn(async move { c.post_json("/v1/execute", &json!({"language": "bash", "code": "sleep"})).await });
    eventually("the run", || s.api.limiter.running() == 1).await;
    let api = Arc::clone(&s.api);
    let fake = Arc::clone(&s.fake);
    s.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed");
    assert!(!PathBuf::from(format!("{}.lock", socket.display())).exists(), "and its lock");
    let r = run.await.unwrap().unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "shutting_down");
    assert_eq!(fake.cancelled.load(Ordering::SeqCst), 1);
    // after the grace period nothing new may start
    assert!(api.inflight.lock().unwrap().stopping);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_short_run_finish() {
    let s = Server::start(|c| c.server.shutdown_grace_ms = 20_000).await;
    let mut c = s.unix().await;
    let run =
        tokio::spawn(async move { c.post_json("/v1/execute", &json!({"language": "bash", "code": "sleep"})).await });
    eventually("the run", || s.api.limiter.running() == 1).await;
    let fake = Arc::clone(&s.fake);
    let socket = s.socket.clone();
    let stopping = tokio::spawn(s.shutdown());
    // the daemon waits for the run; let it end on its own (as a program would), by hand
    eventually("the shutdown to begin", || !socket.exists()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the run");
    assert_eq!(fake.cancelled.load(Ordering::SeqCst), 0);
    let token = fake.last.lock().unwrap().as_ref().unwrap().cancel.clone().unwrap();
    token.cancel(); // stands in for the program ending
    let r = run.await.unwrap().unwrap();
    assert_eq!(r.status, StatusCode::OK);
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_replaces_a_stale_one_and_refuses_a_live_one() {
    let s = Server::start(|_| {}).await;
    let mut settings = Config::default();
    settings.server.unix_socket = s.socket.display().to_string();
    let settings = settings.validate().unwrap();
    let e = bind(&settings).await.unwrap_err();
    assert!(e.to_string().contains("in use by a running daemon"), "{e}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&s.socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);
    // a stale socket: bound once, its listener gone
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let mut c = Config::default();
    c.server.unix_socket = stale.display().to_string();
    assert!(bind(&c.validate().unwrap()).await.is_ok());
    // not a socket: left alone
    let file = dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    c.server.unix_socket = file.display().to_string();
    assert!(bind(&c.validate().unwrap()).await.unwrap_err().to_string().contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_body_budget_are_refused_as_they_arrive() {
    let s = Server::start(|c| {
        c.runs.concurrency = 1;
        c.runs.queue = 0;
        c.server.max_body_kb = 1024;
    })
    .await;
    // a body of 700 KiB announced and 600 KiB sent: held (no place is taken meanwhile)
    let head =
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 716800\r\n\r\n";
    let mut first = tokio::net::UnixStream::connect(&s.socket).await.unwrap();
    first.write_all(head.as_bytes()).await.unwrap();
    first.write_all(&vec![b' '; 600 << 10]).await.unwrap();
    assert_eq!(s.unix().await.get("/health").await.unwrap().status, StatusCode::OK);
    // a second such body goes past the budget of 1 MiB: 429 while it is being sent
    let mut second = tokio::net::UnixStream::connect(&s.socket).await.unwrap();
    second.write_all(head.as_bytes()).await.unwrap();
    let _ = second.write_all(&vec![b' '; 600 << 10]).await;
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), second.read(&mut buf)).await.expect("429").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    drop(first);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_maximum_wait_for_one_to_close() {
    let s = Server::start(|c| c.server.max_connections = 2).await;
    let mut first = s.unix().await;
    let mut second = s.unix().await;
    assert_eq!(first.get("/health").await.unwrap().status, StatusCode::OK);
    assert_eq!(second.get("/health").await.unwrap().status, StatusCode::OK);
    // the third connects (the listen backlog) but is not served while two are open
    let mut third = s.unix().await;
    let waiting = tokio::spawn(async move { third.get("/version").await.map(|r| r.status) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("served once one closed");
    assert_eq!(status.unwrap().unwrap(), StatusCode::OK);
    drop(second);
    s.shutdown().await;
}
