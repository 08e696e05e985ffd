//! The daemon's configuration: a TOML file (every key optional, unknown keys an error),
//! then `CODEEXEC_*` environment overrides, validated once into [`Settings`] with typed
//! units. `codeexec.example.toml` in the repository shows every key with its default.
//!
//! An environment variable names a key by its path in upper case joined by `_`:
//! `server.tcp` is `CODEEXEC_SERVER_TCP`, `limits.max.memory_mb` is
//! `CODEEXEC_LIMITS_MAX_MEMORY_MB`; a list takes comma-separated values. A `CODEEXEC_*`
//! variable that names no key is an error too, so a typo cannot go unnoticed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use callbacks::Callbacks;
pub use network::{Grant, MountConfig, MountSettings, Mounts, NetworkConfig, NetworkSettings};
pub use queue::{JobStoreSettings, QueueConfig};
pub use service::{KeyLimits, KeyRate, MetricsConfig, MetricsSettings, RateLimitConfig, RateLimits};

use crate::limit::Limits;

/// Variables with the prefix that are not configuration keys: the log filter, the test
/// suite's switches, the CLI's API key.
const NOT_CONFIG: [&str; 5] =
    ["CODEEXEC_LOG", "CODEEXEC_PRIVILEGED_TESTS", "CODEEXEC_EXPECT_CGROUP", "CODEEXEC_TEST_IMAGE", "CODEEXEC_API_KEY"];
const PREFIX: &str = "CODEEXEC_";

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or "environment".
        origin: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// A value is out of range or the settings contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, ConfigError>;

/// The file's structure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, keys, request handling.
    pub server: Server,
    /// How runs are made.
    pub runs: Runs,
    /// Limits of a run: what a request gets by default, and the most it may ask for.
    pub limits: LimitTables,
    /// Root filesystem images.
    pub images: Images,
    /// The compile cache.
    pub compile_cache: CompileCacheConfig,
    /// Async jobs.
    pub jobs: Jobs,
    /// Async jobs' callbacks.
    pub callbacks: Callbacks,
    /// A fleet's shared job queue.
    pub queue: QueueConfig,
    /// Network runs.
    pub network: NetworkConfig,
    /// Host directories offered to sandboxes, by name.
    pub mounts: Mounts,
    /// Sessions (`/v1/sessions`).
    pub sessions: SessionsConfig,
    /// `GET /metrics`.
    pub metrics: MetricsConfig,
    /// Per-key request rates and runs at once.
    pub rate_limit: RateLimitConfig,
}

/// `[sessions]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Sessions open at once (each holds a sandbox: a slot, a cgroup, its processes).
    pub max: u64,
    /// Sessions one API key may have open at once (the Unix socket's callers share `max`).
    pub max_per_key: u64,
    /// Idle time after which a session ends, when its request gives none, seconds.
    pub idle_timeout_s: u64,
    /// The longest idle time a request may ask for, seconds.
    pub max_idle_timeout_s: u64,
    /// The longest a session may live, seconds (a request may ask for less).
    pub max_lifetime_s: u64,
    /// Idle sessions are frozen (cgroup freezer) after this many milliseconds.
    pub freeze_after_ms: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            max: 1000,
            max_per_key: 100,
            idle_timeout_s: 600,
            max_idle_timeout_s: 3600,
            max_lifetime_s: 86_400,
            freeze_after_ms: 1000,
        }
    }
}

/// Sessions' bounds, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Open at once.
    pub max: usize,
    /// Open at once per API key.
    pub max_per_key: usize,
    /// Default idle timeout.
    pub idle_timeout: Duration,
    /// Longest idle timeout.
    pub max_idle_timeout: Duration,
    /// Longest lifetime.
    pub max_lifetime: Duration,
    /// Idle time before freezing.
    pub freeze_after: Duration,
}

