//! One daemon and its job journal (the default store): killed outright mid-load and
//! started again on the same journal, it still knows every job; the finished ones answer
//! as before, the queued ones run, and the ones it was running run again. Root only.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, get, post_to, runtime};
use hyper::StatusCode;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// A callback receiver on 127.0.0.1: answers 200 and records each job id it is told.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{BufRead, BufReader, Read, Write};
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut line, mut len, mut key) = (String::new(), 0usize, String::new());
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("idempotency-key:") {
                    key = v.trim().to_owned();
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            sink.lock().unwrap().push(key);
            let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

fn ended_log(d: &Daemon, message: &str) -> HashSet<String> {
    let lines = d.log.0.lock().unwrap();
    lines.iter().filter(|l| l["message"] == message).filter_map(|l| l["job"].as_str().map(str::to_owned)).collect()
}

#[test]
fn a_killed_daemon_finds_every_job_on_its_journal() {
    require_privileged!();
    let dir = tempfile::tempdir().unwrap();
    let jobs_dir = dir.path().join("jobs").display().to_string();
    let (hook, seen) = receiver();
    let env = [
        ("CODEEXEC_JOBS_DIR", jobs_dir.as_str()),
        ("CODEEXEC_RUNS_CONCURRENCY", "2"),
        ("CODEEXEC_CALLBACKS_ALLOW_NETWORKS", "127.0.0.1/32"),
    ];
    let mut d = Daemon::start(&env);
    let rt = runtime();
    let mut jobs: Vec<(String, String, bool)> = Vec::new();
    for n in 0..50 {
        let (language, code) = if n % 2 == 0 {
            ("python", "import sys,time\nn=int(sys.stdin.read())\ntime.sleep(0.3+n%4*0.2)\nprint(n*n)\n")
        } else {
            ("bash", "read n\nsleep 0.$((n%4*2+3))\necho $((n*n))\n")
        };
        let mut body = json!({"language": language, "code": code, "stdin": n.to_string()});
        if n % 7 == 0 {
            body["callback_url"] = json!(hook);
        }
        let r = rt.block_on(post_to(&d.unix(), "/v1/jobs", &body));
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
        jobs.push((r.json()["id"].as_str().unwrap().to_owned(), format!("{}\n", n * n), n % 7 == 0));
    }
    // killed while it runs jobs, some done, most still queued
    let deadline = Instant::now() + Duration::from_secs(300);
    while ended_log(&d, "job done").len() < 10 || running(&d).len() < 2 {
        assert!(Instant::now() < deadline, "the daemon never got ten jobs done with two running");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.signal(Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(30));
    let (cut, done_before) = (running(&d), ended_log(&d, "job done"));
    let d = Daemon::start(&env);
    let ids: Vec<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
    let ended = rt.block_on(wait_ended(&d, &ids));
    for (id, out, _) in &jobs {
        let v = &ended[ids.iter().position(|i| i == id).unwrap()];
        assert_eq!((v["status"].as_str(), v["result"]["stdout"].as_str()), (Some("done"), Some(out.as_str())), "{v:#}");
        let runs = if cut.contains(id) { 2 } else { 1 };
        assert_eq!(v["runs"], runs, "only the runs cut by the kill run again: {v:#}");
    }
    assert!(ended_log(&d, "job started").is_disjoint(&done_before), "a finished job was not run again");
    for (id, _, with_callback) in jobs.iter().filter(|j| j.2) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.lock().unwrap().contains(id) {
            assert!(Instant::now() < deadline, "no callback for {id} (with_callback {with_callback})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Jobs the daemon logged as started and not ended.
fn running(d: &Daemon) -> HashSet<String> {
    let ended: HashSet<String> = ended_log(d, "job done").union(&ended_log(d, "job failed")).cloned().collect();
    ended_log(d, "job started").difference(&ended).cloned().collect()
}

async fn wait_ended(d: &Daemon, ids: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut all = Vec::new();
        for id in ids {
            let r = get(&d.unix(), None, &format!("/v1/jobs/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "every job is still known: {}", r.json());
            all.push(r.json());
        }
        if all.iter().all(|v| matches!(v["status"].as_str(), Some("done" | "failed" | "cancelled"))) {
            return all;
        }
        assert!(Instant::now() < deadline, "not every job ended");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
