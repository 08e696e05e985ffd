//! `[callbacks]`: how async jobs' callbacks are checked, signed and retried, validated
//! into the callback module's policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Result};

/// `[callbacks]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Callbacks {
    /// The HMAC-SHA256 key signing callbacks; empty: unsigned (warned at start).
    pub secret: String,
    /// Networks callbacks may reach although they are loopback, private, link-local…
    /// (`["10.0.0.0/8", "127.0.0.1/32"]`).
    pub allow_networks: Vec<String>,
    /// Tries in all.
    pub attempts: u32,
    /// The wait before the first retry, ms (it doubles for each later one).
    pub backoff_ms: u64,
    /// One try's time limit, ms.
    pub timeout_ms: u64,
    /// A PEM file of CA certificates trusted for https callbacks besides the built-in roots.
    pub ca_file: String,
}

impl Default for Callbacks {
    fn default() -> Self {
        Self {
            secret: String::new(),
            allow_networks: Vec::new(),
            attempts: 5,
            backoff_ms: 1000,
            timeout_ms: 10_000,
            ca_file: String::new(),
        }
    }
}

impl Config {
    /// `[callbacks]` checked: networks parsed, the CA file read.
    pub(super) fn callback_policy(&self, warnings: &mut Vec<String>) -> Result<crate::callback::Policy> {
        let c = &self.callbacks;
        let invalid = |m: String| ConfigError::Invalid(m);
        let mut allow_networks = Vec::with_capacity(c.allow_networks.len());
        for n in &c.allow_networks {
            allow_networks.push(n.parse().map_err(|e| invalid(format!("callbacks.allow_networks {n:?}: {e}")))?);
        }
        if !(1..=20).contains(&c.attempts) {
            return Err(invalid(format!("callbacks.attempts {}: 1 to 20", c.attempts)));
        }
        if !(1..=600_000).contains(&c.timeout_ms) || c.backoff_ms > 600_000 {
            return Err(invalid("callbacks.timeout_ms: 1 to 600000; callbacks.backoff_ms: at most 600000".into()));
        }
        let extra_roots = if c.ca_file.is_empty() {
            Vec::new()
        } else {
            let pem =
                std::fs::read(&c.ca_file).map_err(|e| invalid(format!("callbacks.ca_file {:?}: {e}", c.ca_file)))?;
            crate::callback::parse_pem_certificates(&pem)
                .map_err(|e| invalid(format!("callbacks.ca_file {:?}: {e}", c.ca_file)))?
        };
        let secret = if c.secret.is_empty() {
            warnings.push("callbacks.secret is not set: job callbacks go unsigned".into());
            None
        } else if c.secret.len() < 16 {
            return Err(invalid("callbacks.secret: at least 16 characters".into()));
        } else {
            Some(c.secret.clone().into_bytes())
        };
        Ok(crate::callback::Policy {
            secret,
            allow_networks,
            attempts: c.attempts,
            backoff: Duration::from_millis(c.backoff_ms),
            timeout: Duration::from_millis(c.timeout_ms),
            extra_roots,
            ..crate::callback::Policy::default()
        })
    }
}
