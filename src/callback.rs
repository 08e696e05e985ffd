//! Webhook callbacks: an async job's result POSTed to the URL its client gave. This module
//! checks callback URLs, delivers with retries and signs what it sends. It owns no job
//! state and no configuration file: the caller hands it a [`Policy`] and a body.
//!
//! # For the README: callbacks
//!
//! **What is sent.** One `POST` of the job's JSON result to the callback URL, with:
//!
//! | header | value |
//! | --- | --- |
//! | `Content-Type` | `application/json` |
//! | `User-Agent` | `codeexec/VERSION` |
//! | `X-Codeexec-Job` | the job id: deliveries are at least once, so deduplicate on it |
//! | `Idempotency-Key` | the job id again, under the header's standard name |
//! | `X-Codeexec-Delivery` | the attempt number, from 1 |
//! | `X-Codeexec-Timestamp` | Unix seconds when this attempt was signed |
//! | `X-Codeexec-Signature` | `sha256=` + hex HMAC-SHA256(secret, `TIMESTAMP` + `.` + body), when a secret is set |
//!
//! **Verifying.** A receiver recomputes the HMAC-SHA256 of the timestamp header, a `.` and
//! the raw body bytes (before any JSON parsing) with the shared secret, compares it with
//! the signature header in constant time, and rejects timestamps more than a few minutes
//! from its own clock (a replay). [`verify`] does the first two steps. Without
//! `callbacks.secret` nothing is signed and a receiver cannot tell a forged callback from a
//! real one: operators should set one.
//!
//! **Retries.** A 2xx answer ends the delivery. A redirect is never followed and, like
//! any other 4xx than 408 and 429, is final. 5xx, 408, 429, timeouts, DNS, connection and
//! TLS errors are retried, `attempts` times in all, after `backoff`, doubling each time up
//! to `max_backoff`, with jitter; a `Retry-After` in seconds replaces the wait (capped the
//! same). Each attempt (DNS, connect, TLS, answer headers) has `timeout`. The answer's
//! body is never read.
//!
//! **What is refused** (server-side request forgery, Judge0's CVE-2024-29021): URLs other
//! than `http[s]://host[:port][/path][?query]` (no user info, no fragment, at most 2 KiB,
//! port 1 to 65535), and hosts that resolve to any address that is unspecified, loopback,
//! private (RFC 1918, fc00::/7), carrier-grade NAT, link-local (with the cloud metadata
//! addresses 169.254.169.254 and fd00:ec2::254), multicast, broadcast, reserved,
//! documentation or benchmarking, including IPv4 addresses inside IPv6 ones (mapped,
//! compatible, NAT64, 6to4). The check runs when the job is submitted (an error there is a
//! 422) and again at every attempt, on a fresh DNS answer; the connection goes to the very
//! address checked, so a DNS answer cannot change in between. Operators who do want
//! callbacks inside their network list it in `callbacks.allow_networks`
//! (`["10.0.0.0/8", "127.0.0.1/32"]`).
//!
//! **HTTPS.** An `https://` URL's certificate must chain to Mozilla's roots (built in,
//! from `webpki-roots`) or to a CA certificate the operator adds (PEM, e.g. an internal
//! CA), and be valid for the URL's host name or IP address. A certificate error counts as
//! a connection error (retried). The address checks are the same as for `http://`.

mod delivery;
mod network;
mod target;
#[cfg(test)]
mod tests;
mod tls;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use delivery::{Delivery, Outcome, deliver, deliver_with};
pub use network::{Network, NetworkError, forbidden_v4, forbidden_why};
pub use target::{MAX_URL_LEN, Target};
pub use tls::{TlsError, parse_pem_certificates};

use target::Host;

type Result<T> = std::result::Result<T, CallbackError>;

