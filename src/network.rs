//! The way out for runs that ask for a network, and the firewall that keeps it from the
//! host. Each such sandbox gets a veth pair (made by the sandbox module): its end is `eth0`
//! with a /30 of `subnet` chosen by its run slot, the host's end `ceh<slot>`. Traffic from
//! the sandboxes is forwarded and masqueraded out of the uplink, through one nftables
//! table loaded when the daemon starts, in the host's network namespace, where a sandbox
//! cannot touch it:
//!
//! - nothing from a sandbox reaches the host itself: input from `ceh*` is dropped, and a
//!   forwarded packet to any of the host's own addresses (`fib daddr type local`), another
//!   sandbox, broadcast or multicast is dropped, whatever the operator allows;
//! - source addresses are checked (strict reverse path): a sandbox cannot pose as another;
//! - IPv6 is dropped (the links have it disabled too): one family to get right;
//! - the resolver the operator names may be asked on port 53; the networks the operator
//!   allows (`allow_networks`) may be reached through any interface; everything else only
//!   out of the uplink and never to an address of the callback module's table of
//!   forbidden ranges (loopback, private, carrier-grade NAT, link-local with the cloud
//!   metadata address, multicast, reserved, documentation, benchmarking);
//! - a run with an allow-list reaches only its `address . protocol . port` entries (and
//!   the resolver). Such runs get their link from the upper half of `subnet`, which the
//!   table checks against a set of permits, so the check fails closed: a permit that is
//!   missing, expired or never added denies. A run's permits are keyed by its address,
//!   added before its program starts and removed after it is dead (with a timeout, should
//!   the daemon die in between);
//! - optional caps: concurrent connections and bytes per second, per sandbox;
//! - replies come back (`ct state established,related`); nothing else enters a sandbox.
//!
//! Only one network-enabled daemon runs per network namespace (a lock file says which); it
//! records when it turns the uplink's forwarding on, so that a successor after a crash turns
//! it off again.
//! A watchdog checks every second that the table is still there (a host firewall reload
//! with `flush ruleset` removes it): if not, it cuts every sandbox's link and loads the
//! table again.
//!
//! This module runs `nft`, at start, once a second, and twice per run with an allow-list;
//! it never runs in a sandbox or between fork and exec.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::callback::{Network, forbidden_v4, forbidden_why};
use crate::sandbox::NetLink;

/// The host ends' name prefix: `ceh<slot>` (a slot is host-wide, so names never clash).
pub const IF_PREFIX: &str = "ceh";
/// Held by the one network-enabled daemon of a network namespace:
/// `/run/codeexec-network-<namespace inode>.lock`.
const LOCK_PREFIX: &str = "/run/codeexec-network-";
/// How often the watchdog checks the table.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How the egress is set up (validated from `[network]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// The nftables table's name (`inet` family).
    pub table: String,
    /// Addresses of the links: a /30 per run slot.
    pub subnet: Network,
    /// The DNS resolver sandboxes ask (named in their `/etc/resolv.conf`).
    pub resolver: Ipv4Addr,
    /// IPv4 networks reachable although the forbidden table lists them.
    pub allow_networks: Vec<Network>,
    /// IPv4 networks never reachable, allowed or not (e.g. the host's own public address
    /// on a cloud that NATs it, which is not an address of the host).
    pub deny_networks: Vec<Network>,
    /// The interface traffic leaves by; `None`: the default route's.
    pub uplink: Option<String>,
    /// Most connections a sandbox may have open at once (0: no cap).
    pub max_connections: u32,
    /// Most kilobytes per second a sandbox may send, and receive (0: no cap).
    pub rate_kbytes: u64,
}

/// Errors setting up or changing the egress.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `nft` failed or is missing.
    #[error("nft: {0}")]
    Nft(String),
    /// The host's network does not fit the configuration.
    #[error("{0}")]
    Setup(String),
}

/// The installed egress: the table exists while this lives.
#[derive(Debug)]
pub struct Egress {
    config: EgressConfig,
    uplink: String,
    /// We turned forwarding on for the uplink (replies from it are forwarded to the
    /// sandboxes), and turn it off again when done.
    forwarding_turned_on: bool,
    /// The file that says so while it is true (names the uplink).
    mark: String,
    lock_path: String,
    /// The one network-enabled daemon of this network namespace is us.
    _lock: Flock<File>,
    watchdog: Option<Watchdog>,
}

