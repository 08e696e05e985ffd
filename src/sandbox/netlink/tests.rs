//! The kernel tests need root: each works on a thread of its own in a fresh network
//! namespace (`unshare(CLONE_NEWNET)` is per thread), with the veths' peers in the network
//! namespace of an `unshare --net sleep 30` child, so the machine's own namespace is never
//! touched and everything goes when the thread ends and the child is killed.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};

use super::*;

const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// On the host end too, but outside the pair's /30: the peer reaches it only through its
/// default route.
const SERVICE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);

/// Whether the root-only tests are asked for; panics if they are but cannot run (the unit
/// tests' twin of `tests/common::privileged`).
fn privileged() -> bool {
    if std::env::var_os("CODEEXEC_PRIVILEGED_TESTS").is_none() {
        eprintln!("skipped: set CODEEXEC_PRIVILEGED_TESTS=1 and run as root (scripts/test does)");
        return false;
    }
    assert!(nix::unistd::geteuid().is_root(), "CODEEXEC_PRIVILEGED_TESTS is set but the tests are not running as root");
    true
}

macro_rules! require_privileged {
    () => {
        if !privileged() {
            return;
        }
    };
}

/// Runs `f` on a new thread in a new network namespace, freed with all its links when the
/// thread ends. Processes spawned from that thread start in that namespace too.
fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let thread = s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) on a thread");
            f()
        });
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `unshare --net sleep 30`: a process in a network namespace of its own, killed on drop.
struct PeerNs {
    child: Child,
}

