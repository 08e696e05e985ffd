//! IP networks (`10.0.0.0/8`, `::1/128`) and the table of address ranges a callback may
//! never reach unless the operator allows them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: an address and a prefix length, with no bits set below the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("network {text:?}: {addr:?} is not an IPv4 or IPv6 address")]
    Address {
        /// The whole text.
        text: String,
        /// The address part.
        addr: String,
    },
    /// The part after `/` is not a decimal number within the family's width.
    #[error("network {text:?}: the prefix length must be a decimal number from 0 to {max}")]
    Prefix {
        /// The whole text.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// The address has bits set below the prefix (`10.0.0.1/8`), which usually means a typo.
    #[error("network {text:?}: the address has bits set below the /{prefix} prefix; write {canonical}")]
    HostBits {
        /// The whole text.
        text: String,
        /// The prefix length.
        prefix: u8,
        /// The network as it should be written.
        canonical: String,
    },
}

impl Network {
    const fn v4(octets: [u8; 4], prefix: u8) -> Network {
        Network { addr: IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])), prefix }
    }

    #[allow(clippy::too_many_arguments)] // the eight groups of an IPv6 address, as `Ipv6Addr::new`
    const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, prefix: u8) -> Network {
        Network { addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), prefix }
    }

    /// The first address of the network.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network. An IPv4 network never contains an IPv6 address, nor
    /// the reverse (callers that want `::ffff:a.b.c.d` to count as `a.b.c.d` say so).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                (u32::from(net) ^ u32::from(ip)) & mask == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                (u128::from(net) ^ u128::from(ip)) & mask == 0
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    /// `ADDRESS/PREFIX` or a bare address (a single host: /32 or /128). No spaces, no zone
    /// index, no leading `+` or zeros in the prefix, no bits set below the prefix.
    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| NetworkError::Address { text: text.to_owned(), addr: addr_text.to_owned() })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => parse_prefix(p, max).ok_or(NetworkError::Prefix { text: text.to_owned(), max })?,
        };
        let masked = Network { addr: masked(addr, prefix), prefix };
        if masked.addr != addr {
            return Err(NetworkError::HostBits { text: text.to_owned(), prefix, canonical: masked.to_string() });
        }
        Ok(masked)
    }
}

/// A decimal prefix length no greater than `max`: digits only, no leading zero.
fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    let digits = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits || (p.len() > 1 && p.starts_with('0')) {
        return None;
    }
    p.parse::<u8>().ok().filter(|&n| n <= max)
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One forbidden range and why, in the words of an error message ("`X` is …").
struct Rule {
    net: Network,
    why: &'static str,
}

const fn rule(net: Network, why: &'static str) -> Rule {
    Rule { net, why }
}

/// Ranges a callback must never reach unless `callbacks.allow_networks` names them: the
/// host itself, the operator's internal networks, and the cloud metadata services (Judge0
/// CVE-2024-29021: a callback URL reached the judge's own database). The first matching
/// row gives the reason, so specific rows come before the ranges that contain them.
/// References: the IANA IPv4 and IPv6 special-purpose address registries (RFC 6890).
const FORBIDDEN: &[Rule] = &[
    // RFC 791: "this host on this network"; connecting to 0.0.0.0 reaches the local host
    rule(Network::v4([0, 0, 0, 0], 8), "unspecified (this network)"),
    // RFC 1918
    rule(Network::v4([10, 0, 0, 0], 8), "private"),
    // RFC 6598: shared address space behind carrier-grade NAT, often a cloud's internal net
    rule(Network::v4([100, 64, 0, 0], 10), "carrier-grade NAT (shared address space)"),
    // RFC 1122: the host itself
    rule(Network::v4([127, 0, 0, 0], 8), "loopback"),
    // AWS, GCP, Azure and others answer instance metadata (and credentials) here
    rule(Network::v4([169, 254, 169, 254], 32), "link-local (cloud metadata)"),
    // RFC 3927
    rule(Network::v4([169, 254, 0, 0], 16), "link-local"),
    // RFC 1918
    rule(Network::v4([172, 16, 0, 0], 12), "private"),
    // RFC 6890: IETF protocol assignments (includes DS-Lite's 192.0.0.0/29)
    rule(Network::v4([192, 0, 0, 0], 24), "reserved (IETF protocol assignments)"),
    // RFC 5737: TEST-NET-1
    rule(Network::v4([192, 0, 2, 0], 24), "reserved for documentation"),
    // RFC 1918
    rule(Network::v4([192, 168, 0, 0], 16), "private"),
    // RFC 2544: network device benchmarking, sometimes used internally
    rule(Network::v4([198, 18, 0, 0], 15), "reserved for benchmarking"),
    // RFC 5737: TEST-NET-2
    rule(Network::v4([198, 51, 100, 0], 24), "reserved for documentation"),
    // RFC 5737: TEST-NET-3
    rule(Network::v4([203, 0, 113, 0], 24), "reserved for documentation"),
    // RFC 5771
    rule(Network::v4([224, 0, 0, 0], 4), "multicast"),
    // RFC 919: limited broadcast (before 240/4, which contains it)
    rule(Network::v4([255, 255, 255, 255], 32), "broadcast"),
    // RFC 1112: reserved for future use
    rule(Network::v4([240, 0, 0, 0], 4), "reserved"),
    // RFC 4291
    rule(Network::v6(0, 0, 0, 0, 0, 0, 0, 0, 128), "unspecified"),
    // RFC 4291
    rule(Network::v6(0, 0, 0, 0, 0, 0, 0, 1, 128), "loopback"),
    // AWS instance metadata over IPv6 (before fc00::/7, which contains it)
    rule(Network::v6(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254, 128), "unique local (cloud metadata)"),
    // RFC 4193: the IPv6 private ranges
    rule(Network::v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), "unique local (private)"),
    // RFC 4291
    rule(Network::v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), "link-local"),
    // RFC 3879: deprecated site-local, still routed inside some sites
    rule(Network::v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10), "site-local (deprecated)"),
    // RFC 4291
    rule(Network::v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), "multicast"),
    // RFC 3849 and RFC 9637
    rule(Network::v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), "reserved for documentation"),
    rule(Network::v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), "reserved for documentation"),
    // RFC 6666: discard-only
    rule(Network::v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), "reserved (discard-only)"),
    // RFC 8215: local-use NAT64, translated to IPv4 by a gateway of the operator's
    rule(Network::v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48), "local-use NAT64"),
    // RFC 4380: Teredo hides an obfuscated IPv4 address we do not decode
    rule(Network::v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32), "Teredo (tunnels to an IPv4 address)"),
];

