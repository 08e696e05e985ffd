use super::*;

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

#[test]
fn defaults_are_valid() {
    let s = Config::load(None, []).unwrap().validate().unwrap();
    assert_eq!(s.unix_socket.as_deref(), Some(Path::new("/run/codeexec/codeexec.sock")));
    assert!(s.tcp.is_none() && s.api_keys.is_empty());
    assert!(s.concurrency >= 1);
    assert_eq!(s.default_limits.memory_mb, 256);
}

#[test]
fn callbacks_are_checked_at_start() {
    let mut c = Config::default();
    let s = c.validate().unwrap();
    assert!(s.warnings.iter().any(|w| w.contains("unsigned")));
    assert!(s.callbacks.secret.is_none());
    c.callbacks.secret = "0123456789abcdef".into();
    c.callbacks.allow_networks = vec!["10.0.0.0/8".into()];
    let s = c.validate().unwrap();
    assert_eq!(s.callbacks.secret.as_deref(), Some(&b"0123456789abcdef"[..]));
    assert_eq!(s.callbacks.allow_networks.len(), 1);
    for (field, bad) in [("allow_networks", "10.0.0.1/8"), ("secret", "short"), ("ca_file", "/nonexistent.pem")] {
        let mut c = c.clone();
        match field {
            "allow_networks" => c.callbacks.allow_networks = vec![bad.into()],
            "secret" => c.callbacks.secret = bad.into(),
            _ => c.callbacks.ca_file = bad.into(),
        }
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("callbacks.{field}")), "{e}");
    }
}

#[test]
fn the_example_file_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("codeexec.example.toml");
    // every key is in the file (not merely defaulted), with its default value
    let text = std::fs::read_to_string(&path).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(toml::Value::Table(file), toml::Value::try_from(Config::default()).unwrap());
}

