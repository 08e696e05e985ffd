//! The HTTP API (`codeexec serve`): hyper 1 on a Unix socket and/or TCP. This layer only
//! translates: it checks the request (auth, size, JSON, limits), hands a [`RunRequest`] to
//! an [`Executor`] on a blocking thread within the concurrency limit, and turns the outcome
//! into JSON. It never runs sandbox code on the async runtime's threads.
//!
//! Routes (`routes.rs`): `POST /v1/execute` (one run, or a judge run over tests),
//! `POST /v1/jobs`, `GET` and `DELETE /v1/jobs/{id}` (`routes/job_routes.rs`, the job
//! store in `jobs.rs`), `GET /v1/languages`, `GET /health`, `GET /version`. Requests are
//! checked and planned in `plan.rs`; wire types in `types.rs`, the one error-to-response
//! mapping in `error.rs`, backpressure in `limiter.rs`, listeners and shutdown in
//! `server.rs`.

mod access;
mod contest;
mod error;
mod jobs;
mod limiter;
mod mcp;
mod metrics;
mod package;
mod plan;
mod rate;
mod routes;
mod server;
mod service;
mod sessions;
#[cfg(test)]
mod tests;
mod types;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub use jobs::open_store;
pub use server::{Listeners, ServeError, bind, serve};

use crate::cache::CompileCache;
use crate::config::{
    JobStoreSettings, LimitTable, MetricsSettings, MountSettings, NetworkSettings, RateLimits, Settings,
};
use crate::job::JobStore;
use crate::lang::Registry;
use crate::pipeline::Executor;
use crate::run::{Cancel, Runner};

/// What `/health` reports about the sandbox machinery.
#[derive(Debug, Clone)]
pub struct Description {
    /// `v1` or `v2`.
    pub cgroup_mode: &'static str,
    /// The cgroup layout, in words.
    pub cgroup_layout: String,
    /// `host` or the root directory.
    pub rootfs: String,
    /// The seccomp profile's name.
    pub seccomp_profile: String,
    /// Its BPF program's length.
    pub seccomp_instructions: usize,
    /// The uplink of network runs, when enabled.
    pub network_uplink: Option<String>,
}

impl Description {
    /// What `runner` found at start.
    pub fn of(runner: &Runner) -> Description {
        let info = runner.info();
        Description {
            cgroup_mode: match runner.cgroups().mode() {
                crate::cgroup::Mode::V1 => "v1",
                crate::cgroup::Mode::V2 => "v2",
            },
            cgroup_layout: runner.cgroups().describe(),
            rootfs: info.rootfs,
            seccomp_profile: info.seccomp_profile,
            seccomp_instructions: info.seccomp_instructions,
            network_uplink: runner.egress().map(|e| e.uplink().to_owned()),
        }
    }
}

/// The limits and keys requests are checked against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What a request gets for a limit it does not give.
    pub default_limits: LimitTable,
    /// The most it may ask for.
    pub max_limits: LimitTable,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Keys TCP requests need (none: no key).
    pub api_keys: Vec<String>,
    /// Runs at once.
    pub concurrency: usize,
    /// Requests that may wait.
    pub queue: usize,
    /// Part of every compile cache key.
    pub compile_cache_epoch: String,
    /// How long finished jobs are kept.
    pub job_retention: Duration,
    /// Jobs queued or running at once.
    pub max_pending_jobs: usize,
    /// Finished jobs kept at once.
    pub max_finished_jobs: usize,
    /// Bytes of jobs' requests and results held at once.
    pub max_job_bytes: usize,
    /// A fleet's lease (claims are renewed every third of it); None: jobs are local.
    pub job_lease: Option<Duration>,
    /// How callbacks are checked, signed and retried.
    pub callbacks: crate::callback::Policy,
    /// Network runs, when offered.
    pub network: Option<NetworkSettings>,
    /// Host directories offered.
    pub mounts: Vec<MountSettings>,
    /// Sessions' bounds.
    pub sessions: crate::config::SessionSettings,
    /// `Host` values `/mcp` accepts (empty: any), against DNS rebinding.
    pub mcp_hosts: Vec<String>,
    /// `GET /metrics`.
    pub metrics: MetricsSettings,
    /// Each API key's limits, in `api_keys`' order.
    pub rate_limits: RateLimits,
}

impl From<&Settings> for Policy {
    fn from(s: &Settings) -> Self {
        Policy {
            default_limits: s.default_limits,
            max_limits: s.max_limits,
            max_body_bytes: s.max_body_bytes,
            api_keys: s.api_keys.clone(),
            concurrency: s.concurrency,
            queue: s.queue,
            compile_cache_epoch: s.compile_cache_epoch.clone(),
            job_retention: s.job_retention,
            max_pending_jobs: s.max_pending_jobs,
            max_finished_jobs: s.max_finished_jobs,
            max_job_bytes: s.max_job_bytes,
            job_lease: match &s.job_store {
                JobStoreSettings::Fleet { lease, .. } => Some(*lease),
                _ => None,
            },
            callbacks: s.callbacks.clone(),
            network: s.network.clone(),
            mounts: s.mounts.clone(),
            sessions: s.sessions,
            mcp_hosts: mcp_hosts(s.tcp),
            metrics: s.metrics,
            rate_limits: s.rate_limits.clone(),
        }
    }
}