/// IPv6 ranges that carry an IPv4 address, which is checked against the IPv4 rows: reaching
/// them reaches (or is translated to) that IPv4 address.
const EMBEDDING: &[(Network, Embedding)] = &[
    // RFC 4291: IPv4-mapped; a dual-stack socket connects to the IPv4 address itself
    (Network::v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96), Embedding { what: "IPv4-mapped", bit: 0 }),
    // RFC 4291: IPv4-compatible (deprecated); :: and ::1 are matched above first
    (Network::v6(0, 0, 0, 0, 0, 0, 0, 0, 96), Embedding { what: "IPv4-compatible", bit: 0 }),
    // RFC 2765: SIIT IPv4-translated
    (Network::v6(0, 0, 0, 0, 0xffff, 0, 0, 0, 96), Embedding { what: "IPv4-translated", bit: 0 }),
    // RFC 6052: the well-known NAT64 prefix; the operator's NAT64 gateway connects onward
    (Network::v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96), Embedding { what: "NAT64", bit: 0 }),
    // RFC 3056: 6to4, the IPv4 address of the relay in bits 16..48
    (Network::v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16), Embedding { what: "6to4", bit: 80 }),
];

/// Where an IPv6 range carries its IPv4 address: the shift that brings it to the low bits.
struct Embedding {
    what: &'static str,
    bit: u32,
}

/// Why an address is forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Forbidden {
    /// The class of the address ("loopback", "link-local (cloud metadata)").
    pub(super) why: &'static str,
    /// For an IPv6 address that carries an IPv4 one: which kind, and the IPv4 address.
    pub(super) embeds: Option<(&'static str, Ipv4Addr)>,
}

/// The table's IPv4 rows (the sandboxes' egress firewall refuses them, and IPv6 as a
/// whole).
pub fn forbidden_v4() -> impl Iterator<Item = Network> {
    FORBIDDEN.iter().map(|r| r.net).filter(|n| n.addr().is_ipv4())
}

/// Why `ip` is forbidden by the table, in words ("loopback"), or `None`.
pub fn forbidden_why(ip: IpAddr) -> Option<&'static str> {
    forbidden(ip).map(|f| f.why)
}

/// Why `ip` is forbidden by the table, or `None` when it may be reached.
pub(super) fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    if let Some(r) = FORBIDDEN.iter().find(|r| r.net.contains(ip)) {
        return Some(Forbidden { why: r.why, embeds: None });
    }
    let IpAddr::V6(v6) = ip else { return None };
    let (_, e) = EMBEDDING.iter().find(|(net, _)| net.contains(ip))?;
    let low = (u128::from(v6) >> e.bit) & u128::from(u32::MAX);
    let v4 = Ipv4Addr::from(u32::try_from(low).unwrap_or_default());
    let r = FORBIDDEN.iter().find(|r| r.net.contains(IpAddr::V4(v4)))?;
    Some(Forbidden { why: r.why, embeds: Some((e.what, v4)) })
}