#[test]
fn unknown_keys_and_wrong_types_are_errors() {
    let e = Config::load(Some(write("[server]\nunix_sockett = \"/x\"\n").path()), []).unwrap_err().to_string();
    assert!(e.contains("unix_sockett"), "{e}");
    let e = Config::load(Some(write("[runs]\nqueue = \"many\"\n").path()), []).unwrap_err().to_string();
    assert!(e.contains("queue") || e.contains("integer"), "{e}");
    let e = Config::load(Some(write("[nope]\n").path()), []).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn environment_overrides_the_file() {
    let f = write("[server]\ntcp = \"127.0.0.1:1\"\n[limits.max]\nmemory_mb = 512\n");
    let vars = env(&[
        ("CODEEXEC_SERVER_TCP", "127.0.0.1:8080"),
        ("CODEEXEC_SERVER_API_KEYS", "0123456789abcdef, fedcba9876543210"),
        ("CODEEXEC_RUNS_QUEUE", "5"),
        ("CODEEXEC_LIMITS_DEFAULT_MEMORY_MB", "128"),
        ("CODEEXEC_LOG", "debug"),
        ("PATH", "/bin"),
    ]);
    let s = Config::load(Some(f.path()), vars).unwrap().validate().unwrap();
    assert_eq!(s.tcp, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(s.api_keys, ["0123456789abcdef", "fedcba9876543210"]);
    assert_eq!(s.queue, 5);
    assert_eq!(s.default_limits.memory_mb, 128);
    assert_eq!(s.max_limits.memory_mb, 512, "the file's value stays where the environment is silent");
}

#[test]
fn a_socket_mode_from_the_environment_is_octal_and_an_empty_list_is_refused() {
    for raw in ["0600", "600", "0o600"] {
        let s = Config::load(None, env(&[("CODEEXEC_SERVER_SOCKET_MODE", raw)])).unwrap().validate().unwrap();
        assert_eq!(s.socket_mode, 0o600, "{raw}");
    }
    let e = Config::load(None, env(&[("CODEEXEC_SERVER_SOCKET_MODE", "0689")])).unwrap_err().to_string();
    assert!(e.contains("octal"), "{e}");
    let e = Config::load(None, env(&[("CODEEXEC_SERVER_API_KEYS", " ")])).unwrap_err().to_string();
    assert!(e.contains("CODEEXEC_SERVER_API_KEYS") && e.contains("empty list"), "{e}");
}

#[test]
fn unknown_or_malformed_environment_variables_are_errors() {
    let e = Config::load(None, env(&[("CODEEXEC_SERVER_TPC", "x")])).unwrap_err().to_string();
    assert!(e.contains("CODEEXEC_SERVER_TPC is not a configuration key"), "{e}");
    let e = Config::load(None, env(&[("CODEEXEC_RUNS_QUEUE", "lots")])).unwrap_err().to_string();
    assert!(e.contains("CODEEXEC_RUNS_QUEUE"), "{e}");
}

#[test]
fn public_tcp_needs_keys_or_an_explicit_override() {
    let mut c = Config::default();
    c.server.tcp = "0.0.0.0:8080".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("not a loopback address"), "{e}");
    c.server.allow_public_without_keys = true;
    let s = c.validate().unwrap();
    assert!(s.warnings[0].contains("ANYONE"));
    c.server.allow_public_without_keys = false;
    c.server.api_keys = vec!["0123456789abcdef".into()];
    assert!(!c.validate().unwrap().warnings.iter().any(|w| w.contains("ANYONE")));
    c.server.api_keys = vec!["short".into()];
    assert!(c.validate().unwrap_err().to_string().contains("16 or more"));
}

#[test]
fn limits_must_be_consistent() {
    let mut c = Config::default();
    c.limits.default.memory_mb = 8192;
    assert!(c.validate().unwrap_err().to_string().contains("limits.default.memory_mb"));
    let mut c = Config::default();
    c.limits.max.processes = 0;
    assert!(c.validate().unwrap_err().to_string().contains("limits.max.processes"));
    let mut c = Config::default();
    c.server.unix_socket = String::new();
    assert!(c.validate().unwrap_err().to_string().contains("no listener"));
}

#[test]
fn network_is_checked_when_enabled() {
    let mut c = Config::default();
    assert!(c.validate().unwrap().network.is_none(), "off by default");
    c.network.enabled = true;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("network.resolver"), "{e}");
    for (resolver, allow, keys, want) in [
        ("127.0.0.53", "", "", "network.resolver"),
        ("198.51.100.53", "fd00::/8", "", "IPv4 only"),
        ("198.51.100.53", "10.0.0.1/8", "", "network.allow_networks"),
        ("198.51.100.53", "", "not-a-configured-key-0123", "network.keys"),
    ] {
        let mut c = c.clone();
        c.network.resolver = resolver.into();
        c.network.allow_networks = if allow.is_empty() { vec![] } else { vec![allow.into()] };
        c.network.keys = if keys.is_empty() { vec![] } else { vec![keys.into()] };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{resolver} {allow} {keys}: {e}");
    }
    c.network.resolver = "198.51.100.53".into();
    c.network.subnet = "10.200.0.0/24".into();
    assert!(c.validate().unwrap_err().to_string().contains("network.subnet"), "a /24 has no room for 1024 slots");
    c.network.subnet = "10.200.0.0/20".into();
    assert!(c.validate().unwrap_err().to_string().contains("a /19 or larger"), "half for runs with an allow-list");
    c.network.subnet = "10.200.0.0/19".into();
    c.server.api_keys = vec!["first-key-0123456789".into(), "second-key-0123456789".into()];
    c.network.keys = vec!["second-key-0123456789".into()];
    let n = c.validate().unwrap().network.unwrap();
    assert_eq!(n.grant, Grant::Keys(vec![1]));
    assert_eq!(n.egress.resolver.to_string(), "198.51.100.53");
    assert_eq!(n.egress.subnet.to_string(), "10.200.0.0/19");
}

