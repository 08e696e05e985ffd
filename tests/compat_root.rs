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
    cmd.arg(fixture("judge0_client_async.py"))
        .env("BASE", format!("http://127.0.0.1:{}/judge0", port(&d)))
        .env("TOKEN", KEY);
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

/// The README's curl examples of the dialects, as written (continuation lines joined),
/// in order.
fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("## API dialects").expect("README has the dialects' section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out = Vec::new();
    for block in section.split("```sh\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        let mut command = String::new();
        for line in block.lines().filter(|l| !l.trim_start().starts_with('#')) {
            match line.strip_suffix('\\') {
                Some(part) => command.push_str(part),
                None => {
                    command.push_str(line);
                    command.push('\n');
                }
            }
            if !line.ends_with('\\') && !line.trim().is_empty() && !command.trim().ends_with(',') {
                out.push(std::mem::take(&mut command));
            }
        }
    }
    out
}

/// Runs a README example against `socket`, its answer as JSON (or text).
fn replay(example: &str, socket: &Path) -> serde_json::Value {
    let command = example.replace("/run/codeexec/codeexec.sock", socket.to_str().unwrap());
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn the_readme_examples_of_every_dialect_answer_as_shown() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let examples = readme_examples();
    assert_eq!(examples.len(), 7, "{examples:#?}");
    let piston = replay(&examples[0], &d.socket);
    assert_eq!(
        (piston["language"].as_str(), piston["run"]["stdout"].as_str()),
        (Some("python"), Some("cba\n")),
        "{piston}"
    );
    assert!(piston["run"]["status"].is_null() && piston.get("compile").is_none(), "{piston}");
    let judge0 = replay(&examples[1], &d.socket);
    assert_eq!(judge0["status"], serde_json::json!({"id": 3, "description": "Accepted"}), "{judge0}");
    assert_eq!((judge0["stdout"].as_str(), judge0["stderr"].is_null()), (Some("hi\n"), true), "{judge0}");
    assert!(judge0["time"].is_string(), "{judge0}");
    let go = replay(&examples[2], &d.socket);
    assert_eq!(
        (go["success"].as_bool(), go["error"]["type"].as_str()),
        (Some(false), Some("ZeroDivisionError")),
        "{go}"
    );
    assert_eq!(go["error"]["line"], 2, "{go}");
    assert_eq!(
        (go["files"][0]["name"].as_str(), go["files"][0]["content"].as_str()),
        (Some("out.txt"), Some("hi")),
        "{go}"
    );
    let aggie = replay(&examples[3], &d.socket);
    let error = aggie["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Compilation Error: main.c:1:"), "{aggie}");
    assert!(error.contains("undeclared"), "{aggie}");
    let engine = replay(&examples[4], &d.socket);
    assert_eq!(engine["message"], "Execution started", "{engine}");
    let id = engine["id"].as_str().unwrap().to_owned();
    let status = examples[5].replace("8e1f…", &id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let done = loop {
        let s = replay(&status, &d.socket);
        if s["status"] == "completed" || s["status"] == "failed" {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the engine's job did not end: {s}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(done["status"], "completed", "{done}");
    let r = &done["results"];
    assert_eq!((r[0]["actual_output"].as_str(), r[0]["passed"].as_bool()), (Some("5"), Some(true)), "{done}");
    assert_eq!((r[1]["actual_output"].as_str(), r[1]["passed"].as_bool()), (Some("2"), Some(false)), "{done}");
    assert_eq!((done["all_passed"].as_bool(), done["error"].is_null()), (Some(false), true), "{done}");
    assert_eq!(r[0]["input"], "[2, 3]", "{done}");
    let codeengine = replay(&examples[6], &d.socket);
    assert_eq!(codeengine, serde_json::json!({"output": "42\n"}));
    let health = Command::new("curl")
        .args(["-s", "--unix-socket", d.socket.to_str().unwrap(), "http://localhost/codeengine/health"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "OK");
}