impl PeerNs {
    fn start() -> Self {
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let child = Command::new("unshare").args(["--net", "sleep", "30"]).spawn().expect("spawn unshare(1)");
        let ns = Self { child };
        // Until unshare(1) has called unshare(2), the child is still in our namespace.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(ns.ns_path()).is_ok_and(|theirs| theirs == ours) {
            assert!(Instant::now() < deadline, "unshare --net did not leave our namespace");
            std::thread::sleep(Duration::from_millis(1));
        }
        ns
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.child.id())
    }

    /// Runs `f` on a new thread that joined this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(self.ns_path()).unwrap();
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns(CLONE_NEWNET) on a thread");
                f()
            });
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for PeerNs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ip <args>` run from the calling thread, so in its network namespace.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn errno<T: std::fmt::Debug>(r: Result<T>) -> Errno {
    r.unwrap_err().errno
}

/// Configures the peer end from inside its namespace, as a sandbox's PID 1 does.
fn configure_peer(rtnl: &mut Rtnl, name: &str) {
    let index = rtnl.link_index(name).unwrap().expect("the peer is in the child's namespace");
    rtnl.add_address_v4(index, PEER_ADDR, 30).unwrap();
    rtnl.set_up(index).unwrap();
    rtnl.add_default_route_v4(HOST_ADDR).unwrap();
}

#[test]
fn a_veth_pair_carries_tcp_between_two_namespaces() {
    require_privileged!();
    let peer_ns = PeerNs::start();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        let host = rtnl.add_veth("cxh0", "cxp0", peer_ns.pid()).unwrap();
        assert_eq!(rtnl.link_index("cxh0").unwrap(), Some(host));
        assert_eq!(rtnl.link_index("cxp0").unwrap(), None, "the peer is created in the child's namespace only");
        rtnl.add_address_v4(host, HOST_ADDR, 30).unwrap();
        rtnl.add_address_v4(host, SERVICE_ADDR, 32).unwrap();
        rtnl.set_up(host).unwrap();
        let link = ip(&["-d", "-o", "link", "show", "cxh0"]);
        assert!(link.contains(",UP") && link.contains("veth"), "{link}");
        let addrs = ip(&["-o", "-4", "addr", "show", "dev", "cxh0"]);
        assert!(addrs.contains("inet 10.200.0.1/30") && addrs.contains("inet 10.201.0.1/32"), "{addrs}");
        let seen = Command::new("nsenter").args(["-t", &peer_ns.pid().to_string(), "-n", "ip", "-o", "link"]).output();
        assert!(String::from_utf8(seen.unwrap().stdout).unwrap().contains("cxp0@"));

        peer_ns.run(|| configure_peer(&mut Rtnl::open().unwrap(), "cxp0"));
        let listener = TcpListener::bind((SERVICE_ADDR, 0)).unwrap();
        let service = listener.local_addr().unwrap();
        peer_ns.run(|| {
            let mut stream = TcpStream::connect_timeout(&service, Duration::from_secs(5)).unwrap();
            stream.write_all(b"ping").unwrap();
        });
        listener.set_nonblocking(true).unwrap();
        let (mut stream, from) = listener.accept().expect("the connection is queued");
        assert_eq!(from.ip(), PEER_ADDR);
        stream.set_nonblocking(false).unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ping");

        assert!(rtnl.delete_link("cxh0").unwrap());
        assert_eq!(rtnl.link_index("cxh0").unwrap(), None);
        let peer_left = peer_ns.run(|| Rtnl::open().unwrap().link_index("cxp0").unwrap());
        assert_eq!(peer_left, None, "deleting the host end deletes the peer, before the ack");
        assert!(!rtnl.delete_link("cxh0").unwrap());
    });
}

#[test]
fn an_existing_name_is_eexist_and_creates_nothing() {
    require_privileged!();
    let peer_ns = PeerNs::start();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        rtnl.add_veth("cxe0", "cxf0", peer_ns.pid()).unwrap();
        assert_eq!(errno(rtnl.add_veth("cxe0", "cxf1", peer_ns.pid())), Errno::EEXIST);
        // The peer's name is taken in the child's namespace.
        assert_eq!(errno(rtnl.add_veth("cxe1", "cxf0", peer_ns.pid())), Errno::EEXIST);
        assert_eq!(rtnl.link_index("cxe1").unwrap(), None);
        assert_eq!(rtnl.links_with_prefix("cx").unwrap(), ["cxe0"]);
        assert!(rtnl.delete_link("cxe0").unwrap());
    });
}

#[test]
fn links_with_prefix_lists_exactly_those_links_across_several_datagrams() {
    require_privileged!();
    let peer_ns = PeerNs::start();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        // About 1.5 KiB a link: 40 of them do not fit one 32 KiB datagram of the dump.
        let mut created: Vec<String> = (0..40).map(|i| format!("cxl{i}")).collect();
        for (i, name) in created.iter().enumerate() {
            rtnl.add_veth(name, &format!("cxq{i}"), peer_ns.pid()).unwrap();
        }
        rtnl.add_veth("cxm0", "cxn0", peer_ns.pid()).unwrap();
        let mut listed = rtnl.links_with_prefix("cxl").unwrap();
        listed.sort();
        created.sort();
        assert_eq!(listed, created);
        assert_eq!(rtnl.links_with_prefix("").unwrap().len(), 42, "40 + cxm0 + lo");
        assert!(rtnl.links_with_prefix("nothing").unwrap().is_empty());
        let peers = peer_ns.run(|| Rtnl::open().unwrap().links_with_prefix("cxq").unwrap());
        assert_eq!(peers.len(), 40);
        for name in rtnl.links_with_prefix("cx").unwrap() {
            assert!(rtnl.delete_link(&name).unwrap());
        }
        assert!(peer_ns.run(|| Rtnl::open().unwrap().links_with_prefix("cx").unwrap()).is_empty());
    });
}

#[test]
fn the_kernels_errors_are_returned() {
    require_privileged!();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        assert!(!rtnl.delete_link("cxmissing").unwrap());
        assert_eq!(rtnl.link_index("cxmissing").unwrap(), None);
        let missing = 9999;
        let e = rtnl.set_up(missing).unwrap_err();
        assert_eq!((e.op, e.errno), ("set_up", Errno::ENODEV));
        assert_eq!(errno(rtnl.add_address_v4(missing, HOST_ADDR, 30)), Errno::ENODEV);
        assert_eq!(errno(rtnl.add_default_route_v4(HOST_ADDR)), Errno::ENETUNREACH);
        let lo = rtnl.link_index("lo").unwrap().unwrap();
        rtnl.add_address_v4(lo, HOST_ADDR, 32).unwrap();
        assert_eq!(errno(rtnl.add_address_v4(lo, HOST_ADDR, 32)), Errno::EEXIST);
        assert_eq!(errno(rtnl.add_address_v4(lo, HOST_ADDR, 33)), Errno::EINVAL);
    });
}

#[test]
fn bad_names_and_pids_are_refused_before_sending() {
    require_privileged!();
    let peer_ns = PeerNs::start();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        for bad in ["", "a/b", "a b", "a\tb", "a\0b", "a:b", ".", "..", "sixteen-bytes-xx"] {
            let e = rtnl.add_veth(bad, "cxok", peer_ns.pid()).unwrap_err();
            assert_eq!((e.op, e.errno), ("add_veth", Errno::EINVAL), "{bad:?}");
            assert_eq!(errno(rtnl.add_veth("cxok", bad, peer_ns.pid())), Errno::EINVAL, "{bad:?}");
            assert_eq!(errno(rtnl.delete_link(bad)), Errno::EINVAL, "{bad:?}");
            assert_eq!(errno(rtnl.link_index(bad)), Errno::EINVAL, "{bad:?}");
        }
        assert_eq!(errno(rtnl.add_veth("cxok", "cxok2", 0)), Errno::EINVAL);
        assert_eq!(errno(rtnl.add_veth("cxok", "cxok2", -1)), Errno::EINVAL);
        assert_eq!(rtnl.links_with_prefix("").unwrap(), ["lo"], "nothing was created");
    });
}

#[test]
fn interface_names_follow_the_kernels_rules() {
    assert_eq!(check_name("fifteen-bytes-x"), Ok(()));
    assert_eq!(check_name("cx-0.a_b"), Ok(()));
    for bad in ["", "sixteen-bytes-xx", "a/b", "a b", "a\nb", "a\0b", "a:b", ".", "..", "é\u{a0}"] {
        assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The figures for the spawn path: `cargo test --lib netlink -- --ignored --nocapture`.
#[test]
#[ignore = "timing figures, not a check"]
fn timings() {
    require_privileged!();
    const RUNS: usize = 50;
    let peer_ns = PeerNs::start();
    in_new_netns(|| {
        let mut rtnl = Rtnl::open().unwrap();
        // A socket opened inside the child's namespace stays bound there on this thread.
        let mut inside = peer_ns.run(|| Rtnl::open().unwrap());
        let (mut host_side, mut peer_side, mut delete, mut peer_gone) = (vec![], vec![], vec![], 0);
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let host = rtnl.add_veth("cxt0", "cxu0", peer_ns.pid()).unwrap();
            rtnl.add_address_v4(host, HOST_ADDR, 30).unwrap();
            rtnl.set_up(host).unwrap();
            let t1 = Instant::now();
            configure_peer(&mut inside, "cxu0");
            let t2 = Instant::now();
            assert!(rtnl.delete_link("cxt0").unwrap());
            let t3 = Instant::now();
            peer_gone += usize::from(inside.link_index("cxu0").unwrap().is_none());
            host_side.push(t1 - t0);
            peer_side.push(t2 - t1);
            delete.push(t3 - t2);
        }
        let show = |d: Vec<Duration>| format!("{:?}", median(d));
        eprintln!("host side (add_veth + add_address_v4 + set_up): median {}", show(host_side));
        eprintln!("peer side (link_index + add_address_v4 + set_up + default route): median {}", show(peer_side));
        eprintln!("delete_link: median {}; peer already gone right after: {peer_gone}/{RUNS}", show(delete));
    });
}