#[derive(Debug)]
struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// One destination a run may reach when it gives an allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub udp: bool,
}

/// An allow-list entry as a request gives it: `host:port`, `host:port/udp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// A host name or an IPv4 address.
    pub host: String,
    /// The port (1 to 65535).
    pub port: u16,
    /// UDP instead of TCP.
    pub udp: bool,
}

impl FromStr for AllowEntry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (rest, udp) = match text.rsplit_once('/') {
            Some((r, "udp")) => (r, true),
            Some((r, "tcp")) => (r, false),
            Some(_) => return Err(format!("{text:?}: the protocol after / must be tcp or udp")),
            None => (text, false),
        };
        let (host, port) =
            rest.rsplit_once(':').ok_or_else(|| format!("{text:?}: write host:port (e.g. example.com:443)"))?;
        let port = port.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{text:?}: bad port"))?;
        let name_ok = |h: &str| {
            !h.is_empty()
                && h.len() <= 253
                && h.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if host.parse::<Ipv4Addr>().is_err() && !name_ok(host) {
            return Err(format!("{text:?}: the host must be a DNS name or an IPv4 address"));
        }
        Ok(AllowEntry { host: host.to_ascii_lowercase(), port, udp })
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.host, self.port, if self.udp { "/udp" } else { "" })
    }
}

impl EgressConfig {
    /// Why a sandbox may not reach `ip` (an allow-list entry naming it is refused), or
    /// `None`. The host's own addresses are refused by the firewall whatever this says.
    pub fn refuses(&self, ip: Ipv4Addr) -> Option<String> {
        if self.allow_networks.iter().any(|n| n.contains(IpAddr::V4(ip))) {
            return None;
        }
        forbidden_why(IpAddr::V4(ip)).map(|why| format!("{ip} is {why}, which sandboxes may not reach"))
    }

    /// The link of run slot `slot`: host end `.1`, sandbox `.2` of its /30, in the lower
    /// half of the subnet, or in the upper half for a run `narrowed` to an allow-list;
    /// `None` when the subnet has no room for it.
    pub fn link(&self, slot: u32, narrowed: bool) -> Option<NetLink> {
        let IpAddr::V4(base) = self.subnet.addr() else { return None };
        let half = 1u64 << (31 - u32::from(self.subnet.prefix().min(31)));
        let first = u64::from(slot) * 4;
        if first + 4 > half {
            return None;
        }
        let first = if narrowed { first + half } else { first };
        let host = u32::from(base).checked_add(u32::try_from(first + 1).ok()?)?;
        Some(NetLink {
            host_if: format!("{IF_PREFIX}{slot}"),
            host_addr: Ipv4Addr::from(host),
            sandbox_addr: Ipv4Addr::from(host + 1),
            prefix_len: 30,
        })
    }

    /// The upper half of the subnet: the links of runs with an allow-list.
    fn narrowed_half(&self) -> String {
        let IpAddr::V4(base) = self.subnet.addr() else { return self.subnet.to_string() };
        let prefix = self.subnet.prefix().min(31);
        let half = 1u32 << (31 - u32::from(prefix));
        format!("{}/{}", Ipv4Addr::from(u32::from(base) + half), prefix + 1)
    }

    /// The sandboxes' `/etc/resolv.conf`.
    pub fn resolv_conf(&self) -> String {
        format!(
            "# written by codeexec: the operator's resolver\nnameserver {}\noptions timeout:2 attempts:2\n",
            self.resolver
        )
    }

