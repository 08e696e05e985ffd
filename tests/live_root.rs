//! Live runs through the real daemon with real clients (`tests/live/client.py`: the
//! `websockets` package for `GET /v1/connect`, plain sockets for NDJSON and SSE): order and
//! timing of events, interactive stdin in a compiled language, a signal, stdin over the
//! limit, a client that hangs up or stops reading (its run killed, nothing left), and a
//! thousand open WebSockets. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use codeexec::client::Endpoint;
use common::daemon::Daemon;
use serde_json::Value;

/// The virtualenv `.ci/run` makes with the pinned `websockets`.
const VENV: &str = "/var/cache/codeexec/websockets-15.0.1";

/// Runs one scenario of the client against `d`; returns what it printed.
fn client(d: &Daemon, scenario: &str) -> Value {
    client_marked(d, scenario, "-")
}

/// As `client`, the program getting `marker` as its argument.
fn client_marked(d: &Daemon, scenario: &str, marker: &str) -> Value {
    let python = format!("{VENV}/bin/python");
    assert!(std::path::Path::new(&python).exists(), "{python} is missing: .ci/run makes it (pip install websockets)");
    let Endpoint::Tcp(tcp) = &d.tcp else { panic!("no TCP listener") };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live/client.py");
    let out = Command::new(python).args([script, scenario, tcp, d.socket.to_str().unwrap(), marker]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client {scenario} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("client printed no JSON ({e}): {stderr}"))
}

/// Waits until no process has `marker` as an argument (the killed run's), or fails.
fn none_left(marker: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !common::processes_with_arg(marker).is_empty() {
        assert!(Instant::now() < deadline, "the run's processes are left: {:?}", common::processes_with_arg(marker));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn types(v: &Value) -> Vec<&str> {
    v["types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect()
}

#[test]
fn ndjson_and_sse_stream_in_order_and_at_once() {
    require_privileged!();
    let d = Daemon::start(&[]);
    for scenario in ["ndjson", "sse"] {
        let v = client(&d, scenario);
        assert_eq!(v["status"], "HTTP/1.1 200 OK", "{v}");
        let t = types(&v);
        assert_eq!(t.first(), Some(&"run:started"), "{v}");
        assert_eq!(&t[t.len() - 2..], ["run:ended", "result"], "{v}");
        assert!(t[1..t.len() - 2].iter().all(|t| *t == "stdout"), "{v}");
        assert_eq!(v["stdout"], "first\nsecond\n");
        assert_eq!(v["result"], "ok");
        // the program sleeps 1.5 s between its lines: the first came while it ran
        assert!(v["first_before_end_s"].as_f64().unwrap() > 1.0, "{v}");
    }
}

#[test]
fn a_compiled_program_is_interactive_on_the_websocket() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let v = client(&d, "interactive_c");
    let t = types(&v);
    assert_eq!(&t[..3], ["compile:started", "compile:ended", "run:started"], "{v}");
    assert_eq!(&t[t.len() - 2..], ["run:ended", "result"], "{v}");
    assert_eq!(v["stdout"], "name? hello Ada\nname? hello Grace\nname? bye\n");
    assert_eq!(v["result"], "ok");
}

#[test]
fn a_signal_reaches_the_program() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let v = client(&d, "signal");
    assert_eq!(v["stdout"], "ready\ninterrupted\n", "{v}");
    assert_eq!(v["result"], "runtime_error");
    assert_eq!(v["exit_code"], 3);
}

#[test]
fn bad_messages_and_stdin_over_the_limit_are_refused() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SERVER_MAX_BODY_KB", "2048")]);
    let v = client(&d, "refusals");
    assert_eq!(v["bad_first"]["type"], "error", "{v}");
    assert_eq!(v["bad_first"]["error"]["code"], "invalid_request", "{v}");
    assert_eq!(v["refused"]["error"]["code"], "invalid_request", "{v}");
    assert!(v["refused"]["error"]["message"].as_str().unwrap().contains("over the limit"), "{v}");
    // what was taken before the refusal, and after it
    assert_eq!(v["stdout"], format!("{}\n", (3 << 19) + 3));
}

#[test]
fn a_client_that_hangs_up_or_stops_reading_has_its_run_killed() {
    require_privileged!();
    let mut d = Daemon::start(&[]);
    let marker = format!("live-{}", std::process::id());
    client_marked(&d, "hang_up", &marker);
    d.wait_log(Duration::from_secs(30), |l| l["message"] == "live run killed: its client went away or stalled");
    none_left(&marker, Duration::from_secs(30));
    let started = Instant::now();
    let v = client_marked(&d, "stalled", &marker);
    assert_eq!(v["stalled"], true);
    // killed while the client still held its socket (it reads nothing for 40 s)
    let killed =
        d.wait_log(Duration::from_secs(5), |l| l["message"] == "live client stalled: closing it and killing its run");
    assert!(killed.is_object());
    assert!(started.elapsed() < Duration::from_secs(90));
    none_left(&marker, Duration::from_secs(30));
}

#[test]
fn a_thousand_websockets_stay_open_and_answered() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let v = client(&d, "many");
    assert_eq!(v["opened"], 1000, "{v}");
    assert_eq!(v["answered"], 10, "{v}");
}
