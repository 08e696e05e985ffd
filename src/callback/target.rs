//! The syntax of a callback URL: `http[s]://HOST[:PORT][/PATH][?QUERY]`, parsed strictly
//! and by hand (no URL library's leniency to reason about), before any address is looked at.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::http::uri::PathAndQuery;

use super::CallbackError;

/// The longest callback URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A parsed callback URL whose syntax is valid and whose addresses passed the policy when
/// [`check`](super::check) made it. [`deliver`](super::deliver) checks them again at every
/// attempt: DNS answers may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    https: bool,
    host: Host,
    port: u16,
    authority: String,
    path: PathAndQuery,
}

/// The host part of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    /// A DNS name, lower-case.
    Name(String),
    /// An IP literal: dotted-quad IPv4 or bracketed IPv6.
    Ip(IpAddr),
}

impl Target {
    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host as written (lower-case), without brackets for IPv6.
    pub fn host(&self) -> String {
        self.host.to_string()
    }

    /// Whether the URL is `https://`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The port (80, or 443 for https, when the URL names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` as in the URL: the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and query sent in the request line (`/` when the URL has none).
    pub fn path(&self) -> &PathAndQuery {
        &self.path
    }

    pub(super) fn host_kind(&self) -> &Host {
        &self.host
    }

    /// Parses the syntax only (no resolution, no policy: [`super::check`] does both; a
    /// job's URL checked at submission is parsed again when its callback is delivered).
    pub fn parse(url: &str) -> Result<Target, CallbackError> {
        if url.len() > MAX_URL_LEN {
            return Err(syntax(format!("it is longer than {MAX_URL_LEN} bytes")));
        }
        if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(syntax(format!(
                "it contains {c:?}: only printable ASCII is allowed (percent-encode the rest)"
            )));
        }
        if url.contains('#') {
            return Err(syntax("it has a fragment (#…), which is never sent to a server".into()));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(syntax("it does not start with http:// or https://".into()));
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(syntax(format!("the scheme {scheme:?} is not supported; use http:// or https://"))),
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(syntax("it has user information (user@host); credentials are not allowed in it".into()));
        }
        let (host, port) = split_host_port(authority)?;
        let path = match path {
            "" => Ok(PathAndQuery::from_static("/")),
            p if p.starts_with('?') => format!("/{p}").parse(),
            p => p.parse(),
        }
        .map_err(|_| syntax("its path or query is not valid".into()))?;
        let authority = match (&host, port) {
            (Host::Ip(IpAddr::V6(ip)), Some(p)) => format!("[{ip}]:{p}"),
            (Host::Ip(IpAddr::V6(ip)), None) => format!("[{ip}]"),
            (h, Some(p)) => format!("{h}:{p}"),
            (h, None) => h.to_string(),
        };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        Ok(Target { url: url.to_owned(), https, host, port, authority, path })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

fn syntax(why: String) -> CallbackError {
    CallbackError::Syntax(why)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(Host, Option<u16>), CallbackError> {
    if authority.is_empty() {
        return Err(syntax("it has no host".into()));
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) =
            rest.split_once(']').ok_or_else(|| syntax("an IPv6 address in it lacks its closing ]".into()))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| syntax(format!("[{inside}] is not an IPv6 address (zone ids are not allowed)")))?;
        let port = match after {
            "" => None,
            a => Some(parse_port(a.strip_prefix(':').ok_or_else(|| syntax(format!("unexpected {a:?} after ]")))?)?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((_, p)) if p.contains(':') => return Err(syntax("an IPv6 address must be in brackets: [::1]".into())),
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(syntax("it has no host".into()));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    check_name(host)?;
    Ok((Host::Name(host.to_ascii_lowercase()), port))
}

/// A decimal port from 1 to 65535.
fn parse_port(p: &str) -> Result<u16, CallbackError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(format!("the port {p:?} is not a number from 1 to 65535")));
    }
    match p.parse::<u16>() {
        Ok(0) => Err(syntax("port 0 is not allowed".into())),
        Ok(n) => Ok(n),
        Err(_) => Err(syntax(format!("the port {p:?} is not a number from 1 to 65535"))),
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, at most 63 bytes each and 253 in
/// all, an optional final dot. A last label that is a number (`127.1`, `2130706433`,
/// `0x7f.1`) is refused: resolvers read such names as IPv4 addresses in forms we do not
/// accept (only dotted quads are).
fn check_name(host: &str) -> Result<(), CallbackError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let bad = || syntax(format!("{host:?} is not a valid host name"));
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if label.is_empty() || label.len() > 63 || !label.bytes().all(ok_char) {
            return Err(bad());
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    if last.bytes().all(|b| b.is_ascii_digit()) || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(syntax(format!("{host:?} is numeric but not a dotted-quad IPv4 address")));
    }
    Ok(())
}
