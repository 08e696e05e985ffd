//! Network runs through the real daemon, inside a throwaway lab (tests/common/netlab.rs):
//! the daemon lives in a "host" network namespace whose only way out is a "internet"
//! namespace with web, DNS, "metadata" and "private" servers that record who called, so a
//! test proves a refusal by the server never having been reached. No packet leaves this
//! machine. Root only (see `require_privileged!`).
//!
//! Shown: with network off the sandbox has only `lo` and reaches nothing; with it on it
//! reaches the lab by name through the configured resolver; the host's loopback, the host's
//! own addresses and the daemon's TCP port stay unreachable; metadata and private addresses
//! are refused unless the operator allows them; an allow-list narrows a run to its
//! entries; a network request without permission is refused; the network runs' cap holds;
//! nothing of a run's plumbing is left behind.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use codeexec::client::Endpoint;
use hyper::StatusCode;
use serde_json::{Value, json};

use common::daemon::{Daemon, post, runtime};
use common::netlab::{self, NetLab};

const KEY: &str = "lab-key-0123456789abcdef";

/// A daemon in `lab`'s host namespace with network runs on (the lab's "internet" is a
/// documentation range, so the operator allows it, as it would its own), its TCP port on
/// every address of the host, no warm sandboxes, and `extra` settings.
fn daemon(lab: &NetLab, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("CODEEXEC_NETWORK_ENABLED", "true"),
        ("CODEEXEC_NETWORK_RESOLVER", "198.51.100.53"),
        ("CODEEXEC_NETWORK_ALLOW_NETWORKS", "198.51.100.0/24"),
        ("CODEEXEC_SERVER_TCP", "0.0.0.0:0"),
        ("CODEEXEC_SERVER_API_KEYS", KEY),
        // no warm sandboxes: every sandbox process is a run's, so none may outlive it
        ("CODEEXEC_RUNS_WARM", "0"),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    Daemon::start_in_netns(&lab.host_ns_path(), &env)
}

/// A Python program that tries each `host:port` (TCP, 1.5 s each; the host `GATEWAY` is
/// its default route's gateway, the host's end of its link) and prints one line per try:
/// `host:port ok <first line of the answer>` or `host:port fail <error>`; then the
/// interfaces it has and its resolv.conf's nameserver lines.
fn prober(targets: &[String]) -> String {
    format!(
        r#"
import socket, struct
def gateway():
    for l in open("/proc/net/route").read().splitlines()[1:]:
        f = l.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
for t in {targets:?}:
    host, port = t.rsplit(":", 1)
    if host == "GATEWAY":
        host = gateway()
    try:
        s = socket.create_connection((host, int(port)), timeout=1.5)
        s.settimeout(1.5)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip().splitlines()
        print(t, "ok", body[0] if body else "")
    except Exception as e:
        print(t, "fail", type(e).__name__, e)
ifs = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
v6 = [l.split()[-1] for l in open("/proc/net/if_inet6")] if __import__("os").path.exists("/proc/net/if_inet6") else []
print("ipv6", ",".join(sorted(v6)))
print("interfaces", ",".join(ifs))
print("resolv", ",".join(l.strip() for l in open("/etc/resolv.conf") if l.startswith("nameserver")))
"#
    )
}

/// Runs the prober on `endpoint` with `network` (`null` for none) and returns its lines.
async fn probe(endpoint: &Endpoint, network: Value, targets: &[String]) -> Vec<String> {
    let mut body = json!({"language": "python", "code": prober(targets), "limits": {"wall_time_ms": 60_000, "cpu_time_ms": 10_000}});
    if !network.is_null() {
        body["network"] = network;
    }
    let r = post(endpoint, None, &body).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok", "{v:#}");
    v["stdout"].as_str().unwrap().lines().map(str::to_owned).collect()
}

/// The line of `lines` about `target`.
fn line<'a>(lines: &'a [String], target: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{target} ")))
        .unwrap_or_else(|| panic!("no line for {target}: {lines:#?}"))
}

fn reached(lines: &[String], target: &str, body: &str) {
    let l = line(lines, target);
    assert_eq!(l, format!("{target} ok {body}"), "{lines:#?}");
}

fn refused(lines: &[String], target: &str) {
    let l = line(lines, target);
    assert!(l.starts_with(&format!("{target} fail")), "{target} must be unreachable: {lines:#?}");
}

fn t(addr: impl std::fmt::Display, port: u16) -> String {
    format!("{addr}:{port}")
}

