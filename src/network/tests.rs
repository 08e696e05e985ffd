use super::*;

fn config() -> EgressConfig {
    EgressConfig {
        table: "codeexec_test".into(),
        subnet: "10.200.0.0/16".parse().unwrap(),
        resolver: Ipv4Addr::new(198, 51, 100, 53),
        allow_networks: vec!["10.77.0.0/24".parse().unwrap()],
        deny_networks: vec!["203.0.113.7/32".parse().unwrap()],
        uplink: None,
        max_connections: 64,
        rate_kbytes: 0,
    }
}

#[test]
fn allow_entries_parse() {
    let e: AllowEntry = "Example.COM:443".parse().unwrap();
    assert_eq!(e, AllowEntry { host: "example.com".into(), port: 443, udp: false });
    let e: AllowEntry = "198.51.100.53:53/udp".parse().unwrap();
    assert!(e.udp);
    assert_eq!(e.to_string(), "198.51.100.53:53/udp");
    assert!("1.2.3.4:80/tcp".parse::<AllowEntry>().is_ok());
    for bad in ["example.com", "example.com:0", "example.com:70000", ":80", "a b:80", "x:80/icmp", "[::1]:80", "a..b:1"]
    {
        assert!(bad.parse::<AllowEntry>().is_err(), "{bad}");
    }
}

#[test]
fn each_slot_gets_its_own_slash_30_in_the_half_of_its_kind() {
    let c = config();
    let l0 = c.link(0, false).unwrap();
    assert_eq!(
        (l0.host_if.as_str(), l0.host_addr, l0.sandbox_addr, l0.prefix_len),
        ("ceh0", Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2), 30)
    );
    let l = c.link(70, false).unwrap();
    assert_eq!((l.host_addr, l.sandbox_addr), (Ipv4Addr::new(10, 200, 1, 25), Ipv4Addr::new(10, 200, 1, 26)));
    // a run with an allow-list: the upper half, the same name
    let n = c.link(70, true).unwrap();
    assert_eq!((n.host_if.as_str(), n.sandbox_addr), ("ceh70", Ipv4Addr::new(10, 200, 129, 26)));
    assert!(c.link(8191, false).is_some() && c.link(8191, true).is_some());
    assert!(c.link(8192, false).is_none() && c.link(8192, true).is_none(), "each half of a /16 holds 8192 /30s");
    assert_eq!(c.narrowed_half(), "10.200.128.0/17");
}

#[test]
fn refused_destinations_say_why_unless_allowed() {
    let c = config();
    assert!(c.refuses(Ipv4Addr::new(169, 254, 169, 254)).unwrap().contains("metadata"));
    assert!(c.refuses(Ipv4Addr::new(127, 0, 0, 1)).unwrap().contains("loopback"));
    assert!(c.refuses(Ipv4Addr::new(192, 168, 1, 1)).unwrap().contains("private"));
    assert_eq!(c.refuses(Ipv4Addr::new(10, 77, 0, 10)), None, "allowed by the operator");
    assert_eq!(c.refuses(Ipv4Addr::new(1, 1, 1, 1)), None);
}

#[test]
fn the_ruleset_names_the_uplink_resolver_and_caps() {
    let c = config();
    let r = c.ruleset("eth0", true);
    assert!(r.starts_with("table inet codeexec_test {}\ndelete table inet codeexec_test\n"));
    assert!(r.contains("ip daddr 198.51.100.53 meta l4proto { tcp, udp } th dport 53 goto limits"));
    assert!(r.contains("ip saddr 10.200.128.0/17 ip saddr . ip daddr . meta l4proto . th dport != @permits drop"));
    let denied = r.find("ip daddr @denied drop").unwrap();
    assert!(denied < r.find("ip daddr @allowed goto narrow").unwrap(), "denied before allowed");
    assert!(denied < r.find("th dport 53 goto limits").unwrap(), "denied before the resolver");
    assert!(r.contains("set denied { type ipv4_addr; flags interval; auto-merge; elements = { 203.0.113.7/32 }; }"));
    assert!(r.contains("oifname != \"eth0\" drop"));
    assert!(r.contains("iifname \"eth0\" drop"), "we turned forwarding on, so other forwarding stays off");
    assert!(!c.ruleset("eth0", false).contains("iifname \"eth0\" drop"));
    assert!(r.contains("ct count over 64"));
    assert!(!r.contains("rate_out"), "no rate cap asked for");
    assert!(r.contains("elements = { 10.77.0.0/24 }"));
    assert!(r.contains("169.254.169.254/32") && r.contains("10.0.0.0/8"));
    assert!(!r.contains("::"), "IPv6 rows are not in an IPv4 set");
    let rated = EgressConfig { rate_kbytes: 512, ..config() }.ruleset("eth0", false);
    assert!(rated.contains("update @rate_out { ip saddr limit rate over 512 kbytes/second } drop"));
}

#[test]
fn resolv_conf_names_the_resolver() {
    assert!(config().resolv_conf().contains("\nnameserver 198.51.100.53\n"));
}
