//! A lab for a fleet of daemons on this one machine: a "store" network namespace S with a
//! bridge, Redis and a callback receiver, and host namespaces h1..hN wired to it, one
//! daemon each (its own state directory, cgroup parent, uid range and network subnet, as
//! the README tells operators). Addresses are TEST-NET-1, only inside namespaces the lab
//! made; no packet leaves the machine.
//!
//! ```text
//!  netns S: br0 192.0.2.1/24   Redis :6379 (and a Unix socket for the test itself)
//!           :8080 callback receiver (records X-Codeexec-Job)
//!   ├── veth ── netns h1: up0 192.0.2.11/24, default via 192.0.2.1
//!   ├── veth ── netns h2: up0 192.0.2.12/24
//!   └── …
//! ```
//!
//! `Drop` stops Redis and the receiver, then deletes the namespaces.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use codeexec::cgroup::Hierarchy;
use nix::sched::{CloneFlags, setns};

use super::daemon::Daemon;

/// Redis's address in S.
pub const REDIS_ADDR: &str = "192.0.2.1";
/// The receiver's callback URL prefix.
pub const HOOK: &str = "http://192.0.2.1:8080/hook";

/// The namespaces, Redis and the receiver.
pub struct FleetLab {
    pub tag: String,
    store: String,
    hosts: Vec<String>,
    pub dir: tempfile::TempDir,
    redis: Option<Child>,
    aof_always: bool,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
    /// Job ids the receiver got a callback for, with the headers' idempotency keys.
    pub callbacks: Arc<Mutex<Vec<(String, String)>>>,
}

impl FleetLab {
    /// `hosts` host namespaces wired to the store namespace, Redis (with the AOF, fsynced
    /// every write if `aof_always`) and the receiver started.
    pub fn new(hosts: usize, aof_always: bool) -> FleetLab {
        let tag = format!("cf{}", std::process::id() % 100_000);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{tag}-{n}");
        let mut lab = FleetLab {
            store: format!("{tag}-s"),
            hosts: (1..=hosts).map(|i| format!("{tag}-h{i}")).collect(),
            tag,
            dir: tempfile::tempdir().unwrap(),
            redis: None,
            aof_always,
            stop: Arc::default(),
            receiver: None,
            callbacks: Arc::default(),
        };
        lab.wire();
        lab.start_redis();
        lab.start_receiver();
        lab
    }