impl SessionsConfig {
    fn settings(&self) -> Result<SessionSettings> {
        let c = self;
        if !(1..=1000).contains(&c.max) {
            return Err(ConfigError::Invalid(format!("sessions.max {}: 1 to 1000", c.max)));
        }
        if c.max_per_key == 0 || c.max_per_key > c.max {
            return Err(ConfigError::Invalid(format!("sessions.max_per_key {}: 1 to sessions.max", c.max_per_key)));
        }
        if c.idle_timeout_s == 0 || c.idle_timeout_s > c.max_idle_timeout_s || c.max_idle_timeout_s > c.max_lifetime_s {
            return Err(ConfigError::Invalid(
                "sessions: 0 < idle_timeout_s <= max_idle_timeout_s <= max_lifetime_s".into(),
            ));
        }
        if c.max_lifetime_s > 7 * 86_400 {
            return Err(ConfigError::Invalid(format!("sessions.max_lifetime_s {}: at most 604800", c.max_lifetime_s)));
        }
        Ok(SessionSettings {
            max: usize::try_from(c.max).unwrap_or(1000),
            max_per_key: usize::try_from(c.max_per_key).unwrap_or(1000),
            idle_timeout: Duration::from_secs(c.idle_timeout_s),
            max_idle_timeout: Duration::from_secs(c.max_idle_timeout_s),
            max_lifetime: Duration::from_secs(c.max_lifetime_s),
            freeze_after: Duration::from_millis(c.freeze_after_ms),
        })
    }
}

/// `[compile_cache]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileCacheConfig {
    /// Keep compiles and reuse identical ones.
    pub enabled: bool,
    /// Where (created 0700).
    pub dir: String,
    /// Its bound, MiB; least recently used entries go first.
    pub max_mb: u64,
    /// Part of every key: change it to stop reusing older compiles (after upgrading a
    /// toolchain of the host's root whose version string stayed the same).
    pub epoch: String,
}

impl Default for CompileCacheConfig {
    fn default() -> Self {
        Self { enabled: true, dir: "/var/lib/codeexec/compile-cache".into(), max_mb: 1024, epoch: String::new() }
    }
}

/// `[jobs]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// The journal's directory (one daemon's); empty: jobs in memory (a restart forgets
    /// them). Not used with `[queue] redis`.
    pub dir: String,
    /// Sync every change to disk (safe from a power loss, at an fsync a change; without,
    /// safe from a killed daemon).
    pub fsync: bool,
    /// A job is started at most this many times (its daemon dying each time) before it
    /// fails with `worker_lost`.
    pub max_attempts: u32,
    /// How long a finished job's result is kept, seconds.
    pub retention_s: u64,
    /// Jobs queued or running at once; more get 429.
    pub max_pending: u64,
    /// Finished jobs kept at once; beyond, the oldest are forgotten first.
    pub max_finished: u64,
    /// Memory for queued jobs' requests and finished jobs' results, MiB; beyond, the
    /// oldest results are forgotten first, then new jobs get 429.
    pub max_memory_mb: u64,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            dir: "/var/lib/codeexec/jobs".into(),
            fsync: false,
            max_attempts: 3,
            retention_s: 3600,
            max_pending: 1000,
            max_finished: 10_000,
            max_memory_mb: 1024,
        }
    }
}

/// `[images]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Images {
    /// The image store (`codeexec image import` fills it).
    pub dir: String,
    /// A language whose image is not in the store runs on the host's root instead (said
    /// in the log and in `GET /v1/languages`); false: it is unavailable.
    pub host_fallback: bool,
}

impl Default for Images {
    fn default() -> Self {
        Self { dir: crate::image::DEFAULT_STORE.into(), host_fallback: false }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Unix socket path; empty: none.
    pub unix_socket: String,
    /// Permissions of the Unix socket (it is the only access control on it).
    pub socket_mode: u32,
    /// TCP address (`127.0.0.1:8080`); empty: none.
    pub tcp: String,
    /// API keys; when any is set, every TCP request needs one.
    pub api_keys: Vec<String>,
    /// Let TCP listen on a non-loopback address with no API key (loudly warned about).
    pub allow_public_without_keys: bool,
    /// Largest request body, in KiB.
    pub max_body_kb: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: u64,
    /// `text` or `json`.
    pub log_format: String,
    /// How long in-flight runs may go on after a shutdown signal, in milliseconds.
    pub shutdown_grace_ms: u64,
}

/// `[runs]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runs {
    /// Runs at once; 0: the number of CPUs.
    pub concurrency: u64,
    /// Requests that may wait for a free run; more get 429.
    pub queue: u64,
    /// Sandboxes kept prepared ahead of requests.
    pub warm: u64,
    /// Slot locks and the zygote's mounts.
    pub state_dir: String,
    /// A directory to use as the root instead of the host's; empty: the host's.
    pub rootfs: String,
    /// Name of codeexec's parent cgroup in each hierarchy.
    pub cgroup_parent: String,
    /// Make the cgroup tree under the daemon's own cgroup: `auto` (when it runs in a
    /// container on cgroup v2), `always` or `never`.
    pub cgroup_nest: String,
    /// The first host uid of runs: a slot uses two ids from here on, 2048 in all.
    /// Daemons on one host with different state directories need ranges that do not
    /// overlap.
    pub uid_base: u32,
    /// A directory of language definitions (`*.toml`) to use instead of the built-in ones;
    /// empty: the built-in ones.
    pub languages_dir: String,
}

