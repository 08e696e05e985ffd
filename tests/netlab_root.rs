//! The network lab the networking tests run in (`common::netlab`): its servers answer from
//! inside the "host" namespace, its DNS server resolves the lab's names, every contact is
//! recorded, two labs live side by side, a daemon starts inside one, and nothing is left
//! behind. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::daemon::{Daemon, get, runtime};
use common::netlab::{self, NetLab};

/// `GET url` from inside H with curl (or Python where there is no curl): the body, or the
/// error output when the request failed.
fn http_get(lab: &NetLab, url: &str) -> Result<String, String> {
    let curl = Command::new("which").arg("curl").output().is_ok_and(|o| o.status.success());
    let out = if curl {
        lab.run_in_host(&["curl", "-sS", "--noproxy", "*", "--max-time", "5", url])
    } else {
        let code = "import sys, urllib.request as u\n\
                    o = u.build_opener(u.ProxyHandler({}))\n\
                    sys.stdout.write(o.open(sys.argv[1], timeout=5).read().decode())";
        lab.run_in_host(&["python3", "-c", code, url])
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A raw TCP read from inside H: what `addr:port` sends before it closes.
fn tcp_read(lab: &NetLab, addr: Ipv4Addr, port: u16) -> String {
    let code = "import socket, sys\n\
                s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
                d = b''\n\
                while True:\n    b = s.recv(100)\n    if not b: break\n    d += b\n\
                sys.stdout.write(d.decode())";
    let out = lab.run_in_host(&["python3", "-c", code, &addr.to_string(), &port.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks the lab's DNS server for the A record of `name` from inside H, over UDP (or TCP):
/// prints `rcode` then the addresses, one a line.
fn dns_query(lab: &NetLab, name: &str, over_tcp: bool) -> Vec<String> {
    let code = "import socket, struct, sys\n\
                name, tcp = sys.argv[1], sys.argv[2] == 'tcp'\n\
                q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)\n\
                q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\\0'\n\
                q += struct.pack('>HH', 1, 1)\n\
                if tcp:\n\
                \x20   s = socket.create_connection(('198.51.100.53', 53), timeout=5)\n\
                \x20   s.sendall(struct.pack('>H', len(q)) + q)\n\
                \x20   n = struct.unpack('>H', s.recv(2))[0]\n\
                \x20   r = b''\n\
                \x20   while len(r) < n: r += s.recv(n - len(r))\n\
                else:\n\
                \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                \x20   s.settimeout(5)\n\
                \x20   s.sendto(q, ('198.51.100.53', 53))\n\
                \x20   r = s.recv(1500)\n\
                assert r[:2] == q[:2] and r[2] & 0x80, r\n\
                print(r[3] & 0x0f)\n\
                an = struct.unpack('>H', r[6:8])[0]\n\
                p = len(q)\n\
                for _ in range(an):\n\
                \x20   t, c, ttl, l = struct.unpack('>HHIH', r[p + 2:p + 12])\n\
                \x20   print(socket.inet_ntoa(r[p + 12:p + 12 + l]))\n\
                \x20   p += 12 + l";
    let out = lab.run_in_host(&["python3", "-c", code, name, if over_tcp { "tcp" } else { "udp" }]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn netns_names() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn servers_answer_from_the_host_namespace_and_are_recorded() {
    require_privileged!();
    let lab = NetLab::new();
    let host = IpAddr::V4(netlab::HOST_ADDR);

    assert_eq!(http_get(&lab, "http://198.51.100.10/").unwrap(), "lab-web");
    assert_eq!(http_get(&lab, "http://198.51.100.10:8080/x?y").unwrap(), "lab-web-8080");
    assert_eq!(http_get(&lab, "http://198.51.100.11/").unwrap(), "lab-other");
    assert_eq!(http_get(&lab, "http://10.77.0.10/").unwrap(), "lab-private");
    assert_eq!(http_get(&lab, "http://172.16.5.10/").unwrap(), "lab-private-172");
    assert_eq!(tcp_read(&lab, Ipv4Addr::LOCALHOST, netlab::HOST_LOOPBACK_PORT), "host-loopback\n");
    assert_eq!(tcp_read(&lab, netlab::HOST_ADDR, netlab::HOST_UPLINK_PORT), "host-uplink\n");

    let web = lab.hits("lab-web");
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(web[0].ip(), host, "H reaches I from its uplink address");
    assert_eq!(lab.hits("lab-web-8080").len(), 1);
    assert_eq!(lab.hits("host-loopback").len(), 1);
    assert!(lab.hits("lab-metadata").is_empty(), "nothing asked the metadata server");
    // not contacted yet, then contacted: a test can tell the two apart
    assert_eq!(http_get(&lab, "http://169.254.169.254/latest/meta-data/").unwrap(), "lab-metadata");
    assert_eq!(lab.hits("lab-metadata").len(), 1);

    // nothing answers outside the lab's addresses, and the attempt goes nowhere else
    assert!(http_get(&lab, "http://198.51.100.12/").is_err());

    // the lab's addresses exist only inside the lab
    let here = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&here.stdout).contains("198.51.100."), "the lab leaked into the test's netns");
}

#[test]
fn dns_answers_the_lab_names_over_udp_and_tcp() {
    require_privileged!();
    let lab = NetLab::new();
    assert!(lab.dns_queries().is_empty());
    assert_eq!(dns_query(&lab, "web.lab.test", false), ["0", "198.51.100.10"]);
    assert_eq!(dns_query(&lab, "OTHER.lab.test", false), ["0", "198.51.100.11"]);
    assert_eq!(dns_query(&lab, "metadata.lab.test", true), ["0", "169.254.169.254"]);
    assert_eq!(dns_query(&lab, "example.com", false), ["3"], "NXDOMAIN");
    assert_eq!(lab.dns_queries(), ["web.lab.test", "other.lab.test", "metadata.lab.test", "example.com"]);
    let peers = lab.hits(netlab::DNS_LABEL);
    assert_eq!(peers.len(), 4, "{peers:?}");
    assert!(peers.iter().all(|p| p.ip() == IpAddr::V4(netlab::HOST_ADDR)), "{peers:?}");
}

#[test]
fn two_labs_at_once_are_apart() {
    require_privileged!();
    let (a, b) = (NetLab::new(), NetLab::new());
    assert_ne!(a.host_ns(), b.host_ns());
    assert_ne!(a.inet_ns(), b.inet_ns());
    assert_eq!(http_get(&a, "http://198.51.100.10/").unwrap(), "lab-web");
    assert_eq!(http_get(&b, "http://198.51.100.10/").unwrap(), "lab-web");
    assert_eq!(http_get(&b, "http://198.51.100.11/").unwrap(), "lab-other");
    assert_eq!((a.hits("lab-web").len(), b.hits("lab-web").len()), (1, 1));
    assert_eq!((a.hits("lab-other").len(), b.hits("lab-other").len()), (0, 1));
}

#[test]
fn drop_leaves_nothing_behind() {
    require_privileged!();
    let lab = NetLab::new();
    let names = [lab.host_ns().to_owned(), lab.inet_ns().to_owned()];
    for n in &names {
        assert!(n.len() <= 15 && n.starts_with("ce-"), "{n}");
    }
    let mut links = lab.links_in_host();
    links.sort();
    assert_eq!(links, ["lo", "up0"]);
    assert!(lab.host_ns_path().exists());
    let listed = netns_names();
    assert!(names.iter().all(|n| listed.contains(n.as_str())), "{listed}");
    // the namespaces as the kernel names them in /proc/<pid>/task/<tid>/ns/net
    let inodes: Vec<String> = names
        .iter()
        .map(|n| format!("net:[{}]", std::fs::metadata(format!("/run/netns/{n}")).unwrap().ino()))
        .collect();
    assert!(
        threads_in(&inodes) > 0,
        "the server threads live in the lab ({inodes:?}); otherwise the check below proves nothing"
    );
    let probe = lab.probe();

    drop(lab);
    let listed = netns_names();
    assert!(names.iter().all(|n| !listed.contains(n.as_str())), "{listed}");
    assert!(names.iter().all(|n| !std::path::Path::new("/run/netns").join(n).exists()));
    assert!(probe.servers_stopped(), "a server thread outlived the lab");
    assert_eq!(threads_in(&inodes), 0, "a thread of this process is still in the lab");
}

/// How many threads of this process are in one of these network namespaces.
fn threads_in(netns: &[String]) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_link(t.path().join("ns/net")).ok())
        .filter(|l| netns.iter().any(|n| l.to_str() == Some(n.as_str())))
        .count()
}

#[test]
fn a_daemon_starts_inside_the_lab() {
    require_privileged!();
    // the lab first, so that it is dropped after the daemon
    let lab = NetLab::new();
    let d = Daemon::start_in_netns(&lab.host_ns_path(), &[]);
    let health = runtime().block_on(async { get(&d.unix(), None, "/health").await.json() });
    assert_eq!(health["status"], "ok", "{health}");
    // its TCP listener is on H's loopback, not the test's
    let codeexec::client::Endpoint::Tcp(addr) = &d.tcp else { panic!("{:?}", d.tcp) };
    let out = http_get(&lab, &format!("http://{addr}/health"));
    assert!(out.is_ok(), "{out:?}");
    let daemon_netns = std::fs::read_link(format!("/proc/{}/ns/net", d.child.id())).unwrap();
    let host_netns = format!("net:[{}]", std::fs::metadata(lab.host_ns_path()).unwrap().ino());
    assert_eq!(daemon_netns.to_str(), Some(host_netns.as_str()));
}
