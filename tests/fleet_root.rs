//! A fleet: Redis and three daemons on this machine, each daemon in its own network
//! namespace with its own state directory, cgroup parent, uid range and network subnet
//! (`tests/common/fleet.rs`), leases of 3 s. Jobs of several languages go in through any
//! daemon; a daemon is killed mid-load, another drained with SIGTERM, Redis itself killed
//! and restarted; every accepted job ends right, and only the jobs a dead daemon was
//! running run twice. Root only.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use codeexec::client::Endpoint;
use common::daemon::{Daemon, delete, get, post_to, runtime};
use common::fleet::{FleetLab, HOOK};
use hyper::StatusCode;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// A job of one of four languages whose toolchains the host has: it reads its number from
/// stdin, takes 0.2 to 0.6 s, and prints something only that number gives. Every 20th
/// asks for the network (a link of its own while it runs), every 10th has a callback.
fn job(n: usize) -> (Value, String) {
    let (language, code, out) = match n % 4 {
        0 => ("python", "import sys,time\nn=int(sys.stdin.read())\ntime.sleep(0.2+n%5*0.1)\nprint(n*n)\n", n * n),
        1 => ("bash", "read n\nsleep 0.$((n%5+2))\necho $((n*3))\n", n * 3),
        2 => (
            "c",
            "#include <stdio.h>\n#include <unistd.h>\nint main(void){int n;if(scanf(\"%d\",&n)!=1)return 1;\
             usleep(200000+n%5*100000);printf(\"%d\\n\",n+7);return 0;}\n",
            n + 7,
        ),
        _ => (
            "javascript",
            "const n=parseInt(require('fs').readFileSync(0,'utf8'));setTimeout(()=>console.log(n*2),200+n%5*100);\n",
            n * 2,
        ),
    };
    let mut body = json!({"language": language, "code": code, "stdin": n.to_string()});
    if n % 20 == 5 {
        body = json!({"language": "python", "code": "import sys,time\nn=int(sys.stdin.read())\ntime.sleep(0.3)\nprint(n)\n",
                      "stdin": n.to_string(), "network": true});
        return (body, format!("{n}\n"));
    }
    if n % 10 == 3 {
        body["callback_url"] = json!(format!("{HOOK}?n={n}"));
    }
    (body, format!("{out}\n"))
}