/// `[limits.default]` and `[limits.max]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitTables {
    /// What a request gets for a limit it does not give.
    pub default: LimitTable,
    /// The most a request may ask for.
    pub max: LimitTable,
}

/// One set of limits, in the API's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTable {
    /// CPU time, ms.
    pub cpu_time_ms: u64,
    /// Wall time, ms.
    pub wall_time_ms: u64,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Processes and threads.
    pub processes: u64,
    /// Output per stream, KiB.
    pub output_kb: u64,
    /// Largest file, KiB.
    pub file_size_kb: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            unix_socket: "/run/codeexec/codeexec.sock".into(),
            socket_mode: 0o660,
            tcp: String::new(),
            api_keys: Vec::new(),
            allow_public_without_keys: false,
            max_body_kb: 10 * 1024,
            max_connections: 1024,
            log_format: "text".into(),
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            concurrency: 0,
            queue: 64,
            warm: 2,
            state_dir: "/run/codeexec".into(),
            rootfs: String::new(),
            cgroup_parent: "codeexec".into(),
            cgroup_nest: "auto".into(),
            uid_base: 2_000_000_000,
            languages_dir: String::new(),
        }
    }
}

impl Default for LimitTables {
    fn default() -> Self {
        Self {
            default: LimitTable {
                cpu_time_ms: 5_000,
                wall_time_ms: 10_000,
                memory_mb: 256,
                processes: 64,
                output_kb: 64,
                file_size_kb: 16 * 1024,
            },
            max: LimitTable {
                cpu_time_ms: 60_000,
                wall_time_ms: 120_000,
                memory_mb: 4096,
                processes: 1024,
                output_kb: 16 * 1024,
                file_size_kb: 1024 * 1024,
            },
        }
    }
}

impl LimitTable {
    /// As the runner's limits (the rest from the defaults).
    pub fn to_limits(&self) -> Limits {
        Limits {
            cpu_time: Duration::from_millis(self.cpu_time_ms),
            wall_time: Duration::from_millis(self.wall_time_ms),
            memory_bytes: self.memory_mb.saturating_mul(1 << 20),
            processes: u32::try_from(self.processes).unwrap_or(u32::MAX),
            output_bytes: self.output_kb.saturating_mul(1024),
            file_size_bytes: self.file_size_kb.saturating_mul(1024),
            ..Limits::default()
        }
    }

    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("cpu_time_ms", self.cpu_time_ms),
            ("wall_time_ms", self.wall_time_ms),
            ("memory_mb", self.memory_mb),
            ("processes", self.processes),
            ("output_kb", self.output_kb),
            ("file_size_kb", self.file_size_kb),
        ]
    }
}