#[test]
fn mounts_must_be_real_directories_with_no_symlink_on_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap().join("data");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("f"), "x").unwrap();
    std::os::unix::fs::symlink(&real, real.with_file_name("link")).unwrap();
    let text =
        |name: &str, path: &std::path::Path| format!("[mounts.{name}]\npath = {:?}\n", path.display().to_string());
    let ok = Config::load(Some(write(&text("data", &real)).path()), []).unwrap().validate().unwrap();
    assert_eq!(ok.mounts.len(), 1);
    assert_eq!((ok.mounts[0].mount.name.as_str(), ok.mounts[0].mount.writable), ("data", false));
    for (name, path, want) in [
        ("data", real.with_file_name("link"), "symlink"),
        ("data", real.join("f"), "not a directory"),
        ("data", real.join("missing"), "No such file"),
        ("data", real.join("../data"), "goes through"),
        ("bad/name", real.clone(), "a name is"),
        ("data", std::path::PathBuf::from("relative/dir"), "absolute"),
    ] {
        let c = Config::load(Some(write(&text(&format!("{name:?}"), &path)).path()), []).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{name} {}: {e}", path.display());
    }
    // the environment cannot declare one
    let e = Config::load(None, [("CODEEXEC_MOUNTS_DATA_PATH".into(), "/srv".into())]).unwrap_err().to_string();
    assert!(e.contains("not a configuration key"), "{e}");
}

#[test]
fn jobs_are_kept_on_disk_unless_a_fleet_queue_is_set() {
    let mut c = Config::default();
    let s = c.validate().unwrap();
    assert_eq!(
        s.job_store,
        JobStoreSettings::Disk { dir: PathBuf::from("/var/lib/codeexec/jobs"), fsync: false },
        "durable by default"
    );
    assert_eq!(s.max_job_attempts, 3);
    c.jobs.dir = String::new();
    assert_eq!(c.validate().unwrap().job_store, JobStoreSettings::Memory);
    c.jobs.dir = "relative/jobs".into();
    assert!(c.validate().unwrap_err().to_string().contains("jobs.dir"));
    c.queue.redis = "redis://127.0.0.1:6390/0".into();
    c.queue.consumer = "h1".into();
    match c.validate().unwrap().job_store {
        JobStoreSettings::Fleet { url, consumer, prefix, lease } => {
            assert_eq!(
                (url.as_str(), consumer.as_str(), prefix.as_str()),
                ("redis://127.0.0.1:6390/0", "h1", "codeexec:")
            );
            assert_eq!(lease, Duration::from_secs(30), "a lease of at most 30 s by default");
        }
        other => panic!("not a fleet: {other:?}"),
    }
    c.queue.consumer = String::new();
    let JobStoreSettings::Fleet { consumer, .. } = c.validate().unwrap().job_store else { panic!() };
    assert!(!consumer.is_empty(), "the host name by default");
    for (what, edit) in [
        ("queue.redis", Box::new(|c: &mut Config| c.queue.redis = "http://x".into()) as Box<dyn Fn(&mut Config)>),
        ("queue.lease_ms", Box::new(|c: &mut Config| c.queue.lease_ms = 10)),
        ("queue.consumer", Box::new(|c: &mut Config| c.queue.consumer = "a b".into())),
        ("jobs.max_attempts", Box::new(|c: &mut Config| c.jobs.max_attempts = 0)),
        ("runs.uid_base", Box::new(|c: &mut Config| c.runs.uid_base = 1000)),
        ("runs.cgroup_nest", Box::new(|c: &mut Config| c.runs.cgroup_nest = "sometimes".into())),
    ] {
        let mut bad = c.clone();
        edit(&mut bad);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
}

#[test]
fn a_redis_url_from_the_environment_is_not_echoed() {
    let e = Config::load(None, env(&[("CODEEXEC_QUEUE_REDIS", "tcp://:hunter2@x")])).unwrap().validate().unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
