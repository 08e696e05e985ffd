//! MCP through the real daemon with the official MCP Python SDK as the client (the `mcp`
//! package in the virtualenv `.ci/run` makes): every tool over streamable HTTP on the Unix
//! socket, on TCP with an API key, and over `codeexec mcp` (stdio), each with the
//! 2025-11-25 handshake and with 2026-07-28. Root only.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::process::Command;

use codeexec::client::Endpoint;
use hyper::StatusCode;
use serde_json::json;

use common::bin;
use common::daemon::{Daemon, runtime};

const KEY: &str = "mcp-test-key-0123456789abcdef";
const PYTHON: &str = "/var/cache/codeexec/mcp-venv/bin/python";

fn client(target: &str, mode: &str, key: Option<&str>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_client.py");
    assert!(std::path::Path::new(PYTHON).exists(), "{PYTHON} is missing: .ci/run makes it (pip install mcp)");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script).arg(target).arg(mode);
    if let Some(k) = key {
        cmd.arg(k);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{target} {mode}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_official_python_sdk_calls_every_tool_over_each_transport_and_version() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SERVER_API_KEYS", KEY)]);
    let unix = format!("unix:{}", d.socket.display());
    let Endpoint::Tcp(addr) = &d.tcp else { unreachable!() };
    let http = format!("http://{addr}");
    let stdio = format!("stdio:{}:{unix}", bin());
    for mode in ["legacy", "2026-07-28"] {
        client(&unix, mode, None);
        client(&http, mode, Some(KEY));
        client(&stdio, mode, None);
    }
}

#[test]
fn mcp_on_tcp_needs_the_key_and_is_stateless() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SERVER_API_KEYS", KEY)]);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let r = runtime().block_on(common::daemon::post_to(&d.tcp, "/mcp", &body));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // stateless: no stream to open, no MCP session to end
    let r = runtime().block_on(common::daemon::get(&d.unix(), None, "/mcp"));
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}