/// The validated settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Unix socket, if any.
    pub unix_socket: Option<PathBuf>,
    /// Its permissions.
    pub socket_mode: u32,
    /// The TCP address, if any.
    pub tcp: Option<SocketAddr>,
    /// API keys required on TCP (none: TCP needs no key).
    pub api_keys: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Connections at once.
    pub max_connections: usize,
    /// Logs as JSON lines.
    pub log_json: bool,
    /// Grace period for in-flight runs at shutdown.
    pub shutdown_grace: Duration,
    /// Runs at once.
    pub concurrency: usize,
    /// Requests that may wait.
    pub queue: usize,
    /// Sandboxes kept prepared.
    pub warm: usize,
    /// State directory.
    pub state_dir: PathBuf,
    /// Root filesystem directory, or the host's.
    pub rootfs: Option<PathBuf>,
    /// Parent cgroup name.
    pub cgroup_parent: String,
    /// Language definitions to use instead of the built-in ones.
    pub languages_dir: Option<PathBuf>,
    /// The image store.
    pub images_dir: PathBuf,
    /// Languages whose image is missing run on the host's root.
    pub images_host_fallback: bool,
    /// Limits a request gets by default.
    pub default_limits: LimitTable,
    /// The most a request may ask for.
    pub max_limits: LimitTable,
    /// The compile cache's directory and bound, when enabled.
    pub compile_cache: Option<(PathBuf, u64)>,
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
    /// A job is started at most this many times.
    pub max_job_attempts: u32,
    /// Where jobs are kept.
    pub job_store: JobStoreSettings,
    /// Where the cgroup tree goes: `auto`, `always` or `never` (under the daemon's own).
    pub cgroup_nest: crate::cgroup::Nest,
    /// The first host uid of runs.
    pub uid_base: u32,
    /// How callbacks are checked, signed and retried.
    pub callbacks: crate::callback::Policy,
    /// Network runs, when enabled.
    pub network: Option<NetworkSettings>,
    /// Host directories offered to sandboxes.
    pub mounts: Vec<MountSettings>,
    /// Sessions' bounds.
    pub sessions: SessionSettings,
    /// Warnings to log at start (e.g. public TCP without keys).
    pub warnings: Vec<String>,
    /// `GET /metrics`.
    pub metrics: MetricsSettings,
    /// Each API key's limits, in `api_keys`' order.
    pub rate_limits: RateLimits,
}