    /// The whole table, as an `nft -f` script that replaces any earlier one atomically.
    pub fn ruleset(&self, uplink: &str, drop_uplink_forwarding: bool) -> String {
        let t = &self.table;
        let set = |nets: &mut dyn Iterator<Item = Network>| {
            let list: Vec<String> = nets.map(|n| n.to_string()).collect();
            if list.is_empty() { String::new() } else { format!(" elements = {{ {} }};", list.join(", ")) }
        };
        let forbidden = set(&mut forbidden_v4());
        let allowed = set(&mut self.allow_networks.iter().copied().filter(|n| n.addr().is_ipv4()));
        let denied = set(&mut self.deny_networks.iter().copied().filter(|n| n.addr().is_ipv4()));
        let (subnet, resolver, narrowed) = (self.subnet, self.resolver, self.narrowed_half());
        let ifs = format!("\"{IF_PREFIX}*\"");
        let mut limits = String::new();
        let mut sets = String::new();
        let mut ingress_rate = String::new();
        if self.max_connections > 0 {
            sets.push_str("  set conns { type ipv4_addr; size 65535; flags dynamic; }\n");
            limits.push_str(&format!(
                "    ct state new add @conns {{ ip saddr ct count over {} }} drop\n",
                self.max_connections
            ));
        }
        if self.rate_kbytes > 0 {
            let r = self.rate_kbytes;
            sets.push_str("  set rate_out { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n");
            sets.push_str("  set rate_in { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n");
            limits.push_str(&format!("    update @rate_out {{ ip saddr limit rate over {r} kbytes/second }} drop\n"));
            ingress_rate = format!("    update @rate_in {{ ip daddr limit rate over {r} kbytes/second }} drop\n");
        }
        let uplink_rule =
            if drop_uplink_forwarding { format!("    iifname \"{uplink}\" drop\n") } else { String::new() };
        format!(
            "table inet {t} {{}}\n\
             delete table inet {t}\n\
             table inet {t} {{\n\
             \x20 set forbidden {{ type ipv4_addr; flags interval; auto-merge;{forbidden} }}\n\
             \x20 set allowed {{ type ipv4_addr; flags interval; auto-merge;{allowed} }}\n\
             \x20 set denied {{ type ipv4_addr; flags interval; auto-merge;{denied} }}\n\
             \x20 set permits {{ type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags timeout; }}\n\
             {sets}\
             \x20 chain input {{\n\
             \x20   type filter hook input priority filter - 10; policy accept;\n\
             \x20   iifname {ifs} drop\n\
             \x20 }}\n\
             \x20 chain forward {{\n\
             \x20   type filter hook forward priority filter - 10; policy accept;\n\
             \x20   iifname {ifs} jump egress\n\
             \x20   oifname {ifs} jump ingress\n\
             {uplink_rule}\
             \x20 }}\n\
             \x20 chain ingress {{\n\
             \x20   ct state != {{ established, related }} drop\n\
             {ingress_rate}\
             \x20   accept\n\
             \x20 }}\n\
             \x20 chain egress {{\n\
             \x20   meta nfproto != ipv4 drop\n\
             \x20   ip saddr != {subnet} drop\n\
             \x20   fib saddr . iif oif missing drop\n\
             \x20   fib daddr type {{ local, broadcast, anycast, multicast }} drop\n\
             \x20   oifname {ifs} drop\n\
             \x20   ip daddr @denied drop\n\
             \x20   ip daddr {resolver} meta l4proto {{ tcp, udp }} th dport 53 goto limits\n\
             \x20   ip daddr @allowed goto narrow\n\
             \x20   oifname != \"{uplink}\" drop\n\
             \x20   ip daddr @forbidden drop\n\
             \x20   goto narrow\n\
             \x20 }}\n\
             \x20 chain narrow {{\n\
             \x20   ip saddr {narrowed} meta l4proto != {{ tcp, udp }} drop\n\
             \x20   ip saddr {narrowed} ip saddr . ip daddr . meta l4proto . th dport != @permits drop\n\
             \x20   goto limits\n\
             \x20 }}\n\
             \x20 chain limits {{\n\
             {limits}\
             \x20   accept\n\
             \x20 }}\n\
             \x20 chain postrouting {{\n\
             \x20   type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {subnet} oifname != {ifs} masquerade\n\
             \x20 }}\n\
             }}\n"
        )
    }
}

