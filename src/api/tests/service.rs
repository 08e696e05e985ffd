//! The service routes and limits: `/metrics` read by a real Prometheus parser (Python
//! prometheus-client's OpenMetrics parser, from `scripts/pytools`), with its counters
//! moving after runs and behind a key unless `[metrics] keyless`; per-key rate limits.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use super::*;

const KEY: &str = "service-key-0123456789";
const OTHER: &str = "other-key-0123456789";

/// The virtualenv of `scripts/pytools` (made on first use).
fn pytools() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pytools");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("scripts/pytools runs");
    assert!(out.status.success(), "scripts/pytools failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Runs the Python `program` in the tools' virtualenv with `input` on stdin; its stdout.
fn python(program: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(pytools().join("bin/python"))
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python program failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `/metrics` parsed as OpenMetrics: each sample's name and sorted labels to its value.
fn parse_metrics(text: &[u8]) -> HashMap<String, f64> {
    const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    serde_json::from_str(&python(PARSE, text)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_openmetrics_and_move_after_runs() {
    let s = Server::start(|_| {}).await;
    let mut c = s.unix().await;
    let r = c.get("/metrics").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], super::super::metrics::CONTENT_TYPE);
    let before = parse_metrics(&r.body);
    assert_eq!(before.get("codeexec_runs_total{language=python,status=ok}"), None);
    assert_eq!(before["codeexec_runs_concurrency{}"], 4.0);
    assert!(before["codeexec_process_resident_memory_bytes{}"] > 1e6);
    assert!(before["codeexec_process_open_fds{}"] >= 3.0);
    for _ in 0..3 {
        assert_eq!(s.execute(json!({"language": "python", "code": "x"})).await.status, StatusCode::OK);
    }
    // a compiled language: its compile is timed (no cache here: no lookups)
    assert_eq!(s.execute(json!({"language": "c", "code": "x"})).await.status, StatusCode::OK);
    assert_eq!(s.execute(json!({"language": "bash", "code": "fail"})).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(s.execute(json!({"language": "cobol", "code": "x"})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let after = parse_metrics(&c.get("/metrics").await.unwrap().body);
    assert_eq!(after["codeexec_runs_total{language=python,status=ok}"], 3.0);
    assert_eq!(after["codeexec_run_duration_seconds_count{language=python}"], 3.0);
    assert_eq!(after["codeexec_queue_wait_seconds_count{}"], 5.0);
    assert_eq!(after["codeexec_compile_duration_seconds_count{language=c}"], 1.0);
    assert_eq!(after.get("codeexec_compile_cache_lookups_total{result=miss}"), None);
    assert_eq!(after["codeexec_run_failures_total{kind=thread}"], 1.0);
    assert_eq!(after["codeexec_rejected_requests_total{reason=invalid_request}"], 1.0);
    assert_eq!(after["codeexec_rejected_requests_total{reason=internal_error}"], 1.0);
    assert_eq!(after["codeexec_runs_running{}"], 0.0);
    // every family served is documented, and the example dashboard asks only for
    // documented ones (families without samples yet are not served)
    let text = String::from_utf8(c.get("/metrics").await.unwrap().body.to_vec()).unwrap();
    let served: Vec<String> =
        text.lines().filter_map(|l| Some(l.strip_prefix("# TYPE ")?.split(' ').next()?.to_owned())).collect();
    let readme = include_str!("../../../README.md");
    let table = &readme[readme.find("### `GET /metrics`").unwrap()..readme.find("### Errors").unwrap()];
    let documented = families(table);
    for f in &served {
        assert!(documented.contains(f), "README.md does not document {f}");
    }
    let asked = families(include_str!("../../../deploy/grafana/codeexec.json"));
    for f in &asked {
        assert!(documented.contains(f), "the dashboard asks for {f}, which is not a documented metric");
    }
    assert!(asked.len() > 10 && served.len() > 10, "{asked:?} {served:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_key_on_tcp_unless_keyless_and_can_be_off() {
    let s = Server::start(|c| c.server.api_keys = vec![KEY.into()]).await;
    expect_error(&s.tcp(None).await.get("/metrics").await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized", "");
    assert_eq!(s.tcp(Some(KEY)).await.get("/metrics").await.unwrap().status, StatusCode::OK);
    s.shutdown().await;
    let s = Server::start(|c| {
        c.server.api_keys = vec![KEY.into()];
        c.metrics.keyless = true;
    })
    .await;
    assert_eq!(s.tcp(None).await.get("/metrics").await.unwrap().status, StatusCode::OK);
    // only /metrics
    expect_error(&s.tcp(None).await.get("/health").await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized", "");
    s.shutdown().await;
    let s = Server::start(|c| c.metrics.enabled = false).await;
    expect_error(&s.unix().await.get("/metrics").await.unwrap(), StatusCode::NOT_FOUND, "not_found", "");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_and_another_key_does_not() {
    let s = Server::start(|c| {
        c.server.api_keys = vec![KEY.into(), OTHER.into()];
        // one request a minute, two at once: the third is over for a minute
        c.rate_limit.requests_per_second = 1;
        c.rate_limit
            .keys
            .insert(KEY.into(), crate::config::KeyRate { requests_per_second: 1, burst: 2, concurrent_runs: 0 });
        c.rate_limit.keys.insert(
            OTHER.into(),
            crate::config::KeyRate { requests_per_second: 1000, burst: 1000, concurrent_runs: 0 },
        );
    })
    .await;
    let body = json!({"language": "bash", "code": "x"});
    for _ in 0..2 {
        let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &body).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            (r.headers["x-ratelimit-limit"].to_str().unwrap(), r.headers["x-ratelimit-burst"].to_str().unwrap()),
            ("1", "2")
        );
    }
    let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &body).await.unwrap();
    expect_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "over this key's rate of 1 requests per second");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["x-ratelimit-limit"], "1");
    // any route counts, and the other key is not slowed
    assert_eq!(s.tcp(Some(KEY)).await.get("/version").await.unwrap().status, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..20 {
        let r = s.tcp(Some(OTHER)).await.post_json("/v1/execute", &body).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["x-ratelimit-limit"], "1000");
    }
    // the Unix socket has no key and no bucket
    assert_eq!(s.execute(body.clone()).await.status, StatusCode::OK);
    let m = parse_metrics(&s.unix().await.get("/metrics").await.unwrap().body);
    assert_eq!(m["codeexec_rejected_requests_total{reason=rate_limited}"], 2.0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_runs_at_once_gets_429() {
    let s = Server::start(|c| {
        c.server.api_keys = vec![KEY.into(), OTHER.into()];
        c.rate_limit.concurrent_runs = 1;
    })
    .await;
    let sleeper = {
        let mut c = s.tcp(Some(KEY)).await;
        tokio::spawn(async move { c.post_json("/v1/execute", &json!({"language": "bash", "code": "sleep"})).await })
    };
    eventually("the first run starts", || s.fake.started.load(Ordering::SeqCst) == 1).await;
    let body = json!({"language": "bash", "code": "x"});
    let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &body).await.unwrap();
    expect_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "this key already has its 1 runs at once");
    assert_eq!(r.headers["x-ratelimit-concurrent-runs"], "1");
    assert_eq!(s.tcp(Some(OTHER)).await.post_json("/v1/execute", &body).await.unwrap().status, StatusCode::OK);
    sleeper.abort();
    eventually("the first run is cancelled", || s.fake.cancelled.load(Ordering::SeqCst) == 1).await;
    // its place is free again
    let mut ok = false;
    for _ in 0..100 {
        if s.tcp(Some(KEY)).await.post_json("/v1/execute", &body).await.unwrap().status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the key's run place came back");
    s.shutdown().await;
}

/// The metric families named in `text` (`codeexec_…`, sample suffixes taken off).
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("codeexec_")
        .map(|(i, _)| {
            let name: String =
                text[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
            let name = ["_bucket", "_total", "_count", "_sum"]
                .iter()
                .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            name.to_owned()
        })
        .collect()
}
