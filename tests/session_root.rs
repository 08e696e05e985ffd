//! Sessions through the real daemon: state kept between cells in each stateful language,
//! files in and out (symlinks refused), a cell over its time stopped while the session
//! lives on, matplotlib figures as PNG, idle expiry (410), closed and unknown ids (404),
//! the daemon's restart (410), and the bound on open sessions. Root only.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use codeexec::client::{Connection, Endpoint, Reply};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use common::daemon::{Daemon, delete, get, post_to, runtime};

async fn open(ep: &Endpoint, body: Value) -> String {
    let r = post_to(ep, "/v1/sessions", &body).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::CREATED, "{v:#}");
    v["id"].as_str().unwrap().to_owned()
}

async fn cell(ep: &Endpoint, id: &str, code: &str) -> Value {
    let r = post_to(ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": code })).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v:#}");
    v
}

async fn send(ep: &Endpoint, method: Method, path: &str, body: &[u8]) -> Reply {
    let mut c = Connection::open(ep, None).await.unwrap();
    c.send(method, path, Some("application/octet-stream"), Bytes::copy_from_slice(body)).await.unwrap()
}

#[test]
fn each_stateful_language_keeps_a_variable_from_one_cell_to_the_next() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    let cases = [
        ("python", "x = 41", "x += 1\nprint('x is', x)\nx", "x is 42\n", Some("42")),
        ("javascript", "var x = 41", "x += 1; console.log('x is', x); x", "x is 42\n", Some("42")),
        ("typescript", "let x: number = 41", "x += 1; console.log('x is', x); x", "x is 42\n", Some("42")),
        ("ruby", "x = 41", "x += 1\nputs \"x is #{x}\"\nx", "x is 42\n", Some("42")),
        ("bash", "x=41", "x=$((x + 1)); echo \"x is $x\"", "x is 42\n", None),
    ];
    runtime().block_on(async {
        for (lang, first, second, stdout, value) in cases {
            let id = open(&ep, json!({ "language": lang })).await;
            let v = cell(&ep, &id, first).await;
            assert_eq!(v["status"], "ok", "{lang}: {v:#}");
            let v = cell(&ep, &id, second).await;
            assert_eq!(v["status"], "ok", "{lang}: {v:#}");
            assert_eq!(v["stdout"], stdout, "{lang}: {v:#}");
            assert_eq!(v["value"].as_str(), value, "{lang}: {v:#}");
            assert_eq!(v["session_alive"], true);
            let r = delete(&ep, &format!("/v1/sessions/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{lang}");
            // closed: 404, never a fresh session
            let r = post_to(&ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": "1" })).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{lang}");
        }
    });
}

#[test]
fn a_python_cell_over_its_time_is_stopped_and_the_session_lives_on() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "python" })).await;
        cell(&ep, &id, "kept = 'still here'").await;
        let r = post_to(
            &ep,
            &format!("/v1/sessions/{id}/execute"),
            &json!({ "code": "while True: pass", "timeout_ms": 300 }),
        )
        .await;
        let v = r.json();
        assert_eq!(v["status"], "time_limit", "{v:#}");
        assert_eq!(v["session_alive"], true, "{v:#}");
        let v = cell(&ep, &id, "kept").await;
        assert_eq!(v["value"], "'still here'", "{v:#}");
        // an exception is the cell's error, not the session's end
        let v = cell(&ep, &id, "1/0").await;
        assert_eq!(v["status"], "runtime_error", "{v:#}");
        assert_eq!(v["error"]["name"], "ZeroDivisionError", "{v:#}");
        assert!(v["stderr"].as_str().unwrap().contains("ZeroDivisionError"), "{v:#}");
        assert_eq!(v["session_alive"], true);
    });
}

#[test]
fn a_bash_cell_over_its_time_ends_the_session_and_says_so() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "bash" })).await;
        let r = post_to(&ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": "sleep 60", "timeout_ms": 300 }))
            .await;
        let v = r.json();
        assert_eq!(v["status"], "time_limit", "{v:#}");
        assert_eq!(v["session_alive"], false, "{v:#}");
        let r = post_to(&ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": "true" })).await;
        assert_eq!(r.status, StatusCode::GONE, "{:#}", r.json());
        assert_eq!(r.json()["error"]["code"], "session_expired");
    });
}

#[test]
fn files_go_in_and_out_and_symlinks_are_never_followed() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "python" })).await;
        let r = send(&ep, Method::PUT, &format!("/v1/sessions/{id}/files/data/in.csv"), b"a,b\n1,2\n").await;
        assert_eq!(r.status, StatusCode::OK, "{:#}", r.json());
        let v = cell(&ep, &id, "import os\nopen('data/in.csv').read().splitlines()[1]").await;
        assert_eq!(v["value"], "'1,2'", "{v:#}");
        // the program may overwrite a file we wrote (it is its own)
        let v = cell(&ep, &id, "open('data/in.csv', 'a').write('3,4\\n')").await;
        assert_eq!(v["status"], "ok", "{v:#}");
        let r = get(&ep, None, &format!("/v1/sessions/{id}/files/data/in.csv")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"a,b\n1,2\n3,4\n");
        // a symlink the sandbox made, to a host path: refused both ways
        cell(&ep, &id, "os.symlink('/etc/shadow', 'link'); os.symlink('/etc', 'dir')").await;
        let r = get(&ep, None, &format!("/v1/sessions/{id}/files/link")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:#}", r.json());
        let r = send(&ep, Method::PUT, &format!("/v1/sessions/{id}/files/dir/x"), b"no").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:#}", r.json());
        assert!(!std::path::Path::new("/etc/x").exists());
        let r = get(&ep, None, &format!("/v1/sessions/{id}/files/..%2F..%2Fetc%2Fpasswd")).await;
        assert_ne!(r.status, StatusCode::OK);
        let r = get(&ep, None, &format!("/v1/sessions/{id}/files/../../etc/passwd")).await;
        assert_ne!(r.status, StatusCode::OK);
        // delete, then it is gone
        let r = send(&ep, Method::DELETE, &format!("/v1/sessions/{id}/files/data/in.csv"), b"").await;
        assert_eq!(r.status, StatusCode::OK);
        let r = get(&ep, None, &format!("/v1/sessions/{id}/files/data/in.csv")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // files written to out/ come back with the cell
        let v = cell(&ep, &id, "os.makedirs('out', exist_ok=True)\nopen('out/r.txt', 'w').write('result')").await;
        let files = v["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{v:#}");
        assert_eq!(files[0]["name"], "out/r.txt");
        assert_eq!(files[0]["content"], "result");
    });
}

