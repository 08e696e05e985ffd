//! Prometheus metrics: counters and histograms the request path moves as it answers, and
//! gauges read when `GET /metrics` is scraped (runs and queue, jobs, compile cache,
//! process RSS and open fds). Encoded as OpenMetrics text by the `prometheus-client`
//! crate (the text format is a published grammar; a crate keeps us to it). Every label's
//! values come from a finite set (languages, statuses, error codes), so the families stay
//! bounded.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Api;
use crate::run::RunError;

/// The content type of the OpenMetrics text format.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    language: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to about 130 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// Gauges set from the daemon's state at each scrape.
#[derive(Debug, Default)]
struct Scraped {
    running: Gauge,
    waiting: Gauge,
    concurrency: Gauge,
    jobs_pending: Gauge,
    jobs_held: Gauge,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    rss_bytes: Gauge,
    open_fds: Gauge,
    uptime_seconds: Gauge<f64, AtomicU64>,
}

/// Every metric the daemon exports, registered once.
#[derive(Debug)]
pub(super) struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    run_seconds: Histograms<LanguageLabel>,
    compile_seconds: Histograms<LanguageLabel>,
    queue_seconds: Histogram,
    compile_cache: Family<ResultLabel, Counter>,
    network_runs: Counter,
    rejected: Family<ReasonLabel, Counter>,
    failures: Family<KindLabel, Counter>,
    scraped: Scraped,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("codeexec"),
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(seconds),
            compile_seconds: Family::new_with_constructor(seconds),
            queue_seconds: seconds(),
            compile_cache: Family::default(),
            network_runs: Counter::default(),
            rejected: Family::default(),
            failures: Family::default(),
            scraped: Scraped::default(),
        };
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register("runs", "Runs answered, by language and status (a judge run counts once)", self.runs.clone());
        r.register_with_unit(
            "run_duration",
            "Time in the executor per run (compile, tests and all), by language",
            Unit::Seconds,
            self.run_seconds.clone(),
        );
        r.register_with_unit(
            "compile_duration",
            "Compiler wall time per compiled run (cache hits excluded), by language",
            Unit::Seconds,
            self.compile_seconds.clone(),
        );
        r.register_with_unit(
            "queue_wait",
            "Time a run request waited for a run slot",
            Unit::Seconds,
            self.queue_seconds.clone(),
        );
        r.register("compile_cache_lookups", "Compile cache lookups, by result (hit, miss)", self.compile_cache.clone());
        r.register("network_runs", "Runs given a network link", self.network_runs.clone());
        r.register("rejected_requests", "Requests answered with an error, by its code", self.rejected.clone());
        r.register(
            "run_failures",
            "Runs the daemon failed to carry out, by the failing part (cgroup, sandbox, ...)",
            self.failures.clone(),
        );
        let s = &self.scraped;
        r.register("runs_running", "Runs in progress", s.running.clone());
        r.register("runs_waiting", "Run requests waiting for a slot", s.waiting.clone());
        r.register("runs_concurrency", "Run slots (runs.concurrency)", s.concurrency.clone());
        r.register("jobs_pending", "Jobs queued or running in the store", s.jobs_pending.clone());
        r.register("jobs_held", "Jobs this daemon has taken and not finished", s.jobs_held.clone());
        r.register("compile_cache_entries", "Compiles kept in the cache", s.cache_entries.clone());
        r.register_with_unit("compile_cache", "The compile cache's size", Unit::Bytes, s.cache_bytes.clone());
        r.register_with_unit("process_resident_memory", "The daemon's RSS", Unit::Bytes, s.rss_bytes.clone());
        r.register("process_open_fds", "The daemon's open file descriptors", s.open_fds.clone());
        r.register_with_unit("uptime", "Time since the daemon started", Unit::Seconds, s.uptime_seconds.clone());
        self
    }

    /// A run answered with `status` after `took` in the executor.
    pub(super) fn run(&self, language: &str, status: &str, took: Duration) {
        self.runs.get_or_create(&RunLabels { language: language.into(), status: status.into() }).inc();
        self.run_seconds.get_or_create(&LanguageLabel { language: language.into() }).observe(took.as_secs_f64());
    }

    /// A run's compile stage: from the cache (`hit`), or the compiler ran for `took`.
    pub(super) fn compile(&self, language: &str, hit: Option<bool>, took: Option<Duration>) {
        if let Some(hit) = hit {
            let result = if hit { "hit" } else { "miss" };
            self.compile_cache.get_or_create(&ResultLabel { result: result.into() }).inc();
        }
        if let Some(t) = took {
            self.compile_seconds.get_or_create(&LanguageLabel { language: language.into() }).observe(t.as_secs_f64());
        }
    }

    /// A request waited `waited` for its slot; `network`: the run gets a link.
    pub(super) fn started(&self, waited: Duration, network: bool) {
        self.queue_seconds.observe(waited.as_secs_f64());
        if network {
            self.network_runs.inc();
        }
    }

    /// A request answered with the error `code`.
    pub(super) fn rejected(&self, code: &str) {
        self.rejected.get_or_create(&ReasonLabel { reason: code.into() }).inc();
    }

    /// The executor failed (not the program: the daemon).
    pub(super) fn failed(&self, e: &RunError) {
        let kind = match e {
            RunError::Invalid(_) | RunError::Limit(_) => return,
            RunError::Busy(_) => "busy",
            RunError::Cgroup(_) => "cgroup",
            RunError::Sandbox(_) => "sandbox",
            RunError::Seccomp(_) => "seccomp",
            RunError::Network(_) => "network",
            RunError::Rootfs { .. } => "rootfs",
            RunError::Thread(_) => "thread",
            _ => "other",
        };
        self.failures.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }
}

/// The text of `GET /metrics`, its gauges read now.
pub(super) async fn encode(api: &Api) -> Result<String, std::fmt::Error> {
    let m = &api.metrics;
    let s = &m.scraped;
    let gauge = |g: &Gauge, n: usize| {
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
    };
    gauge(&s.running, api.limiter.running());
    gauge(&s.waiting, api.limiter.waiting());
    gauge(&s.concurrency, api.policy.concurrency);
    if let Ok(n) = api.jobs.store.pending().await {
        gauge(&s.jobs_pending, n);
    }
    gauge(&s.jobs_held, api.jobs.held());
    if let Some(c) = &api.compile_cache {
        let stats = c.stats();
        gauge(&s.cache_entries, stats.entries);
        s.cache_bytes.set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
    }
    let (rss, fds) = process();
    s.rss_bytes.set(i64::try_from(rss).unwrap_or(i64::MAX));
    gauge(&s.open_fds, fds);
    s.uptime_seconds.set(api.uptime().as_secs_f64());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)?;
    Ok(text)
}

/// The daemon's resident memory in bytes (proc(5), /proc/self/statm) and its open fds.
fn process() -> (u64, usize) {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    (rss_pages.saturating_mul(u64::try_from(page).unwrap_or(4096)), fds)
}