/// The operator's callback policy (config `[callbacks]`).
#[derive(Clone)]
pub struct Policy {
    /// The HMAC-SHA256 key signing each delivery; `None` sends unsigned callbacks, which a
    /// receiver cannot authenticate (operators should set one).
    pub secret: Option<Vec<u8>>,
    /// Networks allowed even though the forbidden table refuses them ("10.0.0.0/8").
    pub allow_networks: Vec<Network>,
    /// Tries in all, the first one included (0 counts as 1).
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each later one.
    pub backoff: Duration,
    /// The longest wait between two tries, `Retry-After` included.
    pub max_backoff: Duration,
    /// One try's limit: DNS, connect, sending, and the answer's status and headers.
    pub timeout: Duration,
    /// The largest body sent; the caller truncates a result to fit first.
    pub max_body: usize,
    /// CA certificates (DER) trusted for `https://` callbacks besides Mozilla's roots, such
    /// as an internal CA ([`parse_pem_certificates`] reads them from PEM).
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            secret: None,
            allow_networks: Vec::new(),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            extra_roots: Vec::new(),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("allow_networks", &self.allow_networks)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl Policy {
    /// Whether a callback may connect to `ip`: `Err` says why not. An allowed IPv4 network
    /// also allows the IPv4-mapped form of its addresses (the same destination).
    pub fn vet(&self, ip: IpAddr) -> std::result::Result<(), Refusal> {
        if self.allow_networks.iter().any(|n| n.contains(ip) || n.contains(ip.to_canonical())) {
            return Ok(());
        }
        match network::forbidden(ip) {
            None => Ok(()),
            Some(f) => Err(Refusal { name: None, addr: ip, why: f.why, embeds: f.embeds }),
        }
    }
}

/// A callback URL that cannot be used. Every variant is the client's to fix (HTTP 422),
/// except that an operator may allow a [`Refused`](CallbackError::Refused) network.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The URL's syntax.
    #[error("invalid callback URL: {0}")]
    Syntax(String),
    /// The host is, or resolves to, an address the policy refuses.
    #[error("{0}")]
    Refused(Refusal),
    /// DNS failed.
    #[error("cannot resolve the callback host {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// DNS did not answer within the policy's timeout.
    #[error("resolving the callback host {host} took longer than {timeout:?}")]
    ResolveTimeout {
        /// The host name.
        host: String,
        /// The limit.
        timeout: Duration,
    },
    /// DNS answered with no address.
    #[error("the callback host {host} has no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
}

/// An address refused by the policy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host name it was resolved from, when the URL has a name rather than an address.
    pub name: Option<String>,
    /// The refused address.
    pub addr: IpAddr,
    /// Its class: "loopback", "private", "link-local (cloud metadata)", …
    pub why: &'static str,
    /// For an IPv6 address carrying an IPv4 one: the kind ("IPv4-mapped", "NAT64", "6to4")
    /// and the IPv4 address, which is the one `why` describes.
    pub embeds: Option<(&'static str, Ipv4Addr)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.embeds {
            Some((kind, v4)) => format!("{} ({kind} {v4})", self.addr),
            None => self.addr.to_string(),
        };
        match &self.name {
            Some(name) => write!(f, "{name} resolves to {subject}, which is {}", self.why)?,
            None => write!(f, "{subject} is {}", self.why)?,
        }
        let host_prefix = if self.addr.is_ipv4() { 32 } else { 128 };
        write!(
            f,
            ": callbacks may not reach it (an operator can allow it by adding {}/{host_prefix} to callbacks.allow_networks)",
            self.addr
        )
    }
}

/// Checks a callback URL when a job is submitted: its syntax, then every address its host
/// resolves to against the policy. An error is the client's (HTTP 422).
pub async fn check(url: &str, policy: &Policy) -> Result<Target> {
    let target = Target::parse(url)?;
    resolve(&target, policy).await?;
    Ok(target)
}

/// The target's addresses, every one of them allowed by the policy (or an error naming the
/// first that is not). A literal address is not looked up.
async fn resolve(target: &Target, policy: &Policy) -> Result<Vec<SocketAddr>> {
    let port = target.port();
    let (name, mut addrs) = match target.host_kind() {
        Host::Ip(ip) => (None, vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            let found = tokio::time::timeout(policy.timeout, lookup)
                .await
                .map_err(|_| CallbackError::ResolveTimeout { host: name.clone(), timeout: policy.timeout })?
                .map_err(|source| CallbackError::Resolve { host: name.clone(), source })?;
            (Some(name), found.collect())
        }
    };
    addrs.dedup();
    if addrs.is_empty() {
        return Err(CallbackError::NoAddress { host: target.host() });
    }
    for a in &addrs {
        policy.vet(a.ip()).map_err(|r| CallbackError::Refused(Refusal { name: name.cloned(), ..r }))?;
    }
    Ok(addrs)
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Codeexec-Signature` value: `sha256=` and the lower-case hex HMAC-SHA256 of
/// `timestamp`, `.` and `body` under `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Whether `header` (an `X-Codeexec-Signature` value) signs `timestamp` and `body` under
/// `secret`, compared in constant time. A receiver should also refuse old timestamps.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    bool::from(expected.as_slice().ct_eq(&given))
}