impl Config {
    /// Starts from the defaults, merges `path` over them, then the environment `env`. Each
    /// key falls back to its own default (`limits.default` and `limits.max` differ).
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let mut value = toml::Value::try_from(Config::default()).expect("the default configuration serialises");
        if let Some(p) = path {
            let origin = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
            let file: toml::Table = toml::from_str(&text).map_err(|e| parse_error(&origin, &e))?;
            merge(&mut value, toml::Value::Table(file));
            // unknown keys and wrong types are the file's, so say so
            value.clone().try_into::<Config>().map_err(|e| parse_error(&origin, &e))?;
        }
        apply_env(&mut value, env)?;
        value.try_into::<Config>().map_err(|e| parse_error("environment", &e))
    }

    /// Checks ranges and consistency and derives the settings.
    pub fn validate(&self) -> Result<Settings> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let s = &self.server;
        let unix_socket = (!s.unix_socket.is_empty()).then(|| PathBuf::from(&s.unix_socket));
        let tcp = if s.tcp.is_empty() {
            None
        } else {
            Some(
                s.tcp
                    .parse::<SocketAddr>()
                    .map_err(|e| ConfigError::Invalid(format!("server.tcp {:?}: {e}", s.tcp)))?,
            )
        };
        if unix_socket.is_none() && tcp.is_none() {
            return invalid("no listener: set server.unix_socket, server.tcp or both".into());
        }
        if let Some(k) = s.api_keys.iter().find(|k| k.len() < 16 || k.chars().any(char::is_whitespace)) {
            let shown: String = k.chars().take(4).collect();
            return invalid(format!("server.api_keys: key {shown:?}... must be 16 or more characters, no spaces"));
        }
        let mut warnings = Vec::new();
        if let Some(addr) = tcp.filter(|a| !a.ip().is_loopback() && s.api_keys.is_empty()) {
            if !s.allow_public_without_keys {
                return invalid(format!(
                    "server.tcp {addr} is not a loopback address and no API key is set: set server.api_keys, \
                     or server.allow_public_without_keys = true to accept anyone"
                ));
            }
            warnings.push(format!("TCP listener {addr} accepts ANYONE: no API key is configured"));
        }
        if !matches!(s.log_format.as_str(), "text" | "json") {
            return invalid(format!("server.log_format {:?}: text or json", s.log_format));
        }
        if s.socket_mode > 0o777 {
            return invalid(format!("server.socket_mode {:o}: a permission mode like 0o660", s.socket_mode));
        }
        if s.max_body_kb == 0 || s.max_body_kb > 1024 * 1024 {
            return invalid(format!("server.max_body_kb {}: 1 to 1048576 (1 GiB)", s.max_body_kb));
        }
        if !(1..=65_536).contains(&s.max_connections) {
            return invalid(format!("server.max_connections {}: 1 to 65536", s.max_connections));
        }
        self.check_limits()?;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let r = &self.runs;
        let concurrency = if r.concurrency == 0 { cpus } else { usize::try_from(r.concurrency).unwrap_or(usize::MAX) };
        if concurrency > 1024 {
            return invalid(format!("runs.concurrency {concurrency}: at most 1024"));
        }
        let compile_cache = self
            .compile_cache
            .enabled
            .then(|| (PathBuf::from(&self.compile_cache.dir), self.compile_cache.max_mb.saturating_mul(1 << 20)));
        if self.compile_cache.enabled && (self.compile_cache.max_mb < 16 || self.compile_cache.dir.is_empty()) {
            return invalid("compile_cache: dir must be set and max_mb at least 16 (or enabled = false)".into());
        }
        let j = &self.jobs;
        if j.retention_s == 0 || j.max_pending == 0 || j.max_finished == 0 || j.max_memory_mb == 0 {
            return invalid(
                "jobs.retention_s, jobs.max_pending, jobs.max_finished and jobs.max_memory_mb must be positive".into(),
            );
        }
        if !(1..=100).contains(&j.max_attempts) {
            return invalid(format!("jobs.max_attempts {}: 1 to 100", j.max_attempts));
        }
        let job_store = self.job_store()?;
        let cgroup_nest = r.cgroup_nest.parse().map_err(ConfigError::Invalid)?;
        if u64::from(r.uid_base) + 2 * 1024 > u64::from(u32::MAX) || r.uid_base < 65_536 {
            return invalid(format!("runs.uid_base {}: 65536 to {}", r.uid_base, u32::MAX - 2048));
        }
        let callbacks = self.callback_policy(&mut warnings)?;
        let network = self.network_settings()?;
        let mounts = self.mount_settings(&mut warnings)?;
        let mut sessions = self.sessions.settings()?;
        // every open session holds one of the host's 1024 run slots (uid pairs, cgroups)
        let warm = usize::try_from(r.warm).unwrap_or(0).min(concurrency * 4);
        let room = 1024usize.saturating_sub(concurrency + warm).max(1);
        if sessions.max > room {
            warnings.push(format!(
                "sessions.max {} is lowered to {room}: runs.concurrency and runs.warm hold the rest of the host's 1024 run slots",
                sessions.max
            ));
            sessions.max = room;
            sessions.max_per_key = sessions.max_per_key.min(room);
        }
        Ok(Settings {
            sessions,
            metrics: self.metrics_settings(),
            rate_limits: self.rate_limits()?,
            network,
            mounts,
            compile_cache,
            compile_cache_epoch: self.compile_cache.epoch.clone(),
            job_retention: Duration::from_secs(j.retention_s),
            max_pending_jobs: usize::try_from(j.max_pending).unwrap_or(usize::MAX),
            max_finished_jobs: usize::try_from(j.max_finished).unwrap_or(usize::MAX),
            max_job_bytes: usize::try_from(j.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            max_job_attempts: j.max_attempts,
            job_store,
            cgroup_nest,
            uid_base: r.uid_base,
            callbacks,
            unix_socket,
            socket_mode: s.socket_mode,
            tcp,
            api_keys: s.api_keys.clone(),
            max_body_bytes: s.max_body_kb.saturating_mul(1024),
            max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
            log_json: s.log_format == "json",
            shutdown_grace: Duration::from_millis(s.shutdown_grace_ms),
            concurrency,
            queue: usize::try_from(r.queue).unwrap_or(usize::MAX),
            warm: usize::try_from(r.warm).unwrap_or(0).min(concurrency * 4),
            state_dir: PathBuf::from(&r.state_dir),
            rootfs: (!r.rootfs.is_empty()).then(|| PathBuf::from(&r.rootfs)),
            cgroup_parent: r.cgroup_parent.clone(),
            languages_dir: (!r.languages_dir.is_empty()).then(|| PathBuf::from(&r.languages_dir)),
            images_dir: PathBuf::from(&self.images.dir),
            images_host_fallback: self.images.host_fallback,
            default_limits: self.limits.default,
            max_limits: self.limits.max,
            warnings,
        })
    }

    fn check_limits(&self) -> Result<()> {
        let (d, m) = (&self.limits.default, &self.limits.max);
        for (name, max) in m.fields() {
            if max == 0 {
                return Err(ConfigError::Invalid(format!("limits.max.{name} must be positive")));
            }
        }
        for ((name, dv), (_, mv)) in d.fields().into_iter().zip(m.fields()) {
            if dv == 0 || dv > mv {
                return Err(ConfigError::Invalid(format!(
                    "limits.default.{name} = {dv}: must be 1 to limits.max.{name} ({mv})"
                )));
            }
        }
        for (table, t) in [("default", d), ("max", m)] {
            t.to_limits().validate().map_err(|e| ConfigError::Invalid(format!("limits.{table}: {e}")))?;
        }
        Ok(())
    }
}

