//! The benchmark behind `scripts/bench`: per-run latency of sandboxed `/bin/true` and
//! `python3 -c 'print(1)'` beside bare fork+exec of the same, then throughput with several
//! workers. A run here is everything the daemon will do per request: slot, cgroup, spawn
//! through the zygote, supervision, accounting and cleanup.

pub mod jobs;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Connection, Endpoint};
use crate::network::AllowEntry;
use crate::run::{Access, NetAccess, RunRequest, Runner, Status};

/// The workloads: a name and an argv.
pub const WORKLOADS: [(&str, &[&str]); 2] =
    [("true", &["/bin/true"]), ("python", &["/usr/bin/python3", "-c", "print(1)"])];

/// Latency statistics of one series, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series {
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

impl Series {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(mut samples: Vec<Duration>) -> Series {
        samples.sort();
        let n = samples.len().max(1);
        // nearest rank: the smallest sample with at least p% of samples at or below it
        let at = |p: usize| {
            let rank = (p * n).div_ceil(100);
            samples.get(rank.saturating_sub(1).min(n - 1)).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / n as f64 * 1e6;
        Series { median: at(50), p95: at(95), p99: at(99), mean }
    }
}

fn request(argv: &[&str]) -> RunRequest {
    RunRequest { argv: argv.iter().map(|s| (*s).to_owned()).collect(), ..RunRequest::default() }
}

fn sandboxed(runner: &Runner, argv: &[&str]) -> Result<Duration, String> {
    sandboxed_with(runner, argv, &Access::default())
}

fn sandboxed_with(runner: &Runner, argv: &[&str], access: &Access) -> Result<Duration, String> {
    let req = RunRequest { access: access.clone(), ..request(argv) };
    let t = Instant::now();
    let o = runner.run(&req).map_err(|e| e.to_string())?;
    let d = t.elapsed();
    if o.status != Status::Ok {
        return Err(format!("{argv:?} ended as {}: {:?}", o.status.as_str(), o.message));
    }
    Ok(d)
}

fn bare(argv: &[&str]) -> Result<Duration, String> {
    let t = Instant::now();
    let st = Command::new(argv[0]).args(&argv[1..]).stdout(Stdio::null()).status().map_err(|e| e.to_string())?;
    let d = t.elapsed();
    if !st.success() {
        return Err(format!("{argv:?}: {st}"));
    }
    Ok(d)
}

fn series(runs: usize, mut f: impl FnMut() -> Result<Duration, String>) -> Result<Series, String> {
    for _ in 0..5.min(runs) {
        f()?;
    }
    Ok(Series::of((0..runs).map(|_| f()).collect::<Result<_, _>>()?))
}

/// Runs of `/bin/true` per second with `workers` threads sharing `runner`.
pub fn throughput(runner: &Runner, workers: usize, seconds: u64) -> Result<f64, String> {
    rate(workers, seconds, || sandboxed(runner, WORKLOADS[0].1))
}

/// Runs of `argv` per second, run bare by `workers` threads.
pub fn bare_throughput(argv: &[&str], workers: usize, seconds: u64) -> Result<f64, String> {
    rate(workers, seconds, || bare(argv))
}

/// Calls per second of `run` from `workers` threads for `seconds`.
fn rate(workers: usize, seconds: u64, run: impl Fn() -> Result<Duration, String> + Sync) -> Result<f64, String> {
    let done = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    while Instant::now() < deadline {
                        run()?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "worker panicked".to_string())?)
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// One row of the latency table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload's name.
    pub workload: &'static str,
    /// bare, cold or warm.
    pub mode: &'static str,
    /// The runs measured.
    pub runs: usize,
    /// Their statistics.
    pub series: Series,
}

/// Latency of bare fork+exec of each workload.
pub fn bare_rows(runs: usize) -> Result<Vec<Row>, String> {
    WORKLOADS
        .iter()
        .map(|(workload, argv)| Ok(Row { workload, mode: "bare", runs, series: series(runs, || bare(argv))? }))
        .collect()
}

/// Latency of each workload sandboxed by `runner`, labelled `mode`.
pub fn sandboxed_rows(runner: &Runner, mode: &'static str, runs: usize) -> Result<Vec<Row>, String> {
    WORKLOADS
        .iter()
        .map(|(workload, argv)| Ok(Row { workload, mode, runs, series: series(runs, || sandboxed(runner, argv))? }))
        .collect()
}