    fn wire(&self) {
        let s = self.store.as_str();
        for ns in std::iter::once(s).chain(self.hosts.iter().map(String::as_str)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", s, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", s, "addr", "add", "192.0.2.1/24", "dev", "br0"]);
        ip(&["-n", s, "link", "set", "br0", "up"]);
        for (i, h) in self.hosts.iter().enumerate() {
            let port = format!("p{}", i + 1);
            ip(&["-n", h, "link", "add", "up0", "type", "veth", "peer", "name", &port, "netns", s]);
            ip(&["-n", h, "addr", "add", &format!("192.0.2.{}/24", 11 + i), "dev", "up0"]);
            ip(&["-n", h, "link", "set", "up0", "up"]);
            ip(&["-n", s, "link", "set", &port, "master", "br0"]);
            ip(&["-n", s, "link", "set", &port, "up"]);
            ip(&["-n", h, "route", "add", "default", "via", "192.0.2.1", "dev", "up0"]);
        }
    }

    /// The Unix socket the test itself talks to Redis on.
    pub fn redis_socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Starts Redis in S (again, after `kill_redis`: the same directory and AOF).
    pub fn start_redis(&mut self) {
        let _ = std::fs::remove_file(self.redis_socket());
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(&self.store).display()))
            .args(["--", "redis-server", "--bind", REDIS_ADDR, "--port", "6379", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", if self.aof_always { "always" } else { "everysec" }])
            .arg("--unixsocket")
            .arg(self.redis_socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: apt-get install redis-server (.ci/run does)");
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.redis_socket()).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills Redis outright (SIGKILL): what it acknowledged is in its AOF.
    pub fn kill_redis(&mut self) {
        if let Some(mut c) = self.redis.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A command to Redis, through its Unix socket (`redis-cli`'s output).
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").arg("-s").arg(self.redis_socket()).args(args).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn host_ns_path(&self, i: usize) -> PathBuf {
        netns_path(&self.hosts[i])
    }

    /// The interfaces in host namespace `i`.
    pub fn links(&self, i: usize) -> Vec<String> {
        let out = ip(&["-n", &self.hosts[i], "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect()
    }

    /// The cgroup parent of host `i`'s daemon.
    pub fn cgroup_parent(&self, i: usize) -> String {
        format!("codeexec-{}-h{}", self.tag, i + 1)
    }

    /// The state directory of host `i`'s daemon (it survives the daemon).
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("state-h{}", i + 1))
    }

    /// What makes host `i`'s daemon a member of the fleet, apart from its neighbours on
    /// the host (network runs are off unless `extra` turns them on); `extra` on top.
    pub fn daemon_env(&self, i: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("CODEEXEC_QUEUE_REDIS", format!("redis://{REDIS_ADDR}:6379")),
            ("CODEEXEC_QUEUE_CONSUMER", format!("h{}", i + 1)),
            ("CODEEXEC_QUEUE_PREFIX", format!("{}:", self.tag)),
            ("CODEEXEC_QUEUE_LEASE_MS", "3000".into()),
            ("CODEEXEC_RUNS_CONCURRENCY", "2".into()),
            ("CODEEXEC_RUNS_STATE_DIR", self.state_dir(i).display().to_string()),
            ("CODEEXEC_RUNS_CGROUP_PARENT", self.cgroup_parent(i)),
            ("CODEEXEC_RUNS_UID_BASE", (2_001_000_000 + 2048 * i).to_string()),
            ("CODEEXEC_NETWORK_RESOLVER", "192.0.2.53".into()),
            ("CODEEXEC_NETWORK_SUBNET", format!("10.{}.0.0/16", 201 + i)),
            ("CODEEXEC_CALLBACKS_ALLOW_NETWORKS", "192.0.2.1/32".into()),
            ("CODEEXEC_CALLBACKS_BACKOFF_MS", "100".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// Starts host `i`'s daemon.
    pub fn daemon(&self, i: usize, extra: &[(&str, &str)]) -> Daemon {
        let env = self.daemon_env(i, extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Daemon::start_in_netns(&self.host_ns_path(i), &env)
    }

    /// An HTTP server in S on :8080 that answers 200 and records each request's job id.
    fn start_receiver(&mut self) {
        let (stop, seen, path) = (Arc::clone(&self.stop), Arc::clone(&self.callbacks), netns_path(&self.store));
        let (tx, rx) = std::sync::mpsc::channel();
        self.receiver = Some(std::thread::spawn(move || {
            let f = File::open(&path).unwrap();
            setns(f.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind((REDIS_ADDR, 8080)).unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(h) = read_headers(stream) {
                            let get = |k: &str| h.get(k).cloned().unwrap_or_default();
                            seen.lock().unwrap().push((get("x-codeexec-job"), get("idempotency-key")));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
        rx.recv_timeout(Duration::from_secs(10)).expect("the receiver started");
    }

    /// How many callbacks each job got.
    pub fn callback_counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (id, key) in self.callbacks.lock().unwrap().iter() {
            assert_eq!(id, key, "a callback's Idempotency-Key is its job id");
            *out.entry(id.clone()).or_default() += 1;
        }
        out
    }
}

/// Reads a request's head and body, answers 200, returns the headers (lower-case names).
fn read_headers(mut stream: std::net::TcpStream) -> Option<HashMap<String, String>> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    Some(headers)
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for FleetLab {
    fn drop(&mut self) {
        self.kill_redis();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.receiver.take() {
            let _ = t.join();
        }
        for ns in self.hosts.iter().chain(std::iter::once(&self.store)) {
            // a network daemon killed in it left its marks, which only a successor in the
            // same namespace would clear: the namespace goes, so do they
            if let Ok(meta) = std::fs::metadata(netns_path(ns)) {
                use std::os::unix::fs::MetadataExt;
                for end in ["lock", "forwarding"] {
                    let _ = std::fs::remove_file(format!("/run/codeexec-network-{}.{end}", meta.ino()));
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        // what daemons killed by a test left (their daemons are gone by now)
        for i in 0..self.hosts.len() {
            let Ok(h) = Hierarchy::detect(Path::new("/proc/self/mountinfo"), &self.cgroup_parent(i)) else { continue };
            for dir in h.leftovers() {
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    let _ = h.remove_leftover(name);
                }
            }
            h.remove_parents();
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn ip(args: &[&str]) -> std::process::Output {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(out.status.success(), "fleet lab: ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}
