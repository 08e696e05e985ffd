//! Network and host mounts through the API: who may ask, what is refused and how, what
//! reaches the executor, and what `/v1/capabilities` and `/health` tell.

use super::*;

const KEY: &str = "network-key-0123456789";
const OTHER: &str = "plain-key-0123456789";

fn with_network(c: &mut Config) {
    c.server.api_keys = vec![KEY.into(), OTHER.into()];
    c.network.enabled = true;
    c.network.resolver = "198.51.100.53".into();
    c.network.keys = vec![KEY.into()];
}

#[tokio::test]
async fn network_is_refused_unless_offered_to_the_caller() {
    let s = Server::start(|_| {}).await;
    let r = s.execute(json!({"language": "bash", "code": "x", "network": true})).await;
    expect_error(&r, StatusCode::FORBIDDEN, "forbidden", "network access is not enabled on this server");
    // false is the default, and fine
    let r = s.execute(json!({"language": "bash", "code": "x", "network": false})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.fake.last.lock().unwrap().as_ref().unwrap().access, crate::run::Access::default());
    let caps = s.unix().await.get("/v1/capabilities").await.unwrap().json();
    assert_eq!(caps["network"]["available"], false);
    assert_eq!(caps["mounts"], json!([]));
    let health = s.unix().await.get("/health").await.unwrap().json();
    assert_eq!(health["network"]["enabled"], false);
    s.shutdown().await;

    let s = Server::start(with_network).await;
    let body = json!({"language": "bash", "code": "x", "network": true});
    let r = s.tcp(Some(OTHER)).await.post_json("/v1/execute", &body).await.unwrap();
    expect_error(&r, StatusCode::FORBIDDEN, "forbidden", "not offered to this API key");
    let caps = s.tcp(Some(OTHER)).await.get("/v1/capabilities").await.unwrap().json();
    assert_eq!(caps["network"]["available"], false);
    let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &body).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let seen = s.fake.last.lock().unwrap().clone().unwrap();
    assert_eq!(seen.access.network, Some(crate::run::NetAccess { allow: None }));
    // the Unix socket always may
    assert_eq!(s.execute(body).await.status, StatusCode::OK);
    let caps = s.tcp(Some(KEY)).await.get("/v1/capabilities").await.unwrap().json();
    assert_eq!(caps["network"]["available"], true);
    assert_eq!(caps["network"]["resolver"], "198.51.100.53");
    let health = s.unix().await.get("/health").await.unwrap().json();
    assert_eq!(health["network"]["enabled"], true);
    s.shutdown().await;
}

#[tokio::test]
async fn allow_lists_are_checked_before_anything_runs() {
    let s = Server::start(|c| {
        with_network(c);
        c.network.allow_networks = vec!["10.77.0.0/24".into()];
    })
    .await;
    let run = |allow: Value| json!({"language": "bash", "code": "x", "network": {"allow": allow}});
    for (allow, want) in [
        (json!(["169.254.169.254:80"]), "cloud metadata"),
        (json!(["127.0.0.1:8080"]), "loopback"),
        (json!(["192.168.1.1:80"]), "private"),
        (json!(["example.com"]), "host:port"),
        (json!(["example.com:0"]), "bad port"),
        (json!(["example.com:80/icmp"]), "tcp or udp"),
        (json!([]), "1 to 32 entries"),
    ] {
        let r = s.execute(run(allow.clone())).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", want);
    }
    let started = s.fake.started.load(Ordering::SeqCst);
    assert_eq!(started, 0, "nothing ran");
    let r = s.execute(run(json!(["10.77.0.10:80", "Example.com:443", "1.1.1.1:53/udp"]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let seen = s.fake.last.lock().unwrap().clone().unwrap();
    let allow = seen.access.network.unwrap().allow.unwrap();
    let shown: Vec<String> = allow.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.77.0.10:80", "example.com:443", "1.1.1.1:53/udp"]);
    let r = s.execute(json!({"language": "bash", "code": "x", "network": {"allow": ["a:1"], "deny": []}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
    s.shutdown().await;
}

#[tokio::test]
async fn mounts_are_asked_for_by_declared_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    let s = Server::start(|c| {
        c.server.api_keys = vec![KEY.into(), OTHER.into()];
        c.mounts.insert(
            "data".into(),
            crate::config::MountConfig { path: data.display().to_string(), ..Default::default() },
        );
        c.mounts.insert(
            "secret".into(),
            crate::config::MountConfig { path: data.display().to_string(), writable: true, keys: vec![KEY.into()] },
        );
    })
    .await;
    let run = |mounts: Value| json!({"language": "bash", "code": "x", "mounts": mounts});
    let r = s.execute(run(json!(["nope"]))).await;
    expect_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "no host directory named \"nope\" (offered: data, secret)",
    );
    let r = s.execute(run(json!(["/etc"]))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a raw path is only an unknown name");
    let r = s.execute(run(json!(["data", "data"]))).await;
    expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "named twice");
    let r = s.tcp(Some(OTHER)).await.post_json("/v1/execute", &run(json!(["nope"]))).await.unwrap();
    expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "(offered: data)");
    let r = s.tcp(Some(OTHER)).await.post_json("/v1/execute", &run(json!(["secret"]))).await.unwrap();
    expect_error(&r, StatusCode::FORBIDDEN, "forbidden", "\"secret\" is not offered to this API key");
    let r = s.tcp(Some(KEY)).await.post_json("/v1/execute", &run(json!(["data", "secret"]))).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(s.fake.last.lock().unwrap().as_ref().unwrap().access.mounts, ["data", "secret"]);
    let caps = s.tcp(Some(OTHER)).await.get("/v1/capabilities").await.unwrap().json();
    assert_eq!(caps["mounts"], json!([{"name": "data", "path": "/mnt/data", "writable": false}]));
    let caps = s.tcp(Some(KEY)).await.get("/v1/capabilities").await.unwrap().json();
    assert_eq!(caps["mounts"][1], json!({"name": "secret", "path": "/mnt/secret", "writable": true}));
    let health = s.unix().await.get("/health").await.unwrap().json();
    assert_eq!(health["mounts"], json!(["data", "secret"]));
    // a judge request's tests get them too
    let body = json!({"language": "bash", "code": "x", "mounts": ["data"], "tests": [{"stdin": ""}]});
    assert_eq!(s.execute(body).await.status, StatusCode::OK);
    assert_eq!(s.fake.last.lock().unwrap().as_ref().unwrap().access.mounts, ["data"]);
    s.shutdown().await;
}