/// Everything the daemon's runs made is gone: no `ceh*` link in the host namespace, no
/// sandbox process of this daemon (with its network namespace), no allow-list element in
/// the table.
fn assert_no_leftovers(lab: &NetLab, d: &Daemon) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let links: Vec<String> = lab.links_in_host().into_iter().filter(|l| l.starts_with("ceh")).collect();
        let ours = common::descendants(d.child.id());
        let procs: Vec<_> = common::sandbox_processes().into_iter().filter(|(p, _)| ours.contains(p)).collect();
        if links.is_empty() && procs.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left behind: links {links:?}, processes {procs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = lab.run_in_host(&["nft", "list", "set", "inet", "codeexec", "permits"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("elements"), "allow-list elements left: {text}");
}

#[test]
fn without_network_a_sandbox_has_only_loopback_and_reaches_nothing() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[]);
    let lines = runtime().block_on(probe(&d.unix(), Value::Null, &[t(netlab::WEB_ADDR, 80)]));
    assert_eq!(line(&lines, "interfaces"), "interfaces lo");
    refused(&lines, &t(netlab::WEB_ADDR, 80));
    assert!(lab.hits("lab-web").is_empty());
    // `false` is the same
    let lines = runtime().block_on(probe(&d.unix(), json!(false), &[t(netlab::WEB_ADDR, 80)]));
    assert_eq!(line(&lines, "interfaces"), "interfaces lo");
}

#[test]
fn with_network_a_sandbox_reaches_the_lab_by_name_through_the_resolver() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[]);
    let targets = [t("web.lab.test", 80), t(netlab::OTHER_ADDR, 80), t(netlab::WEB_ADDR, 8080)];
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &targets));
    assert_eq!(line(&lines, "interfaces"), "interfaces eth0,lo");
    assert_eq!(line(&lines, "resolv"), "resolv nameserver 198.51.100.53");
    assert!(!line(&lines, "ipv6").contains("eth0"), "no IPv6 address on the link: {lines:#?}");
    reached(&lines, "web.lab.test:80", "lab-web");
    reached(&lines, &t(netlab::OTHER_ADDR, 80), "lab-other");
    reached(&lines, &t(netlab::WEB_ADDR, 8080), "lab-web-8080");
    assert!(lab.dns_queries().iter().any(|q| q == "web.lab.test"), "{:?}", lab.dns_queries());
    // masqueraded: the lab sees the host's address, never a sandbox's
    let hits = lab.hits("lab-web");
    assert!(!hits.is_empty() && hits.iter().all(|a| a.ip() == std::net::IpAddr::V4(netlab::HOST_ADDR)), "{hits:?}");
    assert_no_leftovers(&lab, &d);
    drop(d);
    assert_no_leftovers_after_exit(&lab);
}

/// After the daemon is gone, its table is gone too.
fn assert_no_leftovers_after_exit(lab: &NetLab) {
    let out = lab.run_in_host(&["nft", "list", "tables"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("codeexec"), "the table outlived the daemon");
    assert!(lab.links_in_host().iter().all(|l| !l.starts_with("ceh")), "{:?}", lab.links_in_host());
}

#[test]
fn the_host_metadata_and_private_addresses_stay_unreachable() {
    require_privileged!();
    let lab = NetLab::new();
    let mut d = daemon(&lab, &[]);
    let tcp = d.wait_log(Duration::from_secs(10), |l| l["message"] == "listening" && l["listener"] == "tcp");
    let port: u16 = tcp["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let gateway = "GATEWAY";
    let targets = [
        // the sandbox's own loopback (the host's is out of reach by routing: this only shows
        // that nothing of the host answers there)
        t("127.0.0.1", netlab::HOST_LOOPBACK_PORT),
        t(netlab::HOST_ADDR, netlab::HOST_UPLINK_PORT),
        t(netlab::HOST_ADDR, port),
        t(gateway, port),
        t(gateway, netlab::HOST_UPLINK_PORT),
        t(netlab::METADATA_ADDR, 80),
        t("metadata.lab.test", 80),
        t(netlab::PRIVATE10_ADDR, 80),
        t(netlab::PRIVATE172_ADDR, 80),
        t(netlab::WEB_ADDR, 80),
    ];
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &targets));
    for target in &targets[..targets.len() - 1] {
        refused(&lines, target);
    }
    reached(&lines, &t(netlab::WEB_ADDR, 80), "lab-web");
    for label in ["host-loopback", "host-uplink", "lab-metadata", "lab-private", "lab-private-172"] {
        assert!(lab.hits(label).is_empty(), "{label} was reached: {:?}", lab.hits(label));
    }
    // the daemon's API saw no request from a sandbox
    let log = d.log.0.lock().unwrap().clone();
    assert!(
        !log.iter().any(|l| l["message"] == "request" && l["peer"].as_str().is_some_and(|p| p.starts_with("10.200."))),
        "{log:#?}"
    );
    assert_no_leftovers(&lab, &d);
}

