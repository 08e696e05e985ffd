//! What a request may reach beyond its sandbox, checked against what the operator offers
//! and to whom: the network (403 when not offered to this caller, 422 for a bad
//! allow-list) and host mounts (422 for an unknown name, 403 for one not offered to it).

use serde::Serialize;

use super::Policy;
use super::error::ApiError;
use super::routes::Caller;
use super::types::NetworkIn;
use crate::config::Grant;
use crate::network::AllowEntry;
use crate::run::{Access, NetAccess};

fn granted(grant: &Grant, caller: Caller) -> bool {
    match (grant, caller) {
        (Grant::Everyone, _) | (_, Caller::Local) => true,
        (Grant::Keys(keys), Caller::Key(i)) => keys.contains(&i),
    }
}

/// The access a request asks for, checked.
pub(super) fn access(
    policy: &Policy,
    network: Option<NetworkIn>,
    mounts: Option<Vec<String>>,
    caller: Caller,
) -> Result<Access, ApiError> {
    let network = match network {
        None | Some(NetworkIn::On(false)) => None,
        Some(asked) => Some(net_access(policy, asked, caller)?),
    };
    let mut names = mounts.unwrap_or_default();
    if names.len() > policy.mounts.len() {
        return Err(ApiError::Invalid(format!(
            "mounts: {} names, but {} are offered",
            names.len(),
            policy.mounts.len()
        )));
    }
    for (i, name) in names.iter().enumerate() {
        let Some(m) = policy.mounts.iter().find(|m| &m.mount.name == name) else {
            let offered: Vec<&str> =
                policy.mounts.iter().filter(|m| granted(&m.grant, caller)).map(|m| m.mount.name.as_str()).collect();
            return Err(ApiError::Invalid(format!(
                "mounts: no host directory named {name:?} (offered: {})",
                if offered.is_empty() { "none".to_owned() } else { offered.join(", ") }
            )));
        };
        if !granted(&m.grant, caller) {
            return Err(ApiError::Forbidden(format!("mounts: {name:?} is not offered to this API key")));
        }
        if names[..i].contains(name) {
            return Err(ApiError::Invalid(format!("mounts: {name:?} is named twice")));
        }
    }
    names.shrink_to_fit();
    Ok(Access { network, mounts: names })
}

fn net_access(policy: &Policy, asked: NetworkIn, caller: Caller) -> Result<NetAccess, ApiError> {
    let Some(net) = &policy.network else {
        return Err(ApiError::Forbidden("network access is not enabled on this server".into()));
    };
    if !granted(&net.grant, caller) {
        return Err(ApiError::Forbidden("network access is not offered to this API key".into()));
    }
    let list = match asked {
        NetworkIn::On(_) => return Ok(NetAccess { allow: None }),
        NetworkIn::Spec(spec) => spec.allow,
    };
    if list.is_empty() || list.len() > net.max_allow_entries {
        return Err(ApiError::Invalid(format!(
            "network.allow: 1 to {} entries (or \"network\": true for no list)",
            net.max_allow_entries
        )));
    }
    let mut allow = Vec::with_capacity(list.len());
    for text in list {
        let entry: AllowEntry = text.parse().map_err(|e| ApiError::Invalid(format!("network.allow: {e}")))?;
        // a literal address is checked now; a name when the run starts, on its answer
        if let Ok(ip) = entry.host.parse()
            && let Some(why) = net.egress.refuses(ip)
        {
            return Err(ApiError::Invalid(format!("network.allow {entry}: {why}")));
        }
        allow.push(entry);
    }
    Ok(NetAccess { allow: Some(allow) })
}

/// `GET /v1/capabilities`: what this caller may ask for.
#[derive(Debug, Serialize)]
pub(super) struct Capabilities {
    pub(super) network: NetworkOffer,
    pub(super) mounts: Vec<MountOffer>,
    /// Other services' APIs served, each at its prefix.
    pub(super) dialects: Vec<super::dialect::DialectOffer>,
}

#[derive(Debug, Serialize)]
pub(super) struct NetworkOffer {
    /// `"network": true` is accepted from this caller.
    pub(super) available: bool,
    /// Most entries of `network.allow`.
    pub(super) max_allow_entries: usize,
    /// Network runs at once (more wait their turn).
    pub(super) max_concurrent: usize,
    /// Sandboxes' resolver.
    pub(super) resolver: Option<String>,
    /// What a network run never reaches, in words.
    pub(super) never: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct MountOffer {
    pub(super) name: String,
    pub(super) path: String,
    pub(super) writable: bool,
}

/// What `caller` is offered.
pub(super) fn capabilities(policy: &Policy, caller: Caller) -> Capabilities {
    let net = policy.network.as_ref().filter(|n| granted(&n.grant, caller));
    Capabilities {
        network: NetworkOffer {
            available: net.is_some(),
            max_allow_entries: net.map_or(0, |n| n.max_allow_entries),
            max_concurrent: net.map_or(0, |n| n.max_concurrent),
            resolver: net.map(|n| n.egress.resolver.to_string()),
            never: "this host (loopback and every address of its own), other sandboxes, link-local and cloud \
                    metadata, private, carrier-grade NAT, multicast and reserved ranges (unless the operator \
                    allows some), IPv6",
        },
        mounts: policy
            .mounts
            .iter()
            .filter(|m| granted(&m.grant, caller))
            .map(|m| MountOffer {
                name: m.mount.name.clone(),
                path: format!("/mnt/{}", m.mount.name),
                writable: m.mount.writable,
            })
            .collect(),
        dialects: super::dialect::offers(&policy.dialects),
    }
}
