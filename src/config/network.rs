//! `[network]` and `[mounts.<name>]`: what runs may reach beyond their sandbox, and who may
//! ask for it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Result};
use crate::callback::Network;
use crate::network::EgressConfig;
use crate::sandbox::HostMount;

/// `[network]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Requests may ask for `"network": true`.
    pub enabled: bool,
    /// API keys (values from `server.api_keys`) that may ask for it; empty: every caller.
    /// Callers on the Unix socket always may.
    pub keys: Vec<String>,
    /// The IPv4 address of the DNS resolver sandboxes use; never one of this host's.
    pub resolver: String,
    /// Networks sandboxes may reach although they are private, link-local, …
    /// (`["10.1.2.0/24"]`); the host's own addresses stay unreachable.
    pub allow_networks: Vec<String>,
    /// Networks sandboxes never reach, even if `allow_networks` has them: e.g. this host's
    /// public address where the cloud NATs it (it is then not an address of the host).
    pub deny_networks: Vec<String>,
    /// Addresses for the sandboxes' links: a /30 per run slot, none of the host's.
    pub subnet: String,
    /// The interface traffic leaves by; empty: the one of the default route.
    pub uplink: String,
    /// Network runs at once (others wait their turn).
    pub max_concurrent: u64,
    /// Most connections a run may have open at once (0: no cap).
    pub max_connections: u32,
    /// Most kilobytes per second a run may send, and receive (0: no cap).
    pub rate_kbytes: u64,
    /// Most entries in a request's allow-list.
    pub max_allow_entries: u64,
    /// The nftables table (inet family) the daemon owns.
    pub table: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            keys: Vec::new(),
            resolver: String::new(),
            allow_networks: Vec::new(),
            deny_networks: Vec::new(),
            subnet: "10.200.0.0/16".into(),
            uplink: String::new(),
            max_concurrent: 16,
            max_connections: 256,
            rate_kbytes: 0,
            max_allow_entries: 32,
            table: "codeexec".into(),
        }
    }
}

/// `[mounts.<name>]`: a host directory sandboxes may ask for by name, at `/mnt/<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountConfig {
    /// The host directory: absolute, existing, no symlink on the way.
    pub path: String,
    /// Writable inside (default read-only). Files owned by uid 1000 on the host are the
    /// program's; what it creates is stored as 1000:1000.
    pub writable: bool,
    /// API keys that may ask for it; empty: every caller.
    pub keys: Vec<String>,
}

/// Who may ask for a network or a mount: every caller, or the Unix socket and these keys
/// (indices into the API keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every caller.
    Everyone,
    /// Unix-socket callers and the keys at these indices.
    Keys(Vec<usize>),
}

/// Validated `[network]`.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// How traffic leaves, for the runner.
    pub egress: EgressConfig,
    /// Network runs at once.
    pub max_concurrent: usize,
    /// Entries of an allow-list.
    pub max_allow_entries: usize,
    /// Who may ask.
    pub grant: Grant,
}

/// A validated `[mounts.<name>]`.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// The mount.
    pub mount: HostMount,
    /// Who may ask.
    pub grant: Grant,
}