#[test]
fn private_ranges_open_only_when_the_operator_lists_them() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[("CODEEXEC_NETWORK_ALLOW_NETWORKS", "198.51.100.0/24,10.77.0.0/24")]);
    let targets = [
        t(netlab::PRIVATE10_ADDR, 80),
        t(netlab::PRIVATE172_ADDR, 80),
        t(netlab::METADATA_ADDR, 80),
        t(netlab::HOST_ADDR, netlab::HOST_UPLINK_PORT),
    ];
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &targets));
    reached(&lines, &targets[0], "lab-private");
    refused(&lines, &targets[1]);
    refused(&lines, &targets[2]);
    refused(&lines, &targets[3]); // the host's own address, although in an allowed network
    assert!(lab.hits("lab-metadata").is_empty() && lab.hits("host-uplink").is_empty());
}

#[test]
fn an_allow_list_narrows_a_run_to_its_entries() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[]);
    let targets = [t("web.lab.test", 80), t(netlab::WEB_ADDR, 8080), t(netlab::OTHER_ADDR, 80)];
    let lines = runtime().block_on(probe(&d.unix(), json!({"allow": ["198.51.100.10:80"]}), &targets));
    reached(&lines, "web.lab.test:80", "lab-web"); // the resolver is always allowed
    refused(&lines, &targets[1]);
    refused(&lines, &targets[2]);
    assert!(lab.hits("lab-web-8080").is_empty() && lab.hits("lab-other").is_empty());
    // the next run without a list is not narrowed
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &targets[1..]));
    reached(&lines, &targets[1], "lab-web-8080");
    reached(&lines, &targets[2], "lab-other");
    // names are resolved by the daemon and checked like addresses
    let r = runtime().block_on(post(
        &d.unix(),
        None,
        &json!({"language": "python", "code": "print(1)", "network": {"allow": ["localhost:80"]}}),
    ));
    let v = r.json();
    assert_ne!(v["status"], "ok", "{v}");
    // without saying which address: the host's DNS answers are not the caller's to read
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("resolves to an address sandboxes may not reach"), "{v}");
    assert!(!v.to_string().contains("127.0.0.1"), "{v}");
    assert_no_leftovers(&lab, &d);
}

#[test]
fn network_runs_are_refused_where_not_enabled_and_capped_where_they_are() {
    require_privileged!();
    let plain = Daemon::start(&[]);
    let r = runtime().block_on(post(&plain.unix(), None, &json!({"language": "python", "code": "1", "network": true})));
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    drop(plain);

    let lab = NetLab::new();
    let d = daemon(&lab, &[("CODEEXEC_NETWORK_MAX_CONCURRENT", "1"), ("CODEEXEC_RUNS_CONCURRENCY", "2")]);
    let code = "import time\na = time.time()\ntime.sleep(1.0)\nprint(a, time.time())";
    let body = json!({"language": "python", "code": code, "network": true, "limits": {"wall_time_ms": 60_000}});
    let spans: Vec<(f64, f64)> = runtime().block_on(async {
        let runs = (0..2).map(|_| {
            let (e, b) = (d.unix(), body.clone());
            tokio::spawn(async move { post(&e, None, &b).await.json() })
        });
        let mut out = Vec::new();
        for r in runs {
            let v = r.await.unwrap();
            assert_eq!(v["status"], "ok", "{v}");
            let nums: Vec<f64> = v["stdout"].as_str().unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
            out.push((nums[0], nums[1]));
        }
        out
    });
    let (a, b) = (spans[0], spans[1]);
    assert!(a.1 <= b.0 || b.1 <= a.0, "two network runs overlapped with network.max_concurrent = 1: {spans:?}");
    assert_no_leftovers(&lab, &d);
}

#[test]
fn warm_sandboxes_serve_plain_runs_and_network_runs_get_their_own() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[("CODEEXEC_RUNS_WARM", "2")]);
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &[t(netlab::WEB_ADDR, 80)]));
    reached(&lines, &t(netlab::WEB_ADDR, 80), "lab-web");
    let lines = runtime().block_on(probe(&d.unix(), Value::Null, &[t(netlab::WEB_ADDR, 80)]));
    assert_eq!(line(&lines, "interfaces"), "interfaces lo");
    refused(&lines, &t(netlab::WEB_ADDR, 80));
}