impl Egress {
    /// Takes the host's network lock, finds the uplink, checks the host against the
    /// configuration, loads the table and turns forwarding on for the uplink if it was
    /// off (the links turn it on for their own host ends). Call [`Egress::watch`] once
    /// threads are allowed.
    pub fn install(config: EgressConfig) -> Result<Egress, NetError> {
        use std::os::unix::fs::MetadataExt;
        let netns =
            std::fs::metadata("/proc/self/ns/net").map_err(|e| NetError::Setup(format!("/proc/self/ns/net: {e}")))?;
        let lock_path = format!("{LOCK_PREFIX}{}.lock", netns.ino());
        let mark = format!("{LOCK_PREFIX}{}.forwarding", netns.ino());
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| NetError::Setup(format!("{lock_path}: {e}")))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            NetError::Setup(format!(
                "another codeexec process has network runs enabled in this network namespace ({lock_path}: {}); \
                 only one may",
                e.desc()
            ))
        })?;
        let uplink = match &config.uplink {
            Some(u) => u.clone(),
            None => default_route_interface()?,
        };
        check_host(&config, &uplink)?;
        let forwarding = format!("/proc/sys/net/ipv4/conf/{uplink}/forwarding");
        let was = std::fs::read_to_string(&forwarding).map_err(|e| NetError::Setup(format!("{forwarding}: {e}")))?;
        // a predecessor that died (we hold the lock) may have left it on: it was off then
        let marked = std::fs::read_to_string(&mark).is_ok_and(|m| m.trim() == uplink);
        let off = was.trim() == "0" || marked;
        nft(&config.ruleset(&uplink, off))?;
        // from here on, dropping it removes the table again
        let mut egress =
            Egress { config, uplink, forwarding_turned_on: false, mark, lock_path, _lock: lock, watchdog: None };
        if off {
            std::fs::write(&egress.mark, &egress.uplink)
                .map_err(|e| NetError::Setup(format!("{}: {e}", egress.mark)))?;
            egress.forwarding_turned_on = true;
            std::fs::write(&forwarding, "1").map_err(|e| NetError::Setup(format!("{forwarding}: {e}")))?;
        }
        Ok(egress)
    }

    /// Starts the watchdog: once a second, checks that the table is there; if it is not
    /// (someone flushed the host's ruleset), calls `cut` (which must take every sandbox
    /// off the network) and loads the table again.
    pub fn watch(&mut self, cut: impl Fn() + Send + 'static) -> std::io::Result<()> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (table, script) = (self.config.table.clone(), self.config.ruleset(&self.uplink, self.forwarding_turned_on));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("codeexec-egress".into()).spawn(move || {
            loop {
                let (lock, cv) = &*flag;
                let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (guard, _) =
                    cv.wait_timeout_while(guard, WATCH_EVERY, |s| !*s).unwrap_or_else(PoisonError::into_inner);
                if *guard {
                    return;
                }
                drop(guard);
                if nft_quiet(&format!("list table inet {table}\n")) {
                    continue;
                }
                tracing::error!(table, "the network table is gone (a firewall reload?): cutting every sandbox's link");
                cut();
                match nft(&script) {
                    Ok(()) => tracing::warn!(table, "network table loaded again"),
                    Err(e) => tracing::error!(table, error = %e, "could not load the network table again"),
                }
            }
        })?;
        self.watchdog = Some(Watchdog { stop, thread: Some(thread) });
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    /// The uplink in use.
    pub fn uplink(&self) -> &str {
        &self.uplink
    }

    /// Resolves an allow-list (names through the daemon's own resolver, IPv4 answers only)
    /// and checks every address; an entry naming a refused address is an error (which does
    /// not say the address: the host's DNS is not the caller's to read).
    pub fn resolve(&self, entries: &[AllowEntry]) -> Result<Vec<Permit>, String> {
        let mut out = Vec::new();
        for e in entries {
            let literal = e.host.parse::<Ipv4Addr>().ok();
            let addrs: Vec<Ipv4Addr> = match literal {
                Some(ip) => vec![ip],
                None => (e.host.as_str(), e.port)
                    .to_socket_addrs()
                    .map_err(|_| format!("allow-list entry {e}: the name does not resolve"))?
                    .filter_map(|a| match a {
                        SocketAddr::V4(v4) => Some(*v4.ip()),
                        SocketAddr::V6(_) => None,
                    })
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(format!("allow-list entry {e}: no IPv4 address"));
            }
            for addr in addrs {
                if let Some(why) = self.config.refuses(addr) {
                    return Err(match literal {
                        Some(_) => format!("allow-list entry {e}: {why}"),
                        None => {
                            format!("allow-list entry {e}: the name resolves to an address sandboxes may not reach")
                        }
                    });
                }
                out.push(Permit { addr, port: e.port, udp: e.udp });
            }
        }
        out.sort_by_key(|p| (p.addr, p.port, p.udp));
        out.dedup();
        Ok(out)
    }

    /// Lets the sandbox at `sandbox` (a link of the narrowed half) reach `permits` until
    /// the returned guard drops, or `ttl` passes.
    pub fn narrow(&self, sandbox: Ipv4Addr, permits: &[Permit], ttl: Duration) -> Result<Narrowed, NetError> {
        let t = &self.config.table;
        let secs = ttl.as_secs().max(1);
        let elements: Vec<String> = permits
            .iter()
            .map(|p| format!("{sandbox} . {} . {} . {}", p.addr, if p.udp { "udp" } else { "tcp" }, p.port))
            .collect();
        if !elements.is_empty() {
            let timed: Vec<String> = elements.iter().map(|e| format!("{e} timeout {secs}s")).collect();
            nft(&format!("add element inet {t} permits {{ {} }}\n", timed.join(", ")))?;
        }
        Ok(Narrowed { table: t.clone(), sandbox, elements })
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            *w.stop.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            w.stop.1.notify_all();
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // forwarding off before the table goes: no moment without either
        if self.forwarding_turned_on {
            let path = format!("/proc/sys/net/ipv4/conf/{}/forwarding", self.uplink);
            match std::fs::write(&path, "0") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.mark);
                }
                Err(e) => tracing::warn!(error = %e, path, "could not turn forwarding off again"),
            }
        }
        if let Err(e) = nft(&format!("delete table inet {}\n", self.config.table)) {
            tracing::warn!(error = %e, "could not remove the network table");
        }
        // all undone: the next daemon may start (the lock goes with the field, after this)
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A run's allow-list in the table; dropping it (once the run's processes are dead)
/// removes it.
#[derive(Debug)]
pub struct Narrowed {
    table: String,
    sandbox: Ipv4Addr,
    elements: Vec<String>,
}

