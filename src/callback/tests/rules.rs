//! What is refused and how, without any traffic: URL syntax, networks, the forbidden
//! table, signatures.

use super::*;

#[test]
fn url_syntax_errors() {
    let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN));
    let cases: &[(&str, &str)] = &[
        ("ftp://example.com/", "scheme \"ftp\" is not supported"),
        ("example.com/hook", "does not start with http://"),
        ("http://user:pw@example.com/", "user information"),
        ("http://example.com@10.0.0.1/", "user information"),
        ("http://example.com/#fragment", "fragment"),
        ("http:///path", "no host"),
        ("http://", "no host"),
        ("http://:80/", "no host"),
        (&long, "longer than"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:65536/", "not a number from 1 to 65535"),
        ("http://example.com:/", "not a number from 1 to 65535"),
        ("http://example.com:+80/", "not a number from 1 to 65535"),
        ("http://exa mple.com/", "printable ASCII"),
        ("http://example.com/\u{e9}", "printable ASCII"),
        ("http://ex%61mple.com/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://127.1/", "numeric"),
        ("http://2130706433/", "numeric"),
        ("http://0x7f.0.0.1/", "numeric"),
        ("http://::1/", "brackets"),
        ("http://[::1/", "closing ]"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[::1]x/", "after ]"),
        ("http://[127.0.0.1]/", "not an IPv6 address"),
    ];
    for (url, want) in cases {
        let e = Target::parse(url).expect_err(url);
        assert!(matches!(e, CallbackError::Syntax(_)), "{url}: {e}");
        assert!(e.to_string().contains(want), "{url}: {e}");
    }
}

#[test]
fn url_parts() {
    let t = Target::parse("HTTP://Hooks.Example.COM:8080/a/b?c=d").unwrap();
    assert_eq!(
        (t.host(), t.port(), t.authority(), t.path().as_str()),
        ("hooks.example.com".into(), 8080, "hooks.example.com:8080", "/a/b?c=d")
    );
    let t = Target::parse("https://example.com/x").unwrap();
    assert!(t.is_https() && !Target::parse("http://example.com/x").unwrap().is_https());
    assert_eq!((t.port(), t.authority()), (443, "example.com"));
    let t = Target::parse("http://example.com?x=1").unwrap();
    assert_eq!((t.authority(), t.path().as_str()), ("example.com", "/?x=1"));
    let t = Target::parse("http://[::1]:81").unwrap();
    assert_eq!((t.host(), t.port(), t.authority(), t.path().as_str()), ("::1".into(), 81, "[::1]:81", "/"));
    let t = Target::parse("http://my_host.internal.:65535/x").unwrap();
    assert_eq!(t.port(), 65535);
    let longest = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN - "http://example.com/".len()));
    assert_eq!(Target::parse(&longest).unwrap().url().len(), MAX_URL_LEN);
}

#[test]
fn networks_parse_strictly() {
    for (text, shown) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("127.0.0.1", "127.0.0.1/32"),
        ("::1", "::1/128"),
        ("::1/128", "::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("fd00::/8", "fd00::/8"),
        ("2001:DB8::/32", "2001:db8::/32"),
    ] {
        assert_eq!(net(text).to_string(), shown, "{text}");
    }
    let e = "10.0.0.1/8".parse::<Network>().unwrap_err();
    assert_eq!(e, NetworkError::HostBits { text: "10.0.0.1/8".into(), prefix: 8, canonical: "10.0.0.0/8".into() });
    assert!(e.to_string().contains("write 10.0.0.0/8"), "{e}");
    for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8/8", "10.0.0.0/ 8"] {
        assert!(matches!(bad.parse::<Network>(), Err(NetworkError::Prefix { .. })), "{bad}");
    }
    for bad in ["", " 10.0.0.0/8", "10.0.0/8", "10.0.0.256", "fe80::1%eth0", "localhost", "/8"] {
        assert!(matches!(bad.parse::<Network>(), Err(NetworkError::Address { .. })), "{bad}");
    }
}

