//! The real daemon against hostile clients, programs and operator mistakes (issue 14): a
//! judge program printing megabytes of fake trace, clients that never read, trickle their
//! body, flood idle connections or half-close, descriptor exhaustion, an unwritable
//! stderr, bad framing, a run killed at shutdown. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;

use common::daemon::{Daemon, post, runtime};

/// A Python program that prints a fake traceback of `frames` frames and a message of
/// `message_kb` KiB on stderr, then fails.
fn fake_traceback(frames: usize, message_kb: usize) -> String {
    format!(
        "import sys\n\
         frames = '  File \"/sandbox/main.py\", line 1, in f\\n    f()\\n' * {frames}\n\
         sys.stderr.write('Traceback (most recent call last):\\n' + frames + 'ValueError: ' + 'x' * {message_kb} * 1024 + '\\n')\n\
         sys.exit(1)\n"
    )
}

#[test]
fn a_judge_test_shows_a_capped_error_parsed_from_a_window_of_stderr() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let body = json!({
        "language": "python",
        "code": fake_traceback(200_000, 512),
        "limits": {"output_kb": 16384},
        "tests": [{"stdin": ""}, {"stdin": ""}, {"stdin": ""}],
    });
    let r = runtime().block_on(post(&d.unix(), None, &body));
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "runtime_error", "{v:#}");
    for t in v["tests"].as_array().unwrap() {
        let e = &t["error"];
        assert_eq!(e["type"], "ValueError", "{e}");
        let frames = e["frames"].as_array().unwrap();
        assert!(!frames.is_empty() && frames.len() <= 64, "{} frames", frames.len());
        assert_eq!(frames[0]["file"], "main.py");
        assert!(e["message"].as_str().unwrap().len() <= 1024, "the message is capped");
        assert_eq!(t["stderr_truncated"], true);
    }
    // 3 tests of 64 KiB of stderr each, and little else
    assert!(r.body.len() < 1 << 20, "a {} byte response", r.body.len());
}

/// Opens a raw connection to the daemon's Unix socket and writes `bytes` on it.
fn raw(d: &Daemon, bytes: &[u8]) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.write_all(bytes).unwrap();
    s
}

#[test]
fn clients_trickling_their_body_take_no_place() {
    require_privileged!();
    let d = Daemon::start(&[("CODEEXEC_RUNS_CONCURRENCY", "1"), ("CODEEXEC_RUNS_QUEUE", "1")]);
    let body = json!({"language": "bash", "code": "echo fine"}).to_string();
    let head = format!(
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // five clients (more than the one slot and one queue place) that send half a body
    let slow: Vec<_> = (0..5).map(|_| raw(&d, format!("{head}{}", &body[..body.len() / 2]).as_bytes())).collect();
    std::thread::sleep(Duration::from_millis(500));
    let r = runtime().block_on(post(&d.unix(), None, &json!({"language": "bash", "code": "echo served"})));
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(v["stdout"], "served\n");
    drop(slow);
}

#[test]
fn a_client_that_never_reads_its_answer_is_dropped() {
    use std::io::Read;
    require_privileged!();
    let d = Daemon::start(&[]);
    let body = json!({
        "language": "bash",
        "code": "head -c 8000000 /dev/zero | tr '\\0' x",
        "limits": {"output_kb": 16384},
    })
    .to_string();
    let mut s = raw(
        &d,
        format!(
            "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    // the answer (over 8 MB) waits for a reader that never comes, past the write timeout
    std::thread::sleep(Duration::from_secs(45));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    assert!(end.is_ok(), "the daemon closed the connection: {end:?}");
    assert!(got.len() < 8_000_000, "the whole answer ({} bytes) was kept for a client that never read", got.len());
    // and it serves on
    let r = runtime().block_on(post(&d.unix(), None, &json!({"language": "bash", "code": "echo on"})));
    assert_eq!(r.json()["stdout"], "on\n");
}

#[test]
fn a_flood_of_idle_connections_does_not_stall_a_normal_request() {
    require_privileged!();
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard.min(8192), hard).unwrap();
    let d = Daemon::start(&[]);
    // more connections than the cap of 1024, none sending a byte
    let idle: Vec<_> = (0..1100).map(|_| raw(&d, b"")).collect();
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let r = runtime().block_on(common::daemon::get(&d.unix(), None, "/health"));
    assert_eq!(r.status, StatusCode::OK);
    // served at once (an idle connection made room), not after a header timeout
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(idle);
}

/// `codeexec serve` on a socket in `dir`, its stderr `stderr`; waits for the socket.
fn serve_with_stderr(dir: &std::path::Path, stderr: std::process::Stdio) -> std::process::Child {
    let socket = dir.join("codeexec.sock");
    let child = std::process::Command::new(common::bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CODEEXEC_SERVER_UNIX_SOCKET", &socket)
        .env("CODEEXEC_SERVER_TCP", "")
        .env("CODEEXEC_COMPILE_CACHE_DIR", dir.join("cache"))
        .env("CODEEXEC_JOBS_DIR", dir.join("jobs"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn a_daemon_whose_stderr_cannot_be_written_serves_on() {
    require_privileged!();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for stderr in [std::process::Stdio::from(full), std::process::Stdio::from(writer)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = serve_with_stderr(dir.path(), stderr);
        let endpoint = codeexec::client::Endpoint::Unix(dir.path().join("codeexec.sock"));
        for _ in 0..3 {
            let r = runtime().block_on(post(&endpoint, None, &json!({"language": "bash", "code": "echo on"})));
            assert_eq!(r.json()["stdout"], "on\n");
        }
        assert!(child.try_wait().unwrap().is_none(), "the daemon is still there");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn finished_jobs_hold_no_descriptor() {
    require_privileged!();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("codeexec.sock");
    // the daemon raises its soft limit to the hard one: both at 256
    let mut child = std::process::Command::new("prlimit")
        .args(["--nofile=256:256", "--"])
        .arg(common::bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CODEEXEC_SERVER_UNIX_SOCKET", &socket)
        .env("CODEEXEC_SERVER_TCP", "")
        .env("CODEEXEC_COMPILE_CACHE_DIR", dir.path().join("cache"))
        .env("CODEEXEC_JOBS_DIR", dir.path().join("jobs"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = codeexec::client::Endpoint::Unix(socket);
    runtime().block_on(async {
        for i in 0..300 {
            let r = common::daemon::post_to(
                &endpoint,
                "/v1/jobs",
                &json!({"language": "bash", "code": format!("echo {i}")}),
            )
            .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "job {i}: {}", r.json());
            let id = r.json()["id"].as_str().unwrap().to_owned();
            let v = common::daemon::wait_job(&endpoint, &id, Duration::from_secs(60)).await;
            assert_eq!(v["result"]["stdout"], format!("{i}\n"), "job {i}: {v}");
        }
        // 300 kept jobs later, a run still gets its descriptors
        let r = post(&endpoint, None, &json!({"language": "bash", "code": "echo on"})).await;
        assert_eq!(r.json()["stdout"], "on\n", "{}", r.json());
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
}