/// Puts `over`'s keys into `base`, table by table (unknown keys too, for the check after).
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn parse_error(origin: &str, e: &dyn std::fmt::Display) -> ConfigError {
    ConfigError::Parse { origin: origin.to_owned(), message: e.to_string().trim().replace('\n', " ") }
}

/// Every configuration key, with the environment variable that overrides it.
fn env_keys() -> BTreeMap<String, Vec<String>> {
    let defaults = toml::Value::try_from(Config::default()).expect("the default configuration serialises");
    let mut out = BTreeMap::new();
    collect(&defaults, &mut Vec::new(), &mut out);
    out
}

fn collect(v: &toml::Value, path: &mut Vec<String>, out: &mut BTreeMap<String, Vec<String>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                collect(v, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(format!("{PREFIX}{}", path.join("_").to_uppercase()), path.clone());
        }
    }
}

fn apply_env(value: &mut toml::Value, env: impl IntoIterator<Item = (String, String)>) -> Result<()> {
    let keys = env_keys();
    let defaults = toml::Value::try_from(Config::default()).expect("the default configuration serialises");
    let env_err = |m: String| ConfigError::Parse { origin: "environment".into(), message: m };
    for (name, raw) in env {
        if !name.starts_with(PREFIX) || NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let path = keys.get(&name).ok_or_else(|| env_err(format!("{name} is not a configuration key")))?;
        let mut default = &defaults;
        for p in path {
            default = &default[p.as_str()];
        }
        let parsed = match default {
            // a permission mode is octal, as in `chmod` (0660, 660 or 0o660)
            toml::Value::Integer(_) if name == "CODEEXEC_SERVER_SOCKET_MODE" => {
                let digits = raw.trim().trim_start_matches("0o");
                i64::from_str_radix(digits, 8)
                    .map(toml::Value::Integer)
                    .map_err(|e| format!("an octal mode like 0660: {e}"))
            }
            toml::Value::Integer(_) => raw.trim().parse::<i64>().map(toml::Value::Integer).map_err(|e| e.to_string()),
            toml::Value::Boolean(_) => raw.trim().parse::<bool>().map(toml::Value::Boolean).map_err(|e| e.to_string()),
            // an empty value (an unset variable in a compose file) must not wipe a list
            // such as the API keys silently
            toml::Value::Array(_) if raw.trim().is_empty() => {
                Err("an empty list; unset the variable instead".to_owned())
            }
            toml::Value::Array(_) => Ok(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            )),
            _ => Ok(toml::Value::String(raw.clone())),
        }
        .map_err(|e| env_err(format!("{name}={raw:?}: {e}")))?;
        let mut at = &mut *value;
        for p in &path[..path.len() - 1] {
            let table = at.as_table_mut().ok_or_else(|| env_err(format!("{name}: {p} is not a table")))?;
            at = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
        let table = at.as_table_mut().ok_or_else(|| env_err(format!("{name}: not a table")))?;
        table.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

mod callbacks;
mod network;
mod queue;
mod service;
#[cfg(test)]
mod tests;