#[test]
fn networks_contain() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let ten = net("10.0.0.0/8");
    assert!(ten.contains(ip("10.255.0.1")) && ten.contains(ip("10.0.0.0")));
    assert!(!ten.contains(ip("11.0.0.0")) && !ten.contains(ip("9.255.255.255")));
    assert!(!ten.contains(ip("::ffff:10.0.0.1")), "families do not mix");
    assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")) && !net("0.0.0.0/0").contains(ip("::")));
    assert!(net("::/0").contains(ip("ffff::1")));
    let one = net("192.0.2.7");
    assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.6")));
    assert!(net("fc00::/7").contains(ip("fdff::1")) && !net("fc00::/7").contains(ip("fe00::")));
}

#[test]
fn the_forbidden_table() {
    let why = |s: &str| forbidden(s.parse().unwrap()).map(|f| (f.why, f.embeds.map(|(k, v4)| format!("{k} {v4}"))));
    let is = |w: &'static str| Some((w, None));
    assert_eq!(why("172.31.255.255"), is("private"));
    assert_eq!(why("192.168.0.1"), is("private"));
    assert_eq!(why("100.64.0.1"), is("carrier-grade NAT (shared address space)"));
    assert_eq!(why("127.255.255.254"), is("loopback"));
    assert_eq!(why("169.254.0.1"), is("link-local"));
    assert_eq!(why("192.0.0.8"), is("reserved (IETF protocol assignments)"));
    assert_eq!(why("192.0.2.1"), is("reserved for documentation"));
    assert_eq!(why("198.51.100.1"), is("reserved for documentation"));
    assert_eq!(why("203.0.113.255"), is("reserved for documentation"));
    assert_eq!(why("198.19.255.255"), is("reserved for benchmarking"));
    assert_eq!(why("224.0.0.1"), is("multicast"));
    assert_eq!(why("255.255.255.255"), is("broadcast"));
    assert_eq!(why("240.0.0.1"), is("reserved"));
    assert_eq!(why("::"), is("unspecified"));
    assert_eq!(why("fe80::1"), is("link-local"));
    assert_eq!(why("fc00::1"), is("unique local (private)"));
    assert_eq!(why("ff02::1"), is("multicast"));
    assert_eq!(why("2001:db8::1"), is("reserved for documentation"));
    let embeds = |w: &'static str, e: &str| Some((w, Some(e.to_owned())));
    assert_eq!(why("::ffff:169.254.169.254"), embeds("link-local (cloud metadata)", "IPv4-mapped 169.254.169.254"));
    assert_eq!(why("::127.0.0.1"), embeds("loopback", "IPv4-compatible 127.0.0.1"));
    assert_eq!(why("64:ff9b::a01:203"), embeds("private", "NAT64 10.1.2.3"));
    assert_eq!(why("2002:7f00:1::1"), embeds("loopback", "6to4 127.0.0.1"));
    assert_eq!(why("2002:a9fe:a9fe::"), embeds("link-local (cloud metadata)", "6to4 169.254.169.254"));
    for public in [
        "8.8.8.8",
        "172.32.0.0",
        "100.128.0.0",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:5db8:d822::1",
    ] {
        assert_eq!(why(public), None, "{public}");
    }
}

#[test]
fn signatures() {
    // RFC 4231 test case 7, its data split at its ". " into timestamp and body
    let key = [0xaa_u8; 131];
    let ts = "This is a test using a larger than block-size key and a larger than block-size data";
    let body = b" The key needs to be hashed before being used by the HMAC algorithm.";
    let sig = sign(&key, ts, body);
    assert_eq!(sig, "sha256=9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    assert!(verify(&key, ts, body, &sig));
    assert!(verify(&key, ts, body, &sig.to_uppercase().replace("SHA256=", "sha256=")));
    assert!(!verify(&key, ts, b" The key needs to be hashed before being used by the HMAC algorithm!", &sig));
    assert!(!verify(&key, "1", body, &sig));
    assert!(!verify(b"other", ts, body, &sig));
    assert!(!verify(&key, ts, body, sig.trim_start_matches("sha256=")));
    assert!(!verify(&key, ts, body, &sig[..sig.len() - 2]));
    assert!(!verify(&key, ts, body, "sha256=zz"));
    assert!(!verify(&key, ts, body, ""));
}