/// Submits until accepted (a 503 while Redis is away is retried); the job's id.
async fn submit(endpoint: &Endpoint, body: &Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = post_to(endpoint, "/v1/jobs", body).await;
        if r.status == StatusCode::ACCEPTED {
            return r.json()["id"].as_str().unwrap().to_owned();
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json());
        assert!(Instant::now() < deadline, "never accepted: {}", r.json());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every job has ended (asking the daemons in turn), returns them by id.
async fn wait_all(endpoints: &[Endpoint], ids: &[String], timeout: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + timeout;
    let mut ended = HashMap::new();
    let mut turn = 0;
    while ended.len() < ids.len() {
        for id in ids.iter().filter(|id| !ended.contains_key(*id)).cloned().collect::<Vec<_>>() {
            turn += 1;
            let r = get(&endpoints[turn % endpoints.len()], None, &format!("/v1/jobs/{id}")).await;
            let v = r.json();
            if matches!(v["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                ended.insert(id, v);
            }
        }
        assert!(Instant::now() < deadline, "{} of {} jobs ended", ended.len(), ids.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ended
}

/// The job ids a daemon logged with this message.
fn logged(d: &Daemon, message: &str) -> HashSet<String> {
    let lines = d.log.0.lock().unwrap();
    lines.iter().filter(|l| l["message"] == message).filter_map(|l| l["job"].as_str().map(str::to_owned)).collect()
}

/// Jobs a daemon started and has not ended.
fn open_runs(d: &Daemon) -> HashSet<String> {
    let ended: HashSet<String> = logged(d, "job done").union(&logged(d, "job failed")).cloned().collect();
    logged(d, "job started").difference(&ended).cloned().collect()
}

/// Starts the daemons of hosts `0..n` side by side.
fn start(lab: &FleetLab, n: usize, extra: &[(&str, &str)]) -> Vec<Daemon> {
    std::thread::scope(|s| {
        let started: Vec<_> = (0..n).map(|i| s.spawn(move || lab.daemon(i, extra))).collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Our cgroups left under a daemon's parent.
fn cgroups_left(parent: &str) -> Vec<std::path::PathBuf> {
    codeexec::cgroup::Hierarchy::detect(std::path::Path::new("/proc/self/mountinfo"), parent).unwrap().leftovers()
}

/// What Redis holds for the fleet: the entries claimed and not closed, and the jobs
/// counted pending.
fn redis_pending(lab: &FleetLab) -> (String, String) {
    let stream = format!("{}:jobs", lab.tag);
    let summary = lab.redis_cli(&["XPENDING", &stream, "workers"]);
    (summary.lines().next().unwrap_or("").to_owned(), lab.redis_cli(&["GET", &format!("{}:pending", lab.tag)]))
}

#[test]
fn a_fleet_finishes_every_job_when_a_daemon_is_killed() {
    require_privileged!();
    let lab = FleetLab::new(3, false);
    let warm = [("CODEEXEC_RUNS_WARM", "0"), ("CODEEXEC_NETWORK_ENABLED", "true")];
    let mut d = start(&lab, 3, &warm);
    let rt = runtime();
    let endpoints: Vec<Endpoint> = d.iter().map(Daemon::unix).collect();
    let mut jobs = Vec::new();
    for n in 0..300 {
        let (body, out) = job(n);
        let id = rt.block_on(submit(&endpoints[n % 3], &body));
        jobs.push((id, out, body.get("callback_url").is_some()));
    }
    // h2 dies while it runs at least two jobs
    let deadline = Instant::now() + Duration::from_secs(300);
    while open_runs(&d[1]).len() < 2 {
        assert!(Instant::now() < deadline, "h2 never ran two jobs at once");
        std::thread::sleep(Duration::from_millis(20));
    }
    d[1].signal(Signal::SIGKILL);
    d[1].wait_exit(Duration::from_secs(30));
    let (cut, started_h2) = (open_runs(&d[1]), logged(&d[1], "job started"));
    assert!(cut.len() >= 2, "{cut:?}");
    let left_by_kill = cgroups_left(&lab.cgroup_parent(1));
    assert!(!left_by_kill.is_empty(), "a killed daemon's runs leave their cgroups until it restarts");
    let alive = [endpoints[0].clone(), endpoints[2].clone()];
    let ids: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
    let ended = rt.block_on(wait_all(&alive, &ids, Duration::from_secs(600)));
    for (id, out, _) in &jobs {
        let v = &ended[id];
        assert_eq!(v["status"], "done", "{v:#}");
        assert_eq!(v["result"]["stdout"], out.as_str(), "{v:#}");
        let runs = v["runs"].as_u64().unwrap();
        // "job done" is logged once the result is written: a job h2 ended is not run again
        let expected = if cut.contains(id) { 2 } else { 1 };
        assert_eq!(runs, expected, "only the jobs the killed daemon was running run twice: {v:#}");
    }
    check_callbacks(&lab, &alive, &jobs, &started_h2);
    assert_eq!(redis_pending(&lab), ("0".into(), "0".into()), "nothing stays pending");
    // h2 comes back with its state directory and consumer name: what its runs left is gone,
    // and it runs nothing that has ended
    d[1] = lab.daemon(1, &warm);
    assert_eq!(cgroups_left(&lab.cgroup_parent(1)), Vec::<std::path::PathBuf>::new(), "was: {left_by_kill:?}");
    assert_eq!(lab.links(1), ["lo", "up0"], "no sandbox link is left");
    std::thread::sleep(Duration::from_secs(2));
    assert!(logged(&d[1], "job started").is_empty(), "the restarted daemon ran an ended job");
}

/// Every job with a callback got one, with its id as the idempotency key; only jobs h2
/// had started may have got two.
fn check_callbacks(lab: &FleetLab, alive: &[Endpoint], jobs: &[(String, String, bool)], started_h2: &HashSet<String>) {
    let rt = runtime();
    for (id, _, _) in jobs.iter().filter(|j| j.2) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = rt.block_on(get(&alive[0], None, &format!("/v1/jobs/{id}"))).json();
            if v["callback"]["state"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "callback not delivered: {v:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let counts = lab.callback_counts();
    for (id, _, with_callback) in jobs {
        let n = counts.get(id).copied().unwrap_or(0);
        match (with_callback, started_h2.contains(id)) {
            (false, _) => assert_eq!(n, 0),
            (true, false) => assert_eq!(n, 1, "job {id}"),
            (true, true) => assert!((1..=2).contains(&n), "job {id}: {n} callbacks"),
        }
    }
}

/// The daemon (index, not one of `exclude`) that started job `id`, waiting for one.
fn runner_of(d: &[Daemon], id: &str, exclude: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for (i, daemon) in d.iter().enumerate() {
            if !exclude.contains(&i) && logged(daemon, "job started").contains(id) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no daemon started job {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_job_that_kills_its_daemons_fails_after_its_limit() {
    require_privileged!();
    let lab = FleetLab::new(3, false);
    let mut d = start(&lab, 3, &[("CODEEXEC_JOBS_MAX_ATTEMPTS", "2")]);
    let rt = runtime();
    let body = json!({"language": "bash", "code": "sleep 300"});
    let id = rt.block_on(submit(&d[0].unix(), &body));
    // the daemon running it dies, twice (a job that takes its daemon down every time)
    let mut killed = Vec::new();
    for _ in 0..2 {
        let i = runner_of(&d, &id, &killed);
        d[i].signal(Signal::SIGKILL);
        d[i].wait_exit(Duration::from_secs(30));
        killed.push(i);
    }
    let last = (0..3).find(|i| !killed.contains(i)).unwrap();
    let v = rt.block_on(wait_all(&[d[last].unix()], std::slice::from_ref(&id), Duration::from_secs(120))).remove(&id);
    let v = v.unwrap();
    assert_eq!((v["status"].as_str(), v["error"]["code"].as_str()), (Some("failed"), Some("worker_lost")), "{v:#}");
    assert_eq!(v["runs"], 2, "{v:#}");
    assert!(v["error"]["message"].as_str().unwrap().contains("2 times"), "{v:#}");
    assert!(!logged(&d[last], "job started").contains(&id), "not run a third time");
    assert_eq!(redis_pending(&lab), ("0".into(), "0".into()));
}

#[test]
fn a_cancel_reaches_the_job_on_another_daemon() {
    require_privileged!();
    let lab = FleetLab::new(2, false);
    let d = start(&lab, 2, &[]);
    let rt = runtime();
    let marker = format!("600.{}", std::process::id());
    let id = rt.block_on(submit(&d[0].unix(), &json!({"language": "bash", "code": format!("sleep {marker}")})));
    let runner = runner_of(&d, &id, &[]);
    let other = 1 - runner;
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::processes_with_arg(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the job's program never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = rt.block_on(delete(&d[other].unix(), &format!("/v1/jobs/{id}")));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::processes_with_arg(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the run on the other daemon was not killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = rt.block_on(get(&d[runner].unix(), None, &format!("/v1/jobs/{id}"))).json();
    assert_eq!((v["status"].as_str(), v["result"].is_null()), (Some("cancelled"), true), "{v:#}");
    let r = rt.block_on(delete(&d[runner].unix(), &format!("/v1/jobs/{id}")));
    assert_eq!(r.status, StatusCode::CONFLICT, "it has ended, on every daemon");
}

#[test]
fn a_redis_restart_loses_no_accepted_job() {
    require_privileged!();
    let mut lab = FleetLab::new(2, true);
    // every 20th job asks for the network
    let d = start(&lab, 2, &[("CODEEXEC_NETWORK_ENABLED", "true")]);
    let rt = runtime();
    let endpoints: Vec<Endpoint> = d.iter().map(Daemon::unix).collect();
    let mut jobs = Vec::new();
    for n in 0..120 {
        if n == 60 {
            // every job accepted so far is in the AOF (fsynced before each answer)
            lab.kill_redis();
            let r = rt.block_on(post_to(&endpoints[0], "/v1/jobs", &job(1).0));
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json());
            assert_eq!(r.json()["error"]["code"], "store_unavailable");
            std::thread::sleep(Duration::from_secs(1));
            lab.start_redis();
        }
        let (body, out) = job(n);
        jobs.push((rt.block_on(submit(&endpoints[n % 2], &body)), out));
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
    let ended = rt.block_on(wait_all(&endpoints, &ids, Duration::from_secs(600)));
    for (id, out) in &jobs {
        assert_eq!(ended[id]["status"], "done", "{:#}", ended[id]);
        assert_eq!(ended[id]["result"]["stdout"], out.as_str());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while redis_pending(&lab) != ("0".into(), "0".into()) {
        assert!(Instant::now() < deadline, "left pending: {:?}", redis_pending(&lab));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_drains_a_daemon_and_its_peers_take_its_jobs_at_once() {
    require_privileged!();
    let lab = FleetLab::new(3, false);
    let mut d = start(&lab, 3, &[("CODEEXEC_SERVER_SHUTDOWN_GRACE_MS", "1000")]);
    let rt = runtime();
    let body = json!({"language": "bash", "code": "sleep 4; echo slept"});
    let ids: Vec<String> = (0..12).map(|n| rt.block_on(submit(&d[n % 3].unix(), &body))).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while open_runs(&d[2]).len() < 2 {
        assert!(Instant::now() < deadline, "h3 never ran two jobs");
        std::thread::sleep(Duration::from_millis(20));
    }
    d[2].signal(Signal::SIGTERM);
    assert_eq!(d[2].wait_exit(Duration::from_secs(60)), 0);
    let handed_back = logged(&d[2], "the daemon is stopping: the job is handed back");
    assert!(!handed_back.is_empty(), "its 4 s jobs outlast a 1 s grace: they are handed back");
    // handed back, not left to a lease: nothing is claimed by h3 any more
    let stream = format!("{}:jobs", lab.tag);
    assert_eq!(lab.redis_cli(&["XPENDING", &stream, "workers", "-", "+", "100", "h3"]), "");
    let alive = [d[0].unix(), d[1].unix()];
    let ended = rt.block_on(wait_all(&alive, &ids, Duration::from_secs(300)));
    for id in &ids {
        let v = &ended[id];
        assert_eq!((v["status"].as_str(), v["result"]["stdout"].as_str()), (Some("done"), Some("slept\n")), "{v:#}");
        assert_eq!(v["runs"], 1, "a job handed back is not counted as a lost run (a lease's takeover would be)");
    }
}
