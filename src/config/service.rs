//! `[metrics]` and `[rate_limit]`: what a daemon run as a service shows Prometheus, and how
//! fast each API key may ask, validated into [`MetricsSettings`] and [`RateLimits`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Result};

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// Answer it without an API key on TCP (a Prometheus scraper without credentials).
    pub keyless: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, keyless: false }
    }
}

/// `[rate_limit]`, and one key's override in `[rate_limit.keys."KEY"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second each API key may make (a token bucket); 0: no limit.
    pub requests_per_second: u32,
    /// Requests a key may make at once above that rate (the bucket's size); 0: one
    /// second's worth.
    pub burst: u32,
    /// `POST /v1/execute` requests each key may have at once; 0: no limit.
    pub concurrent_runs: u32,
    /// Per-key overrides, by the key itself (each field as above).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, KeyRate>,
}

/// One key's override: a field it leaves out (or 0) takes `[rate_limit]`'s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRate {
    /// As `[rate_limit] requests_per_second`.
    pub requests_per_second: u32,
    /// As `[rate_limit] burst`.
    pub burst: u32,
    /// As `[rate_limit] concurrent_runs`.
    pub concurrent_runs: u32,
}

/// What `/metrics` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Served at all.
    pub enabled: bool,
    /// Served without a key.
    pub keyless: bool,
}

/// One key's limits (None: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests per second, and the bucket's size.
    pub rate: Option<(std::num::NonZeroU32, std::num::NonZeroU32)>,
    /// Runs at once.
    pub concurrent_runs: Option<std::num::NonZeroU32>,
}

/// Each configured key's limits, in `server.api_keys`' order.
pub type RateLimits = Vec<KeyLimits>;

/// Requests per second and burst are at most this.
const MAX_RATE: u32 = 1_000_000;

impl Config {
    pub(super) fn metrics_settings(&self) -> MetricsSettings {
        MetricsSettings { enabled: self.metrics.enabled, keyless: self.metrics.keyless }
    }

    /// Each key's limits: its override's fields over `[rate_limit]`'s.
    pub(super) fn rate_limits(&self) -> Result<RateLimits> {
        let r = &self.rate_limit;
        if let Some(k) = r.keys.keys().find(|k| !self.server.api_keys.contains(k)) {
            let shown: String = k.chars().take(4).collect();
            return Err(ConfigError::Invalid(format!(
                "rate_limit.keys: key {shown:?}... is not one of server.api_keys"
            )));
        }
        let pick = |own: u32, all: u32| if own == 0 { all } else { own };
        let mut limits = Vec::new();
        for key in &self.server.api_keys {
            let o = r.keys.get(key).cloned().unwrap_or_default();
            let rps = pick(o.requests_per_second, r.requests_per_second);
            let burst = pick(o.burst, r.burst);
            if rps > MAX_RATE || burst > MAX_RATE {
                return Err(ConfigError::Invalid(format!(
                    "rate_limit: requests_per_second and burst are at most {MAX_RATE}"
                )));
            }
            let rate = std::num::NonZeroU32::new(rps).map(|rps| (rps, std::num::NonZeroU32::new(burst).unwrap_or(rps)));
            let concurrent_runs = std::num::NonZeroU32::new(pick(o.concurrent_runs, r.concurrent_runs));
            limits.push(KeyLimits { rate, concurrent_runs });
        }
        Ok(limits)
    }
}