/// The loopback names, and the TCP address's own; any host when TCP listens on every
/// address (keys guard it then).
fn mcp_hosts(tcp: Option<std::net::SocketAddr>) -> Vec<String> {
    match tcp {
        Some(a) if a.ip().is_unspecified() => Vec::new(),
        Some(a) => vec!["localhost".into(), "127.0.0.1".into(), "::1".into(), a.ip().to_string()],
        None => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
    }
}

/// Runs in progress, and whether new ones may start.
#[derive(Debug, Default)]
struct Inflight {
    runs: HashMap<u64, Cancel>,
    stopping: bool,
}

/// The API's shared state.
pub struct Api {
    executor: Arc<dyn Executor>,
    description: Description,
    languages: Registry,
    policy: Policy,
    limiter: limiter::Limiter,
    /// Per-key request rates and runs at once.
    rate: rate::RateLimit,
    /// What `/metrics` exports.
    metrics: Arc<metrics::Metrics>,
    /// Compiles kept for identical requests.
    compile_cache: Option<Arc<CompileCache>>,
    /// Async jobs.
    jobs: jobs::Jobs,
    /// Runs in progress, to cancel when a shutdown's grace period is over.
    inflight: Mutex<Inflight>,
    next_run: AtomicU64,
    started: Instant,
    /// Open sessions.
    sessions: sessions::Sessions,
    /// The `/mcp` service.
    mcp: mcp::Service,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Api {
    /// The API over `executor` (described by `description`), offering `languages`,
    /// checking requests against `policy`, reusing compiles from `compile_cache`, keeping
    /// jobs in `jobs` ([`open_store`]).
    pub fn new(
        executor: Arc<dyn Executor>,
        description: Description,
        languages: Registry,
        policy: Policy,
        compile_cache: Option<Arc<CompileCache>>,
        jobs: Arc<dyn JobStore>,
    ) -> Arc<Api> {
        let limiter = limiter::Limiter::new(
            policy.concurrency,
            policy.queue,
            usize::try_from(policy.max_body_bytes).unwrap_or(usize::MAX),
        );
        let jobs = jobs::Jobs::new(jobs, policy.job_lease);
        Arc::new_cyclic(|me| Api {
            mcp: mcp::service(me.clone(), policy.mcp_hosts.clone()),
            executor,
            description,
            languages,
            limiter,
            rate: rate::RateLimit::new(&policy.rate_limits),
            metrics: Arc::new(metrics::Metrics::new()),
            policy,
            compile_cache,
            jobs,
            inflight: Mutex::new(Inflight::default()),
            next_run: AtomicU64::new(0),
            started: Instant::now(),
            sessions: sessions::Sessions::new(),
        })
    }

    /// Kills every run in progress (their requests answer `internal_error`), and every run
    /// that would start after (a queued request that gets a slot answers 503); the jobs
    /// this daemon holds are handed back to the store (in memory: cancelled).
    pub fn cancel_all(&self) {
        self.jobs.hand_back_all();
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        inflight.stopping = true;
        for c in inflight.runs.values() {
            c.cancel();
        }
    }

    /// Whether the shutdown's grace period is over (runs still going are being killed).
    fn stopping(&self) -> bool {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner).stopping
    }

    /// The start of a shutdown: no more jobs are taken (queued jobs kept only in memory
    /// are cancelled; the others stay queued for the next start or another daemon), and
    /// running ones get the grace period, as requests do.
    pub async fn stop_taking_jobs(&self) {
        self.jobs.stop_taking().await;
    }

    /// Starts taking jobs from the store (once, inside the runtime: `serve` does).
    pub fn start_jobs(self: &Arc<Self>) {
        jobs::start(self);
        sessions::start(self);
    }

    /// Waits until no run is in progress and no job this daemon took waits or runs.
    pub async fn idle(&self) {
        loop {
            let runs = self.inflight.lock().unwrap_or_else(PoisonError::into_inner).runs.len();
            if runs == 0 && self.jobs.busy() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// An outcome as `POST /v1/execute` answers it (`codeexec run -l --json` prints this).
pub fn response_json(outcome: &crate::pipeline::Outcome, language: &str, version: &str) -> serde_json::Value {
    let lang = types::LanguageRef { id: language.to_owned(), version: version.to_owned() };
    serde_json::to_value(types::ExecuteResponse::new("local", outcome.clone(), lang, None)).unwrap_or_default()
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|e| format!("{{\"error\":{{\"code\":\"internal_error\",\"message\":\"{e}\"}}}}").into_bytes());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