#[test]
fn sandboxes_never_reach_each_other() {
    require_privileged!();
    let lab = NetLab::new();
    let d = daemon(&lab, &[("CODEEXEC_RUNS_CONCURRENCY", "2")]);
    // A listens on its eth0 address until B is done; B, started once A listens (A reaches the
    // lab's web server then, which records it), tries every sandbox address of the subnet
    let listener = "import socket, urllib.request\ns = socket.socket()\ns.bind(('0.0.0.0', 5555))\ns.listen(64)\n\
                    s.settimeout(20)\nurllib.request.urlopen('http://198.51.100.10/', timeout=5).read()\n\
                    try:\n    c, a = s.accept()\n    print('accepted', a)\nexcept OSError as e:\n    print('nobody', type(e).__name__)";
    // in batches: a sandbox may open 1024 descriptors
    let scanner = r#"
import socket, selectors, time
addrs = []
for half in (0, 128):
    for slot in range(1024):
        n = slot * 4 + 2
        addrs.append("10.200.%d.%d" % (half + n // 256, n % 256))
tried, connected = 0, []
for i in range(0, len(addrs), 512):
    sel = selectors.DefaultSelector()
    socks = []
    for addr in addrs[i:i + 512]:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((addr, 5555))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, addr)
        tried += 1
    end = time.time() + 1.5
    while time.time() < end:
        for key, _ in sel.select(timeout=0.2):
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(key.data)
            sel.unregister(key.fileobj)
    for s in socks:
        s.close()
print("tried", tried, "connected", connected)
"#;
    let limits = json!({"wall_time_ms": 60_000, "cpu_time_ms": 20_000, "processes": 64});
    let (a, b) = runtime().block_on(async {
        let e = d.unix();
        let body = json!({"language": "python", "code": listener, "network": true, "limits": limits});
        let a = tokio::spawn(async move { post(&e, None, &body).await.json() });
        // B only once A listens: A has called the lab by then
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while lab.hits("lab-web").is_empty() {
            assert!(std::time::Instant::now() < deadline, "A never reached the lab");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = json!({"language": "python", "code": scanner, "network": true, "limits": limits});
        let b = post(&d.unix(), None, &body).await.json();
        (a.await.unwrap(), b)
    });
    assert_eq!(b["status"], "ok", "{b:#}");
    assert_eq!(b["stdout"].as_str().unwrap().trim(), "tried 2048 connected []", "{b:#}");
    assert_eq!(a["status"], "ok", "{a:#}");
    assert!(a["stdout"].as_str().unwrap().starts_with("nobody"), "{a:#}");
    assert_no_leftovers(&lab, &d);
}

#[test]
fn a_lost_table_cuts_every_link_and_comes_back() {
    require_privileged!();
    let lab = NetLab::new();
    let mut d = daemon(&lab, &[]);
    // the run waits until its link is gone (or 30 s), then tries the lab
    let code = "import time, socket\nend = time.time() + 30\n\
                while time.time() < end and 'eth0' in open('/proc/net/dev').read():\n    time.sleep(0.05)\n\
                print('eth0' in open('/proc/net/dev').read())\ntry:\n    socket.create_connection(('198.51.100.10', 80), timeout=2)\n    print('reached')\n\
                except OSError as e:\n    print(type(e).__name__)";
    let body = json!({"language": "python", "code": code, "network": true, "limits": {"wall_time_ms": 60_000, "cpu_time_ms": 20_000}});
    let v = runtime().block_on(async {
        let e = d.unix();
        let run = tokio::spawn(async move { post(&e, None, &body).await.json() });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lab.links_in_host().iter().any(|l| l.starts_with("ceh")) {
            assert!(std::time::Instant::now() < deadline, "the run never got its link");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // a host firewall reload that flushes everything
        let out = lab.run_in_host(&["nft", "flush", "ruleset"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        run.await.unwrap()
    });
    assert_eq!(v["status"], "ok", "{v:#}");
    assert_eq!(v["stdout"], "False\nOSError\n", "the link was cut: {v:#}");
    d.wait_log(Duration::from_secs(10), |l| l["message"].as_str().is_some_and(|m| m.contains("network table is gone")));
    d.wait_log(Duration::from_secs(10), |l| l["message"] == "network table loaded again");
    let out = lab.run_in_host(&["nft", "list", "table", "inet", "codeexec"]);
    assert!(out.status.success(), "the table is back");
    // and network runs work again
    let lines = runtime().block_on(probe(&d.unix(), json!(true), &[t(netlab::WEB_ADDR, 80)]));
    reached(&lines, &t(netlab::WEB_ADDR, 80), "lab-web");
}

#[test]
fn one_network_daemon_per_network_namespace() {
    require_privileged!();
    let lab = NetLab::new();
    let _first = daemon(&lab, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("timeout")
        .args(["60", "nsenter", &format!("--net={}", lab.host_ns_path().display()), "--", common::bin(), "serve"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CODEEXEC_SERVER_UNIX_SOCKET", dir.path().join("sock"))
        .env("CODEEXEC_NETWORK_ENABLED", "true")
        .env("CODEEXEC_NETWORK_RESOLVER", "198.51.100.53")
        .env("CODEEXEC_COMPILE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another codeexec process has network runs enabled in this network namespace"), "{err}");
    // the first one's table is untouched
    let out = lab.run_in_host(&["nft", "list", "table", "inet", "codeexec"]);
    assert!(out.status.success());
}