impl Drop for Narrowed {
    fn drop(&mut self) {
        if self.elements.is_empty() {
            return;
        }
        let script = format!("delete element inet {} permits {{ {} }}\n", self.table, self.elements.join(", "));
        if let Err(e) = nft(&script) {
            // they time out on their own; until then the slot's next narrowed run has them too
            tracing::warn!(error = %e, sandbox = %self.sandbox, "could not remove a run's allow-list");
        }
    }
}

/// Whether `nft -f -` succeeds with `script` (its errors not wanted).
fn nft_quiet(script: &str) -> bool {
    nft(script).is_ok()
}

/// Runs `nft -f -` with `script` on its stdin.
fn nft(script: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("cannot run nft (install nftables): {e}")))?;
    let written = child.stdin.take().map(|mut i| i.write_all(script.as_bytes()));
    let out = child.wait_with_output().map_err(|e| NetError::Nft(e.to_string()))?;
    if let Some(Err(e)) = written {
        return Err(NetError::Nft(format!("writing the script: {e}")));
    }
    if !out.status.success() {
        return Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
}

/// The interface of the IPv4 default route with the lowest metric (`/proc/net/route`).
fn default_route_interface() -> Result<String, NetError> {
    let text =
        std::fs::read_to_string("/proc/net/route").map_err(|e| NetError::Setup(format!("/proc/net/route: {e}")))?;
    let mut best: Option<(u32, String)> = None;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            let metric = f[6].parse().unwrap_or(u32::MAX);
            if best.as_ref().is_none_or(|(m, _)| metric < *m) {
                best = Some((metric, f[0].to_owned()));
            }
        }
    }
    best.map(|(_, name)| name).ok_or_else(|| NetError::Setup("no IPv4 default route: set network.uplink".into()))
}

/// The resolver must not be the host (sandboxes never reach it), the links' subnet must
/// not overlap the host's addresses, and the uplink must exist.
fn check_host(config: &EgressConfig, uplink: &str) -> Result<(), NetError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| NetError::Setup(format!("getifaddrs: {e}")))?;
    let mut uplink_seen = false;
    for a in addrs {
        uplink_seen |= a.interface_name == uplink;
        let Some(ip) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip()) else { continue };
        if a.interface_name.starts_with(IF_PREFIX) {
            continue; // a link of ours (a run of another process, or a leftover)
        }
        if ip == config.resolver {
            return Err(NetError::Setup(format!(
                "network.resolver {ip} is an address of this host ({}); sandboxes never reach the host: \
                 name a resolver elsewhere",
                a.interface_name
            )));
        }
        if config.subnet.contains(IpAddr::V4(ip)) {
            return Err(NetError::Setup(format!(
                "network.subnet {} holds {ip}, an address of this host ({}): choose another",
                config.subnet, a.interface_name
            )));
        }
    }
    if !uplink_seen {
        return Err(NetError::Setup(format!("network.uplink {uplink:?}: no such interface")));
    }
    if config.resolver.is_loopback() || config.resolver.is_unspecified() {
        return Err(NetError::Setup(format!(
            "network.resolver {}: not a loopback or unspecified address",
            config.resolver
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
