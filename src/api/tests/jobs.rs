//! Judge requests and async jobs through the HTTP layer, with the fake executor; a local
//! HTTP server receives the callbacks.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// A callback receiver on 127.0.0.1: answers each request with the next status of its
/// script (the last one repeats) and records what it got.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(hyper::HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(script: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(hyper::HeaderMap, Bytes)>>> = Arc::default();
        let sink = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let sink = Arc::clone(&sink);
                let script = script.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let sink = Arc::clone(&sink);
                        let script = script.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let n = {
                                let mut seen = sink.lock().unwrap();
                                seen.push((headers, body));
                                seen.len()
                            };
                            let status = script[(n - 1).min(script.len() - 1)];
                            let mut resp = hyper::Response::new(http_body_util::Full::new(Bytes::new()));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, seen }
    }
}

async fn submit(s: &Server, body: Value) -> Reply {
    s.unix().await.post_json("/v1/jobs", &body).await.unwrap()
}

async fn job(s: &Server, id: &str) -> Value {
    s.unix().await.get(&format!("/v1/jobs/{id}")).await.unwrap().json()
}

async fn until(s: &Server, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let v = job(s, id).await;
        if check(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}: {:#}", job(s, id).await);
}

const SECRET: &str = "0123456789abcdef-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_queued_run_kept_and_forgotten_when_unknown() {
    let s = Server::start(|_| {}).await;
    let r = submit(&s, json!({"language": "bash", "code": "hello", "stdin": "in"})).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["status_url"], format!("/v1/jobs/{id}"));
    assert_eq!(r.headers["location"], format!("/v1/jobs/{id}").as_str());
    assert!(matches!(v["status"].as_str(), Some("queued" | "running" | "done")), "{v}");
    let v = until(&s, &id, "done", |v| v["status"] == "done").await;
    assert_eq!(v["result"]["status"], "ok");
    assert_eq!(v["result"]["stdout"], "hello|in|bash main.sh");
    assert_eq!(v["result"]["request_id"], id.as_str());
    assert!(v["finished_at"].as_u64().unwrap() >= v["created_at"].as_u64().unwrap());
    assert!(v["callback"].is_null());
    // an ended job cannot be cancelled; an unknown one is not found
    let r = s.unix().await.send(Method::DELETE, &format!("/v1/jobs/{id}"), None, Bytes::new()).await.unwrap();
    expect_error(&r, StatusCode::CONFLICT, "conflict", "already ended");
    let r = s.unix().await.get("/v1/jobs/0123").await.unwrap();
    expect_error(&r, StatusCode::NOT_FOUND, "not_found", "finished jobs are kept 3600 s");
    // a bad job is refused as a bad run is, before it is queued
    let r = submit(&s, json!({"language": "cobol", "code": "x"})).await;
    expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "cobol");
    let r = s.execute(json!({"language": "bash", "code": "x", "callback_url": "http://example.com/"})).await;
    expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "callback_url is for POST /v1/jobs");
    let v = s.unix().await.get("/health").await.unwrap().json();
    assert_eq!((v["jobs"]["pending"].as_u64(), v["jobs"]["max_pending"].as_u64()), (Some(0), Some(1000)), "{v}");
    assert!(v["jobs"]["store"].as_str().unwrap().starts_with("sqlite "), "jobs are kept on disk by default: {v}");
    assert_eq!(v["jobs"]["held"], 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answers_the_first_job_again() {
    let s = Server::start(|_| {}).await;
    let body = json!({"language": "bash", "code": "once"});
    let send = |key: &'static str| {
        let body = body.clone();
        let s = &s;
        async move {
            let req = hyper::Request::builder()
                .method(Method::POST)
                .uri("/v1/jobs")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(http_body_util::Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                .unwrap();
            s.unix().await.raw(req).await.unwrap()
        }
    };
    let first = send("order-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = send("order-1").await;
    assert_eq!(again.status, StatusCode::OK, "the same job, not a new one");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json()["id"], first.json()["id"]);
    let other = send("order-2").await;
    assert_ne!(other.json()["id"], first.json()["id"]);
    let bad = send("a key with spaces").await;
    expect_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "Idempotency-Key");
    let id = first.json()["id"].as_str().unwrap().to_owned();
    until(&s, &id, "done", |v| v["status"] == "done").await;
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 2, "one run per key");
    s.shutdown().await;
}

