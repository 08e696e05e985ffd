//! A throwaway network lab for the networking tests, so that no test sends a packet off
//! this machine: a "host" network namespace H (where the daemon runs) wired by a veth pair
//! to an "internet" namespace I that holds every server a sandbox might try to reach.
//!
//! ```text
//!  netns H ("host")                          netns I ("internet")
//!  lo 127.0.0.1   :7777 host-loopback        in0 198.51.100.1/24 (H's default gateway)
//!  up0 198.51.100.2/24 :7778 host-uplink  ── in0 +198.51.100.10  :80 lab-web  :8080 lab-web-8080
//!  default via 198.51.100.1                      +198.51.100.11  :80 lab-other
//!                                                +198.51.100.53  :53 DNS (UDP and TCP)
//!                                                +169.254.169.254 :80 lab-metadata
//!                                                +10.77.0.10     :80 lab-private
//!                                                +172.16.5.10    :80 lab-private-172
//! ```
//!
//! Every server records who reached it (`NetLab::hits`, `NetLab::dns_queries`), so a test
//! can assert that a forbidden server was never contacted. `Drop` stops the server threads,
//! then deletes both namespaces (and with them the veth pair). Root only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};

/// H's address on its uplink `up0` (what the daemon NATs sandbox traffic to).
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// I's end of the uplink, H's default gateway.
pub const GATEWAY_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// `lab-web` on :80, `lab-web-8080` on :8080; `web.lab.test`.
pub const WEB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// `lab-other` on :80; `other.lab.test`.
pub const OTHER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// The lab's DNS server on :53 (UDP and TCP).
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// `lab-metadata` on :80 (the cloud metadata address); `metadata.lab.test`.
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// `lab-private` on :80 (10/8).
pub const PRIVATE10_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
/// `lab-private-172` on :80 (172.16/12).
pub const PRIVATE172_ADDR: Ipv4Addr = Ipv4Addr::new(172, 16, 5, 10);
/// `host-loopback\n` on 127.0.0.1 in H.
pub const HOST_LOOPBACK_PORT: u16 = 7777;
/// `host-uplink\n` on `HOST_ADDR` in H.
pub const HOST_UPLINK_PORT: u16 = 7778;

/// The label `NetLab::hits` knows the DNS server's clients by (UDP and TCP alike).
pub const DNS_LABEL: &str = "dns";

/// The names the lab's DNS server answers (A records); anything else is NXDOMAIN.
const DNS_RECORDS: &[(&str, Ipv4Addr)] =
    &[("web.lab.test", WEB_ADDR), ("other.lab.test", OTHER_ADDR), ("metadata.lab.test", METADATA_ADDR)];