impl Config {
    /// `[network]`, `None` when disabled.
    pub(super) fn network_settings(&self) -> Result<Option<NetworkSettings>> {
        let n = &self.network;
        if !n.enabled {
            return Ok(None);
        }
        let invalid = |m: String| ConfigError::Invalid(m);
        let resolver: Ipv4Addr = n.resolver.parse().map_err(|_| {
            invalid(format!("network.resolver {:?}: the IPv4 address of a DNS resolver (not on this host)", n.resolver))
        })?;
        if resolver.is_loopback() || resolver.is_unspecified() {
            return Err(invalid(format!(
                "network.resolver {resolver}: sandboxes never reach this host; name a resolver elsewhere"
            )));
        }
        let networks = |list: &[String], what: &str| -> Result<Vec<Network>> {
            let mut out = Vec::with_capacity(list.len());
            for text in list {
                let net: Network = text.parse().map_err(|e| invalid(format!("network.{what}: {e}")))?;
                if !net.addr().is_ipv4() {
                    return Err(invalid(format!("network.{what} {text:?}: sandboxes have IPv4 only")));
                }
                out.push(net);
            }
            Ok(out)
        };
        let allow_networks = networks(&n.allow_networks, "allow_networks")?;
        let deny_networks = networks(&n.deny_networks, "deny_networks")?;
        let subnet: Network = n.subnet.parse().map_err(|e| invalid(format!("network.subnet: {e}")))?;
        let slots = u64::from(crate::run::RunnerConfig::default().slots);
        match subnet.addr() {
            // a /30 per slot in each half: runs with and without an allow-list
            IpAddr::V4(_) if (1u64 << (32 - u32::from(subnet.prefix()))) >= slots * 8 => {}
            _ => {
                return Err(invalid(format!(
                    "network.subnet {subnet}: an IPv4 network with room for twice {slots} /30s (a /19 or larger)"
                )));
            }
        }
        if !(1..=1024).contains(&n.max_concurrent) || !(1..=1024).contains(&n.max_allow_entries) {
            return Err(invalid("network.max_concurrent and network.max_allow_entries: 1 to 1024".into()));
        }
        let name_ok = |s: &str| {
            !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        };
        if !n.uplink.is_empty() && !name_ok(&n.uplink) {
            return Err(invalid(format!("network.uplink {:?}: an interface name", n.uplink)));
        }
        if !n.table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || n.table.is_empty() {
            return Err(invalid(format!("network.table {:?}: letters, digits and _", n.table)));
        }
        Ok(Some(NetworkSettings {
            egress: EgressConfig {
                table: n.table.clone(),
                subnet,
                resolver,
                allow_networks,
                deny_networks,
                uplink: (!n.uplink.is_empty()).then(|| n.uplink.clone()),
                max_connections: n.max_connections,
                rate_kbytes: n.rate_kbytes,
            },
            max_concurrent: usize::try_from(n.max_concurrent).unwrap_or(1),
            max_allow_entries: usize::try_from(n.max_allow_entries).unwrap_or(1),
            grant: self.grant(&n.keys, "network.keys")?,
        }))
    }

    /// `[mounts.<name>]`, each checked on the host now: an absolute, canonical path to a
    /// directory (no symlink anywhere on it).
    pub(super) fn mount_settings(&self, warnings: &mut Vec<String>) -> Result<Vec<MountSettings>> {
        let mut out = Vec::with_capacity(self.mounts.len());
        for (name, m) in &self.mounts {
            let invalid = |why: String| ConfigError::Invalid(format!("mounts.{name}: {why}"));
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && name.as_bytes()[0].is_ascii_alphanumeric();
            if !name_ok {
                return Err(invalid(
                    "a name is 1 to 64 letters, digits, - and _, starting with a letter or digit".into(),
                ));
            }
            let path = PathBuf::from(&m.path);
            check_host_dir(&path).map_err(invalid)?;
            if m.writable {
                use std::os::unix::fs::MetadataExt;
                let owner = std::fs::metadata(&path).map(|md| md.uid()).unwrap_or(0);
                if owner != crate::run::PROGRAM_ID {
                    warnings.push(format!(
                        "mounts.{name}: {} is owned by uid {owner}; the program (uid {}) can write only where the \
                         permissions let it: chown it to {0}:{0} to give the sandbox the directory",
                        path.display(),
                        crate::run::PROGRAM_ID
                    ));
                }
            }
            let grant = self.grant(&m.keys, &format!("mounts.{name}.keys"))?;
            out.push(MountSettings { mount: HostMount { name: name.clone(), path, writable: m.writable }, grant });
        }
        Ok(out)
    }

    fn grant(&self, keys: &[String], what: &str) -> Result<Grant> {
        if keys.is_empty() {
            return Ok(Grant::Everyone);
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let i = self.server.api_keys.iter().position(|s| s == k).ok_or_else(|| {
                let shown: String = k.chars().take(4).collect();
                ConfigError::Invalid(format!("{what}: key {shown:?}... is not one of server.api_keys"))
            })?;
            out.push(i);
        }
        Ok(Grant::Keys(out))
    }
}

/// An absolute, canonical path (no symlink, `.` or `..` on it) to a directory.
fn check_host_dir(path: &Path) -> std::result::Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("path {:?} must be absolute", path.display().to_string()));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("path {}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!("path {} is a symlink; give the directory itself", path.display()));
    }
    if !meta.is_dir() {
        return Err(format!("path {} is not a directory", path.display()));
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("path {}: {e}", path.display()))?;
    if canonical != path {
        return Err(format!(
            "path {} goes through a symlink (or . or ..): give {}",
            path.display(),
            canonical.display()
        ));
    }
    Ok(())
}

/// `[mounts]`: a table of named mounts (keys only from the file: the environment cannot
/// name a new one).
pub type Mounts = BTreeMap<String, MountConfig>;