/// Latency of `/bin/true` on a runner with network runs enabled: a plain cold run, one
/// with a network link, one whose link is narrowed to an allow-list of one entry. The
/// runner must prepare every sandbox on demand (no warm ones), so the rows differ only by
/// the link (veth pair, addresses, route, and its deletion) and the allow-list (`nft`).
pub fn network_rows(runner: &Runner, runs: usize) -> Result<Vec<Row>, String> {
    // a permit only: /bin/true sends nothing
    let allow = AllowEntry { host: "1.1.1.1".into(), port: 443, udp: false };
    let cases: [(&'static str, Access); 3] = [
        ("cold, no network", Access::default()),
        ("cold, network", Access { network: Some(NetAccess { allow: None }), mounts: Vec::new() }),
        (
            "cold, network + allow-list",
            Access { network: Some(NetAccess { allow: Some(vec![allow]) }), mounts: Vec::new() },
        ),
    ];
    cases
        .into_iter()
        .map(|(mode, access)| {
            let series = series(runs, || sandboxed_with(runner, WORKLOADS[0].1, &access))?;
            Ok(Row { workload: WORKLOADS[0].0, mode, runs, series })
        })
        .collect()
}

/// What the API benchmark sends: a name, the language and code, and the bare command that
/// does the same without codeexec.
pub const API_WORKLOADS: [(&str, &str, &str, &[&str]); 2] = [
    ("bash `:`", "bash", ":", &["/bin/bash", "-c", ":"]),
    ("python print(1)", "python", "print(1)", &["/usr/bin/python3", "-c", "print(1)"]),
];

/// Latency of `POST /v1/execute` for each API workload, beside bare runs of the same.
pub async fn api_rows(endpoint: &Endpoint, runs: usize) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut conn = Connection::open(endpoint, None).await.map_err(|e| crate::error_chain(&e))?;
    // the API's fixed cost: a request that runs nothing
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let t = Instant::now();
        let r = conn.get("/version").await.map_err(|e| crate::error_chain(&e))?;
        if r.status != hyper::StatusCode::OK {
            return Err(format!("GET /version answered {}", r.status));
        }
        if i >= 5 {
            samples.push(t.elapsed());
        }
    }
    rows.push(Row { workload: "GET /version", mode: "API, unix socket", runs, series: Series::of(samples) });
    for (workload, language, code, argv) in API_WORKLOADS {
        rows.push(Row { workload, mode: "bare", runs, series: series(runs, || bare(argv))? });
        let body = serde_json::json!({"language": language, "code": code});
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs + 5 {
            let t = Instant::now();
            post(&mut conn, &body).await?;
            if i >= 5 {
                samples.push(t.elapsed());
            }
        }
        rows.push(Row { workload, mode: "API, unix socket", runs, series: Series::of(samples) });
    }
    Ok(rows)
}

async fn post(conn: &mut Connection, body: &serde_json::Value) -> Result<(), String> {
    let r = conn.post_json("/v1/execute", body).await.map_err(|e| crate::error_chain(&e))?;
    let v = r.json();
    if r.status != hyper::StatusCode::OK || v["status"] != "ok" {
        return Err(format!("the daemon answered {}: {v}", r.status));
    }
    Ok(())
}

/// A streamed run's first output byte: `POST /v1/execute` as NDJSON of a program that
/// prints at once and then sleeps 200 ms; the time to its first `stdout` event (the first
/// byte's latency) and to its `result`, over `runs` requests.
pub async fn stream_rows(endpoint: &Endpoint, runs: usize) -> Result<Vec<Row>, String> {
    use http_body_util::BodyExt as _;
    let workloads: [(&'static str, &str, &str); 2] = [
        ("python print(1), sleep 0.2 s", "python", "import time\nprint(1)\ntime.sleep(0.2)"),
        ("bash echo 1, sleep 0.2 s", "bash", "echo 1\nsleep 0.2"),
    ];
    let mut rows = Vec::new();
    let mut conn = Connection::open(endpoint, None).await.map_err(|e| crate::error_chain(&e))?;
    for (workload, language, code) in workloads {
        let body = serde_json::json!({"language": language, "code": code});
        let (mut first, mut whole) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for i in 0..runs + 3 {
            let t = Instant::now();
            let resp = conn.post_streaming("/v1/execute", &body, "application/x-ndjson").await;
            let mut body = resp.map_err(|e| crate::error_chain(&e))?.into_body();
            let (mut seen, mut text) = (None, String::new());
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Some(data) = frame.data_ref() {
                    text.push_str(&String::from_utf8_lossy(data));
                    if seen.is_none() && text.contains("\"type\":\"stdout\"") {
                        seen = Some(t.elapsed());
                    }
                }
            }
            let seen = seen.ok_or_else(|| format!("no stdout event in {text}"))?;
            if !text.contains("\"type\":\"result\"") {
                return Err(format!("no result event in {text}"));
            }
            if i >= 3 {
                first.push(seen);
                whole.push(t.elapsed());
            }
        }
        rows.push(Row { workload, mode: "stream, first stdout", runs, series: Series::of(first) });
        rows.push(Row { workload, mode: "stream, result", runs, series: Series::of(whole) });
    }
    Ok(rows)
}