/// How long a connection may dawdle before its handler gives up on it; bounds `Drop`.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells one lab from another within the process.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// What a server answers on a TCP connection.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Reads the request head, answers `HTTP/1.0 200` with this body.
    Http(&'static str),
    /// Writes this line at once (no request expected).
    Line(&'static str),
    /// DNS over TCP (two-byte length prefix per message).
    Dns,
}

/// A listening socket and how its connections are answered and recorded.
#[derive(Debug)]
enum Server {
    Tcp { listener: TcpListener, label: &'static str, reply: Reply },
    Udp { socket: UdpSocket },
}

/// What the server threads share with the `NetLab`. The threads each hold an `Arc`, so
/// once it can no longer be upgraded (see `NetLab::probe`) every server thread has ended.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    hits: Mutex<HashMap<&'static str, Vec<SocketAddr>>>,
    dns: Mutex<Vec<String>>,
}

impl Shared {
    fn hit(&self, label: &'static str, peer: SocketAddr) {
        self.hits.lock().unwrap().entry(label).or_default().push(peer);
    }
}

/// Watches a lab after it is gone: see `NetLab::probe`.
#[derive(Debug, Clone)]
pub struct LabProbe(Weak<Shared>);

impl LabProbe {
    /// Whether every server thread of the lab has ended (and the lab itself is dropped).
    pub fn servers_stopped(&self) -> bool {
        self.0.upgrade().is_none()
    }
}

/// The two namespaces, their servers and what the servers saw. See the module docs.
#[derive(Debug)]
pub struct NetLab {
    host: String,
    inet: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl NetLab {
    /// Builds the lab and starts its servers; panics (after cleaning up what it made) if
    /// any step fails.
    pub fn new() -> NetLab {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut lab = NetLab {
            host: format!("ce-h-{pid}-{n}"),
            inet: format!("ce-i-{pid}-{n}"),
            shared: Arc::default(),
            threads: Vec::new(),
        };
        // `lab` is built first, so a panic below still runs `Drop` and removes what exists
        lab.wire();
        lab.start_servers();
        lab
    }

    /// The namespaces, the veth pair, addresses and routes.
    fn wire(&self) {
        let (h, i) = (self.host.as_str(), self.inet.as_str());
        for ns in [h, i] {
            // a leftover of an earlier process with this pid would make `add` fail
            if PathBuf::from("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // both ends are created inside the lab, so no name is ever taken in the caller's netns
        ip(&["-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "in0", "netns", i]);
        ip(&["-n", h, "addr", "add", &format!("{HOST_ADDR}/24"), "dev", "up0"]);
        ip(&["-n", i, "addr", "add", &format!("{GATEWAY_ADDR}/24"), "dev", "in0"]);
        for a in [WEB_ADDR, OTHER_ADDR, DNS_ADDR, METADATA_ADDR, PRIVATE10_ADDR, PRIVATE172_ADDR] {
            ip(&["-n", i, "addr", "add", &format!("{a}/32"), "dev", "in0"]);
        }
        ip(&["-n", h, "link", "set", "up0", "up"]);
        ip(&["-n", i, "link", "set", "in0", "up"]);
        // after the links are up: a gateway on a down link is refused
        ip(&["-n", h, "route", "add", "default", "via", &GATEWAY_ADDR.to_string(), "dev", "up0"]);
        // I's way back to 10/8 and 172.16/12 is not needed: the daemon NATs to HOST_ADDR,
        // which I reaches over its connected /24
    }

    /// One thread per namespace that binds that namespace's servers and serves them.
    fn start_servers(&mut self) {
        let host_servers: Vec<Bind> = vec![
            tcp((Ipv4Addr::LOCALHOST, HOST_LOOPBACK_PORT), "host-loopback", Reply::Line("host-loopback\n")),
            tcp((HOST_ADDR, HOST_UPLINK_PORT), "host-uplink", Reply::Line("host-uplink\n")),
        ];
        let inet_servers: Vec<Bind> = vec![
            tcp((WEB_ADDR, 80), "lab-web", Reply::Http("lab-web")),
            tcp((WEB_ADDR, 8080), "lab-web-8080", Reply::Http("lab-web-8080")),
            tcp((OTHER_ADDR, 80), "lab-other", Reply::Http("lab-other")),
            tcp((METADATA_ADDR, 80), "lab-metadata", Reply::Http("lab-metadata")),
            tcp((PRIVATE10_ADDR, 80), "lab-private", Reply::Http("lab-private")),
            tcp((PRIVATE172_ADDR, 80), "lab-private-172", Reply::Http("lab-private-172")),
            tcp((DNS_ADDR, 53), DNS_LABEL, Reply::Dns),
            udp((DNS_ADDR, 53)),
        ];
        for (ns, servers) in [(self.host.clone(), host_servers), (self.inet.clone(), inet_servers)] {
            let (ready_tx, ready_rx) = mpsc::channel();
            let shared = Arc::clone(&self.shared);
            let path = netns_path(&ns);
            let thread = std::thread::Builder::new()
                .name(format!("netlab-{ns}"))
                .spawn(move || {
                    // only this thread (and the handlers it spawns) moves into the lab
                    let bound = File::open(&path)
                        .map_err(|e| format!("open {}: {e}", path.display()))
                        .and_then(|f| setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}")))
                        .and_then(|()| servers.into_iter().map(|bind| bind()).collect::<Result<Vec<_>, _>>());
                    match bound {
                        Ok(servers) => {
                            ready_tx.send(Ok(())).unwrap();
                            serve(&servers, &shared);
                        }
                        Err(e) => ready_tx.send(Err(e)).unwrap(),
                    }
                })
                .expect("spawn a netlab thread");
            self.threads.push(thread);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("netlab: servers in {ns}: {e}"),
                Err(_) => panic!("netlab: the server thread for {ns} died"),
            }
        }
    }

    /// The name of the "host" namespace, where the daemon runs.
    pub fn host_ns(&self) -> &str {
        &self.host
    }

    /// `/run/netns/<host_ns>`, for `nsenter --net=` or `setns`.
    pub fn host_ns_path(&self) -> PathBuf {
        netns_path(&self.host)
    }

    /// The name of the "internet" namespace.
    pub fn inet_ns(&self) -> &str {
        &self.inet
    }

    /// The interface names in H (`lo`, `up0`, and whatever the daemon added), for
    /// leftover checks.
    pub fn links_in_host(&self) -> Vec<String> {
        let out = ip(&["-n", &self.host, "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .collect()
    }

    /// Runs `argv` inside H (same mounts and environment as the caller) and returns its
    /// output, whatever its exit status.
    pub fn run_in_host(&self, argv: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host_ns_path().display()))
            .arg("--")
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("nsenter {argv:?}: {e}"))
    }

    /// Who reached the server with this label, in order: a body (`lab-web`, `lab-metadata`,
    /// …), `host-loopback`, `host-uplink`, or `DNS_LABEL` for the DNS server.
    pub fn hits(&self, label: &str) -> Vec<SocketAddr> {
        self.shared.hits.lock().unwrap().get(label).cloned().unwrap_or_default()
    }

    /// Every name asked of the DNS server (UDP or TCP, any type), lower case without the
    /// final dot, in order. A resolver asking for A and AAAA shows a name twice.
    pub fn dns_queries(&self) -> Vec<String> {
        self.shared.dns.lock().unwrap().clone()
    }

    /// Something that outlives the lab and tells whether its server threads have ended.
    pub fn probe(&self) -> LabProbe {
        LabProbe(Arc::downgrade(&self.shared))
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // sockets and threads keep a netns alive after `ip netns del`: stop them first
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in [&self.inet, &self.host] {
            if netns_path(ns).exists() {
                // never panic here: a panic while unwinding aborts the whole test binary
                match Command::new("ip").args(["netns", "del", ns]).output() {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => eprintln!("netlab: ip netns del {ns}: {}", String::from_utf8_lossy(&o.stderr)),
                    Err(e) => eprintln!("netlab: ip netns del {ns}: {e}"),
                }
            }
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// `ip <args>`, panicking with its stderr when it fails.
fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(out.status.success(), "netlab: ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

/// Binds a server when called (inside the netns thread).
type Bind = Box<dyn FnOnce() -> Result<Server, String> + Send>;

fn udp(addr: (Ipv4Addr, u16)) -> Bind {
    Box::new(move || {
        let socket = UdpSocket::bind(addr).map_err(|e| format!("udp {}:{}: {e}", addr.0, addr.1))?;
        Ok(Server::Udp { socket })
    })
}

fn tcp(addr: (Ipv4Addr, u16), label: &'static str, reply: Reply) -> Bind {
    Box::new(move || {
        let listener = TcpListener::bind(addr).map_err(|e| format!("tcp {}:{}: {e}", addr.0, addr.1))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Server::Tcp { listener, label, reply })
    })
}

/// Polls the servers until the lab stops; each TCP connection gets a thread of its own,
/// all joined before this returns.
fn serve(servers: &[Server], shared: &Arc<Shared>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd<'_>> = servers
            .iter()
            .map(|s| match s {
                Server::Tcp { listener, .. } => PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                Server::Udp { socket } => PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            })
            .collect();
        // the timeout bounds how long `Drop` waits for the stop flag to be seen
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) == 0 {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for (server, _) in servers.iter().zip(ready).filter(|(_, r)| *r) {
            match server {
                Server::Tcp { listener, label, reply } => {
                    while let Ok((stream, peer)) = listener.accept() {
                        shared.hit(label, peer);
                        let (reply, shared) = (*reply, Arc::clone(shared));
                        handlers.push(std::thread::spawn(move || {
                            let _ = handle(stream, reply, &shared);
                        }));
                    }
                }
                Server::Udp { socket } => answer_udp(socket, shared),
            }
        }
        handlers.retain(|h| !h.is_finished());
    }
    for h in handlers {
        let _ = h.join();
    }
}

/// Answers one TCP connection, then closes it without a reset (reading what is left).
fn handle(mut stream: TcpStream, reply: Reply, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match reply {
        Reply::Line(line) => stream.write_all(line.as_bytes())?,
        Reply::Http(body) => {
            read_request_head(&mut stream)?;
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(body.as_bytes())?;
        }
        Reply::Dns => loop {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                break;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut query)?;
            let Some(answer) = dns_answer(&query, shared) else { break };
            let len = u16::try_from(answer.len()).unwrap_or(u16::MAX).to_be_bytes();
            stream.write_all(&[&len[..], &answer].concat())?;
        },
    }
    stream.shutdown(Shutdown::Write)?;
    // closing with unread input would send a RST, which can beat the reply to the client
    let mut sink = [0u8; 512];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

/// Reads until the blank line that ends an HTTP request head (or EOF, or 8 KiB).
fn read_request_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn answer_udp(socket: &UdpSocket, shared: &Shared) {
    let mut buf = [0u8; 1500];
    // non-blocking is not set on the UDP socket: poll said it is readable, so this returns
    if let Ok((n, peer)) = socket.recv_from(&mut buf) {
        shared.hit(DNS_LABEL, peer);
        if let Some(answer) = dns_answer(&buf[..n], shared) {
            let _ = socket.send_to(&answer, peer);
        }
    }
}

/// The answer to one DNS query: its question echoed, plus one A record for a known name
/// asked for A (or ANY); NXDOMAIN for an unknown name; `None` when it is not a query.
fn dns_answer(query: &[u8], shared: &Shared) -> Option<Vec<u8>> {
    const A: u16 = 1;
    const ANY: u16 = 255;
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // the question: labels up to the root, then type and class
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression has no place in a question
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question = query.get(12..pos + 4)?;
    let name = labels.join(".");
    shared.dns.lock().unwrap().push(name.clone());

    let opcode = query[2] & 0x78;
    let known = DNS_RECORDS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    let rcode = match (opcode, known) {
        (0, Some(_)) => 0,
        (0, None) => 3, // NXDOMAIN
        _ => 4,         // NOTIMP
    };
    let answer = known.filter(|_| opcode == 0 && (qtype == A || qtype == ANY));

    let mut out = Vec::with_capacity(question.len() + 28);
    out.extend_from_slice(&query[0..2]); // id
    out.push(0x80 | opcode | 0x04 | (query[2] & 0x01)); // QR, opcode, AA, RD
    out.push(0x80 | rcode); // RA, rcode
    out.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(addr) = answer {
        out.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]); // A, IN, TTL 60, 4 bytes
        out.extend_from_slice(&addr.octets());
    }
    Some(out)
}