#[test]
fn a_matplotlib_figure_comes_back_as_a_png() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "python", "limits": { "memory_mb": 512 } })).await;
        let code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')";
        let r =
            post_to(&ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": code, "timeout_ms": 60000 })).await;
        let v = r.json();
        assert_eq!(v["status"], "ok", "{v:#}");
        let display = v["display"].as_array().unwrap();
        assert_eq!(display.len(), 1, "{v:#}");
        assert_eq!(display[0]["mime"], "image/png");
        let png = base64::engine::general_purpose::STANDARD.decode(display[0]["data"].as_str().unwrap()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 1000);
    });
}

#[test]
fn an_idle_session_expires_and_its_id_answers_410() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "python", "idle_timeout_s": 1 })).await;
        cell(&ep, &id, "x = 1").await;
        let listed = get(&ep, None, "/v1/sessions").await.json();
        assert!(listed["sessions"].as_array().unwrap().iter().any(|s| s["id"] == id.as_str()), "{listed:#}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = post_to(&ep, &format!("/v1/sessions/{id}/execute"), &json!({ "code": "x" })).await;
        assert_eq!(r.status, StatusCode::GONE, "{:#}", r.json());
        assert_eq!(r.json()["error"]["code"], "session_expired");
        let listed = get(&ep, None, "/v1/sessions").await.json();
        assert!(listed["sessions"].as_array().unwrap().is_empty(), "{listed:#}");
        // an id that never existed
        let r = post_to(&ep, "/v1/sessions/nosuch/execute", &json!({ "code": "x" })).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn a_frozen_idle_session_thaws_for_its_next_cell() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SESSIONS_FREEZE_AFTER_MS", "100")]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "javascript" })).await;
        cell(&ep, &id, "var n = 1").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(frozen_cgroups() >= 1, "no frozen cgroup of ours while the session idles");
        let v = cell(&ep, &id, "n + 1").await;
        assert_eq!(v["value"], "2", "{v:#}");
    });
}

/// How many of our run cgroups are frozen now (cgroup.freeze of cgroup v2, or of the
/// hybrid host's controller-less cgroup2 mount).
fn frozen_cgroups() -> usize {
    let mut n = 0;
    for parent in ["/sys/fs/cgroup/codeexec", "/sys/fs/cgroup/unified/codeexec"] {
        let Ok(dir) = std::fs::read_dir(parent) else { continue };
        for e in dir.flatten() {
            if std::fs::read_to_string(e.path().join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_restarted_daemon_answers_410_for_the_sessions_of_the_one_before() {
    require_privileged!();
    let id = {
        let d = Daemon::start(&[]);
        runtime().block_on(open(&d.unix(), json!({ "language": "bash" })))
    };
    let d = Daemon::start(&[]);
    let r = runtime().block_on(post_to(&d.unix(), &format!("/v1/sessions/{id}/execute"), &json!({ "code": "true" })));
    assert_eq!(r.status, StatusCode::GONE, "{:#}", r.json());
}

#[test]
fn open_sessions_are_bounded() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_SESSIONS_MAX", "3"), ("CODEEXEC_SESSIONS_MAX_PER_KEY", "3")]);
    let ep = d.unix();
    runtime().block_on(async {
        for _ in 0..3 {
            open(&ep, json!({ "language": "bash" })).await;
        }
        let r = post_to(&ep, "/v1/sessions", &json!({ "language": "bash" })).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:#}", r.json());
        assert_eq!(r.json()["error"]["code"], "too_many_sessions");
        // plain runs still run: idle sessions hold no run slot
        let r = post_to(&ep, "/v1/execute", &json!({ "language": "bash", "code": "echo hi" })).await;
        assert_eq!(r.json()["stdout"], "hi\n");
    });
}

#[test]
fn a_compiled_language_session_keeps_its_files_between_cells() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let ep = d.unix();
    runtime().block_on(async {
        let id = open(&ep, json!({ "language": "c" })).await;
        let code = "#include <stdio.h>\nint main(void) { FILE *f = fopen(\"count\", \"a\"); fputs(\"x\", f); fclose(f); \
                    f = fopen(\"count\", \"r\"); int n = 0; while (fgetc(f) != EOF) n++; printf(\"%d\\n\", n); }";
        let v = cell(&ep, &id, code).await;
        assert_eq!(v["stdout"], "1\n", "{v:#}");
        let v = cell(&ep, &id, code).await;
        assert_eq!(v["stdout"], "2\n", "{v:#}");
    });
}
