//! The API dialects (`src/api/dialect/`) against their REAL clients, unchanged, at pinned
//! versions (installed by `scripts/compat-clients`, which `.ci/run` calls): npm
//! piston-client 1.0.2, PyPI judge0 0.0.8 (the official SDK) and judge0-client 0.4.0, each
//! talking to a real daemon on TCP and running real sandboxes. The scenarios are in
//! `tests/fixtures/compat/` (hello, stdin, a C++ compile error, a time limit, a runtime
//! error, a segfault, expected output right and wrong, batches, base64 on and off,
//! `fields`, auth on and off, each refusal in the dialect's own shape). Root only.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use codeexec::client::Endpoint;
use hyper::StatusCode;

use common::daemon::{Daemon, get, runtime};

const KEY: &str = "compat-key-0123456789abcdef";

/// Where `scripts/compat-clients` put the clients (it is run here if they are missing).
fn clients() -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/compat-clients"))
        .output()
        .expect("run scripts/compat-clients");
    assert!(out.status.success(), "scripts/compat-clients failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compat").join(name)
}

fn port(d: &Daemon) -> String {
    match &d.tcp {
        Endpoint::Tcp(addr) => addr.rsplit(':').next().unwrap().to_owned(),
        other => panic!("no TCP listener: {other:?}"),
    }
}

/// Runs a client script; its output on failure.
fn expect_success(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn piston_client_works_unchanged() {
    require_privileged!();
    let clients = clients();
    let d = Daemon::start(&[]);
    // ESM resolves packages from the script's directory: run it beside the clients' node_modules
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(clients.join("node_modules"), dir.path().join("node_modules")).unwrap();
    let script = dir.path().join("piston_client.mjs");
    std::fs::copy(fixture("piston_client.mjs"), &script).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&script).env("PORT", port(&d));
    expect_success(cmd, "piston-client");
}

#[test]
fn judge0_sdk_works_unchanged() {
    require_privileged!();
    let clients = clients();
    let d = Daemon::start(&[]);
    let mut cmd = Command::new(clients.join("venv/bin/python"));
    cmd.arg(fixture("judge0_sdk.py")).env("BASE", format!("http://127.0.0.1:{}/judge0", port(&d)));
    expect_success(cmd, "judge0 SDK");
}

#[test]
fn judge0_client_with_auth_and_the_dialects_listed() {
    require_privileged!();
    let clients = clients();
    let d = Daemon::start(&[("CODEEXEC_SERVER_API_KEYS", KEY)]);
    let mut cmd = Command::new(clients.join("venv/bin/python"));
    cmd.arg(fixture("judge0_client.py")).env("BASE", format!("http://127.0.0.1:{}/judge0", port(&d))).env("TOKEN", KEY);
    expect_success(cmd, "judge0-client");
    // the SDK, with its token in its headers, on the same daemon
    let mut cmd = Command::new(clients.join("venv/bin/python"));
    cmd.arg(fixture("judge0_sdk.py")).env("BASE", format!("http://127.0.0.1:{}/judge0", port(&d))).env("TOKEN", KEY);
    expect_success(cmd, "judge0 SDK with a token");
    runtime().block_on(async {
        let caps = get(&d.tcp, Some(KEY), "/v1/capabilities").await;
        assert_eq!(caps.status, StatusCode::OK);
        let names: Vec<(String, String)> = caps.json()["dialects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].as_str().unwrap().to_owned(), x["prefix"].as_str().unwrap().to_owned()))
            .collect();
        assert!(names.contains(&("piston".into(), "/api/v2".into())), "{names:?}");
        assert!(names.contains(&("judge0".into(), "/judge0".into())), "{names:?}");
        // Piston's routes want the key too, and refuse in Piston's shape
        let r = get(&d.tcp, None, "/api/v2/runtimes").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.json()["message"].is_string(), "{:?}", r.json());
        let r = get(&d.tcp, Some(KEY), "/api/v2/runtimes").await;
        assert_eq!(r.status, StatusCode::OK);
    });
}
