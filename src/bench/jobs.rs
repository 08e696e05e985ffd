//! Async jobs through a fleet's Redis (`codeexec bench-jobs`, run by `scripts/bench`): what
//! a job adds to a run's latency, jobs per second through one or several daemons, and what
//! Redis alone carries (the ceiling of a fleet).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::{Row, Series};
use crate::client::{Connection, Endpoint};
use crate::job::{Bounds, FleetConfig, FleetStore, JobStore, NewJob, Outcome, Started};

/// The program of every job here: bash `:`, the API benchmark's trivial workload.
fn body() -> serde_json::Value {
    serde_json::json!({"language": "bash", "code": ":"})
}

fn chain(e: &dyn std::error::Error) -> String {
    crate::error_chain(e)
}

/// A callback receiver on 127.0.0.1: each callback's arrival goes down the channel.
async fn receiver() -> Result<(String, mpsc::UnboundedReceiver<Instant>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| chain(&e))?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(|e| chain(&e))?);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                let _ = tx.send(Instant::now());
                async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new()))) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    Ok((url, rx))
}

/// One at a time, `runs` of each: `POST /v1/execute` of bash `:`, and the same as a job
/// with a callback to a local receiver, from the submission until the callback arrives
/// (the daemon must allow callbacks to 127.0.0.1). The rows, and the median a job adds.
pub async fn job_rows(endpoint: &Endpoint, runs: usize) -> Result<(Vec<Row>, f64), String> {
    let mut conn = Connection::open(endpoint, None).await.map_err(|e| chain(&e))?;
    let (url, mut arrivals) = receiver().await?;
    let mut sync = Vec::with_capacity(runs);
    let mut jobs = Vec::with_capacity(runs);
    let mut job = body();
    job["callback_url"] = serde_json::json!(url);
    for i in 0..runs + 5 {
        let t = Instant::now();
        let r = conn.post_json("/v1/execute", &body()).await.map_err(|e| chain(&e))?;
        let took = t.elapsed();
        if r.json()["status"] != "ok" {
            return Err(format!("POST /v1/execute answered {}: {}", r.status, r.json()));
        }
        let t = Instant::now();
        let r = conn.post_json("/v1/jobs", &job).await.map_err(|e| chain(&e))?;
        if r.status != hyper::StatusCode::ACCEPTED {
            return Err(format!("POST /v1/jobs answered {}: {}", r.status, r.json()));
        }
        let arrived = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .map_err(|_| "no callback within 30 s (are callbacks to 127.0.0.1 allowed?)".to_owned())?
            .ok_or("the receiver stopped")?;
        if i >= 5 {
            sync.push(took);
            jobs.push(arrived - t);
        }
    }
    let (sync, jobs) = (Series::of(sync), Series::of(jobs));
    let rows = vec![
        Row { workload: "bash `:`", mode: "POST /v1/execute", runs, series: sync },
        Row { workload: "bash `:`", mode: "job: submit to callback", runs, series: jobs },
    ];
    Ok((rows, (jobs.median - sync.median) / 1e3))
}

/// Jobs per second: `jobs` jobs of bash `:` submitted round-robin to `endpoints` by
/// `clients` connections, from the first submission until none is pending (the first
/// daemon's `/health`: in a fleet, the fleet's count).
pub async fn job_throughput(endpoints: &[Endpoint], jobs: usize, clients: usize) -> Result<f64, String> {
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (endpoints, next) = (endpoints.to_vec(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&endpoints[c % endpoints.len()], None).await.map_err(|e| chain(&e))?;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < jobs {
                let r = conn.post_json("/v1/jobs", &body()).await.map_err(|e| chain(&e))?;
                if r.status != hyper::StatusCode::ACCEPTED {
                    return Err(format!("POST /v1/jobs answered {}: {}", r.status, r.json()));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let mut conn = Connection::open(&endpoints[0], None).await.map_err(|e| chain(&e))?;
    loop {
        let h = conn.get("/health").await.map_err(|e| chain(&e))?.json();
        if h["jobs"]["pending"] == 0 {
            return Ok(jobs as f64 / t.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Jobs per second through the fleet's store alone (no run): `workers` stores, each
/// submitting a job, taking one, starting and finishing it, until `jobs` are done. Keys
/// under a prefix of their own, kept 60 s.
pub async fn store_throughput(url: &str, jobs: usize, workers: usize) -> Result<f64, String> {
    let bounds = Bounds {
        retention: Duration::from_secs(60),
        max_pending: usize::MAX,
        max_finished: 0,
        max_bytes: 0,
        max_attempts: 3,
    };
    let prefix = format!("bench-{}-{}:", std::process::id(), crate::job::now_ms());
    let mut stores = Vec::new();
    for w in 0..workers {
        let config = FleetConfig {
            url: url.to_owned(),
            consumer: format!("bench-{w}"),
            prefix: prefix.clone(),
            lease: Duration::from_secs(30),
            block: Duration::from_millis(100),
        };
        stores.push(Arc::new(FleetStore::open(config, bounds).await.map_err(|e| chain(&e))?));
    }
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let request = serde_json::to_vec(&body()).unwrap_or_default();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for store in stores {
        let (done, request) = (Arc::clone(&done), request.clone());
        tasks.push(tokio::spawn(async move { cycle(&*store, &done, jobs, &request).await }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// One worker of `store_throughput`.
async fn cycle(
    store: &dyn JobStore,
    done: &std::sync::atomic::AtomicUsize,
    jobs: usize,
    request: &[u8],
) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    let err = |e: crate::job::StoreError| chain(&e);
    while done.load(Relaxed) < jobs {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let new = NewJob { id, owner: None, request: request.to_vec(), callback: None, idempotency_key: None };
        store.submit(new).await.map_err(err)?;
        for claim in store.take(1, Duration::from_millis(100)).await.map_err(err)? {
            if let Started::Run(..) = store.start(&claim).await.map_err(err)? {
                store.finish(&claim, Outcome::Done(serde_json::json!({"status": "ok"}))).await.map_err(err)?;
                done.fetch_add(1, Relaxed);
            }
        }
    }
    Ok(())
}