/// With the journal, a stopping daemon hands its jobs back: the next one on the same
/// directory runs them (the interrupted run is not counted), and finished ones answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_outlive_the_daemon_on_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let jobs_dir = dir.path().join("jobs").display().to_string();
    let config = |c: &mut Config| {
        c.runs.concurrency = 1;
        c.server.shutdown_grace_ms = 100;
        c.jobs.dir = jobs_dir.clone();
    };
    let s = Server::start(config).await;
    let id = |r: Reply| r.json()["id"].as_str().unwrap().to_owned();
    let done = id(submit(&s, json!({"language": "bash", "code": "first"})).await);
    until(&s, &done, "done", |v| v["status"] == "done").await;
    let sleeping = id(submit(&s, json!({"language": "bash", "code": "sleep"})).await);
    until(&s, &sleeping, "running", |v| v["status"] == "running").await;
    let queued = id(submit(&s, json!({"language": "bash", "code": "later"})).await);
    s.shutdown().await;
    let s = Server::start(config).await;
    assert_eq!(job(&s, &done).await["result"]["stdout"], "first||bash main.sh", "a finished job answers as before");
    let v = until(&s, &sleeping, "running again", |v| v["status"] == "running").await;
    assert_eq!(v["runs"], 1, "handed back at the shutdown, not counted as a run");
    let r = s.unix().await.send(Method::DELETE, &format!("/v1/jobs/{sleeping}"), None, Bytes::new()).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let v = until(&s, &queued, "the queued job", |v| v["status"] == "done").await;
    assert_eq!(v["result"]["stdout"], "later||bash main.sh");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_signed_and_retried_until_delivered() {
    let rx = Receiver::start(vec![500, 200]).await;
    let s = Server::start(|c| {
        c.callbacks.secret = SECRET.into();
        c.callbacks.allow_networks = vec!["127.0.0.1/32".into()];
        c.callbacks.backoff_ms = 10;
    })
    .await;
    let url = format!("http://{}/hook?token=t0k", rx.addr);
    let r = submit(&s, json!({"language": "bash", "code": "x", "callback_url": url})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let v = until(&s, &id, "the callback", |v| v["callback"]["state"] == "delivered").await;
    assert_eq!(v["callback"]["attempts"], 2, "{v:#}");
    assert_eq!(v["callback"]["last_status"], 200);
    assert_eq!(v["callback"]["host"], rx.addr.to_string(), "the host, not the path and its token");
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one failed delivery, one retry");
    for (i, (headers, body)) in seen.iter().enumerate() {
        let h = |k: &str| headers[k].to_str().unwrap().to_owned();
        assert_eq!(h("x-codeexec-job"), id);
        assert_eq!(h("idempotency-key"), id, "the same key at every delivery");
        assert_eq!(h("x-codeexec-delivery"), (i + 1).to_string());
        assert_eq!(h("content-type"), "application/json");
        let (ts, sig) = (h("x-codeexec-timestamp"), h("x-codeexec-signature"));
        assert!(crate::callback::verify(SECRET.as_bytes(), &ts, body, &sig), "a valid signature");
        assert!(!crate::callback::verify(b"another secret!!", &ts, body, &sig));
        let sent: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(sent["id"], id.as_str());
        assert_eq!(sent["status"], "done");
        assert_eq!(sent["result"]["stdout"], "x||bash main.sh");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_into_the_daemons_network_is_refused() {
    let s = Server::start(|_| {}).await;
    for (url, why) in [
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://localhost/x", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.7/hook", "private"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("ftp://example.com/x", "http"),
        ("http://user:pw@example.com/x", "user"),
    ] {
        let r = submit(&s, json!({"language": "bash", "code": "x", "callback_url": url})).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", why);
    }
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 0, "nothing refused was run");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_kills_a_running_job_and_a_queued_one_never_runs() {
    let s = Server::start(|c| c.runs.concurrency = 1).await;
    let running =
        submit(&s, json!({"language": "bash", "code": "sleep"})).await.json()["id"].as_str().unwrap().to_owned();
    until(&s, &running, "running", |v| v["status"] == "running").await;
    let queued =
        submit(&s, json!({"language": "bash", "code": "sleep"})).await.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(job(&s, &queued).await["status"], "queued");
    let r = s.unix().await.send(Method::DELETE, &format!("/v1/jobs/{queued}"), None, Bytes::new()).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    let r = s.unix().await.send(Method::DELETE, &format!("/v1/jobs/{running}"), None, Bytes::new()).await.unwrap();
    let v = r.json();
    assert_eq!((v["status"].as_str(), v["error"]["code"].as_str()), (Some("cancelled"), Some("cancelled")), "{v}");
    eventually("the run killed", || s.fake.cancelled.load(Ordering::SeqCst) == 1).await;
    // the slot is free again: a new job runs, the cancelled queued one never did
    let next = submit(&s, json!({"language": "bash", "code": "after"})).await.json()["id"].as_str().unwrap().to_owned();
    until(&s, &next, "the next job", |v| v["status"] == "done").await;
    assert_eq!(s.fake.started.load(Ordering::SeqCst), 2, "the queued job never started");
    assert_eq!(job(&s, &running).await["status"], "cancelled", "a late result does not undo the cancel");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_jobs_are_bounded() {
    let s = Server::start(|c| {
        c.runs.concurrency = 1;
        c.jobs.max_pending = 1;
    })
    .await;
    let first = submit(&s, json!({"language": "bash", "code": "sleep"})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let r = submit(&s, json!({"language": "bash", "code": "x"})).await;
    expect_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "retry later");
    s.api.cancel_all();
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_request_answers_per_test_in_order() {
    let s = Server::start(|_| {}).await;
    let r = s
        .execute(json!({"language": "bash", "code": "p", "tests": [
            {"stdin": "1", "expected_output": "p|1|bash main.sh\n"},
            {"stdin": "2", "expected_output": "p|1|bash main.sh"},
            {"stdin": "3", "args": ["x"], "expected_output": "p|3|bash main.sh x", "limits": {"memory_mb": 32}},
            {"stdin": "4"}
        ], "checker": "trim"}))
        .await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "wrong_answer");
    let statuses: Vec<&str> = v["tests"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "wrong_answer", "accepted", "ok"]);
    assert_eq!(v["tests"][1]["index"], 1);
    assert_eq!(v["tests"][1]["stdout"], "p|2|bash main.sh");
    assert_eq!(v["summary"]["passed"], 3);
    assert_eq!(v["summary"]["total"], 4);
    assert_eq!(v["summary"]["all_passed"], false);
    assert!(v["message"].as_str().unwrap().starts_with("test 1: "), "{v}");
    for (body, needle) in [
        (json!({"language": "bash", "code": "p", "tests": []}), "tests: 1 to 1000"),
        (json!({"language": "bash", "code": "p", "checker": "exact"}), "checker needs tests"),
        (json!({"language": "bash", "code": "p", "stdin": "x", "tests": [{}]}), "go in each test"),
        (json!({"language": "bash", "code": "p", "tests": [{"input": [1]}]}), "tests[0]: input is for function_name"),
        (json!({"language": "bash", "code": "p", "tests": [{"expected_output": 3}]}), "must be a string"),
        (json!({"language": "bash", "code": "p", "tests": [{}], "checker": "fuzzy"}), "one of exact"),
        (json!({"language": "ruby", "code": "p", "function_name": "f", "tests": [{"input": []}]}), "supports python"),
        (json!({"language": "python", "code": "p", "function_name": "f", "tests": [{}]}), "input is missing"),
        (json!({"language": "python", "code": "p", "function_name": "1f", "tests": [{"input": []}]}), "identifier"),
        (
            json!({"language": "bash", "code": "p", "tests": [{"limits": {"memory_mb": 0}}]}),
            "tests[0].limits.memory_mb = 0",
        ),
        (json!({"language": "bash", "code": "p", "return_files": ["["]}), "return_files pattern"),
        (json!({"language": "bash", "code": "p", "return_files": 3}), "true, false, or a list of glob patterns"),
        (json!({"language": "bash", "code": "p", "tests": [{}], "checker": 1}), "a checker name"),
    ] {
        let r = s.execute(body.clone()).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", needle);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_its_keys_own() {
    const A: &str = "0123456789abcdef-key-a";
    const B: &str = "0123456789abcdef-key-b";
    let s = Server::start(|c| c.server.api_keys = vec![A.into(), B.into()]).await;
    let r = s.tcp(Some(A)).await.post_json("/v1/jobs", &json!({"language": "bash", "code": "x"})).await.unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/jobs/{id}");
    assert_eq!(s.tcp(Some(A)).await.get(&path).await.unwrap().status, StatusCode::OK);
    let r = s.tcp(Some(B)).await.get(&path).await.unwrap();
    expect_error(&r, StatusCode::NOT_FOUND, "not_found", "no job");
    let r = s.tcp(Some(B)).await.send(Method::DELETE, &path, None, Bytes::new()).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another key cannot cancel it");
    assert_eq!(job(&s, &id).await["id"], id.as_str(), "the Unix socket sees every job");
    s.shutdown().await;
}