/// The C++ program of the compile cache benchmark; `{n}` makes each miss's source unique.
const CACHE_PROGRAM: &str = "#include <iostream>\n// {n}\nint main() { std::cout << \"hello\" << std::endl; }\n";

/// `POST /v1/execute` of a C++ hello world whose compile the cache has not seen (a
/// comment makes each source new) beside the same program once it has: `misses` and
/// `hits` requests. The rows and the ratio of the medians.
pub async fn compile_cache_rows(endpoint: &Endpoint, misses: usize, hits: usize) -> Result<(Vec<Row>, f64), String> {
    let mut conn = Connection::open(endpoint, None).await.map_err(|e| crate::error_chain(&e))?;
    let tag = format!("{:?}", std::time::SystemTime::now());
    let body = |n: &str| serde_json::json!({"language": "cpp", "code": CACHE_PROGRAM.replace("{n}", n)});
    let mut timed = async |body: &serde_json::Value, want: &str| -> Result<Duration, String> {
        let t = Instant::now();
        let r = conn.post_json("/v1/execute", body).await.map_err(|e| crate::error_chain(&e))?;
        let took = t.elapsed();
        let v = r.json();
        if v["status"] != "ok" || v["compile_cache"] != want {
            return Err(format!("expected ok and compile_cache {want}, got {v}"));
        }
        Ok(took)
    };
    let mut miss = Vec::with_capacity(misses);
    for i in 0..misses {
        miss.push(timed(&body(&format!("{tag} {i}")), "miss").await?);
    }
    let same = body(&format!("{tag} 0"));
    let mut hit = Vec::with_capacity(hits);
    for _ in 0..hits {
        hit.push(timed(&same, "hit").await?);
    }
    let (miss, hit) = (Series::of(miss), Series::of(hit));
    let rows = vec![
        Row { workload: "cpp hello, compile cache miss", mode: "API, unix socket", runs: misses, series: miss },
        Row { workload: "cpp hello, compile cache hit", mode: "API, unix socket", runs: hits, series: hit },
    ];
    Ok((rows, miss.median / hit.median))
}

/// Runs per second of API workload `which` with `clients` connections, each sending its
/// next request when the last is answered.
pub async fn api_throughput(endpoint: &Endpoint, which: usize, clients: usize, seconds: u64) -> Result<f64, String> {
    let (_, language, code, _) = API_WORKLOADS[which];
    let body = serde_json::json!({"language": language, "code": code});
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (endpoint, body) = (endpoint.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&endpoint, None).await.map_err(|e| crate::error_chain(&e))?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                post(&mut conn, &body).await?;
                n += 1;
            }
            Ok::<_, String>(n)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await.map_err(|e| e.to_string())??;
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

/// The latency table, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | mode | runs | median ms | p95 ms | p99 ms | mean ms |\n|---|---|---|---|---|---|---|\n",
    );
    let mut sorted: Vec<&Row> = rows.iter().collect();
    // the sandbox workloads in their order; the API's keep theirs (bare before API)
    sorted.sort_by_key(|r| WORKLOADS.iter().position(|(w, _)| *w == r.workload).unwrap_or(usize::MAX));
    for r in sorted {
        let s = r.series;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.workload,
            r.mode,
            r.runs,
            s.median / 1e3,
            s.p95 / 1e3,
            s.p99 / 1e3,
            s.mean / 1e3
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Series::of((1..=100).map(Duration::from_micros).collect());
        assert_eq!((s.median, s.p95, s.p99), (50.0, 95.0, 99.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
    }
}
