//! The real daemon (`codeexec serve`) started for one test, and requests to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use codeexec::client::{Connection, Endpoint, Reply};
use serde_json::{Value, json};

use super::bin;

/// A daemon started for one test, with its own socket; its JSON log lines are collected.
pub struct Daemon {
    pub child: Child,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub tcp: Endpoint,
    pub log: Arc<(Mutex<Vec<Value>>, Condvar)>,
}

impl Daemon {
    /// Starts `codeexec serve` with these `CODEEXEC_*` overrides on top of a temp socket,
    /// TCP on a free loopback port, JSON logs and a compile cache of its own; waits until it
    /// listens.
    pub fn start(env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(Command::new(bin()), None, env)
    }

    /// As `start`, but inside the network namespace at `netns` (e.g.
    /// `NetLab::host_ns_path`), through `nsenter --net=`. The Unix socket works across
    /// namespaces; `tcp` is then an address inside that namespace, not reachable from
    /// the test.
    pub fn start_in_netns(netns: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(Some(netns), None, env)
    }

    /// As `start`, in the network namespace at `netns` if given, with `config` (TOML) as
    /// its configuration file if given.
    pub fn start_with(netns: Option<&Path>, config: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.display())).arg("--").arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        Daemon::spawn(cmd, config, env)
    }

    /// As `start`, but first moved into the cgroup2 directory `cgroup` (as a container's
    /// process would be), by a shell that then execs the daemon.
    pub fn start_in_cgroup(cgroup: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", r#"echo $$ > "$0/cgroup.procs" && exec "$@""#]).arg(cgroup).arg(bin());
        Daemon::spawn(cmd, None, env)
    }

    /// Runs `cmd serve` (`cmd` being the binary, or a wrapper that execs it).
    fn spawn(mut cmd: Command, config: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("codeexec.sock");
        cmd.arg("serve");
        if let Some(text) = config {
            let path = dir.path().join("codeexec.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CODEEXEC_SERVER_UNIX_SOCKET", &socket)
            .env("CODEEXEC_SERVER_TCP", "127.0.0.1:0")
            .env("CODEEXEC_SERVER_LOG_FORMAT", "json")
            // each daemon its own compile cache, so hits and misses are the test's own
            .env("CODEEXEC_COMPILE_CACHE_DIR", dir.path().join("compile-cache"))
            // and its own job journal (a journal serves one daemon)
            .env("CODEEXEC_JOBS_DIR", dir.path().join("jobs"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn codeexec serve");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"message": line}));
                sink.0.lock().unwrap().push(v);
                sink.1.notify_all();
            }
        });
        // an override names the socket the daemon really uses
        let socket =
            env.iter().find(|(k, _)| *k == "CODEEXEC_SERVER_UNIX_SOCKET").map_or(socket, |(_, v)| PathBuf::from(v));
        let mut d = Daemon { child, _dir: dir, socket, tcp: Endpoint::Tcp(String::new()), log };
        let listening = d.wait_log(Duration::from_secs(120), |l| l["message"] == "listening" && l["listener"] == "tcp");
        d.tcp = Endpoint::Tcp(listening["addr"].as_str().unwrap().to_owned());
        d
    }

    /// The first log line that `pred` accepts, waiting for it (panics with the log when
    /// the daemon exits or the time is up).
    pub fn wait_log(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for a log line; log: {:#?}", *guard);
            guard = cv.wait_timeout(guard, (deadline - now).min(Duration::from_millis(200))).unwrap().0;
            if let Ok(Some(status)) = self.child.try_wait() {
                drop(guard);
                std::thread::sleep(Duration::from_millis(100)); // let the reader catch up
                panic!("the daemon exited ({status}); log: {:#?}", *self.log.0.lock().unwrap());
            }
        }
    }

    pub fn unix(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()), sig).unwrap();
    }

    /// Waits for the daemon to exit after a signal, returning its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub async fn post(endpoint: &Endpoint, key: Option<&str>, body: &Value) -> Reply {
    Connection::open(endpoint, key).await.unwrap().post_json("/v1/execute", body).await.unwrap()
}

pub async fn get(endpoint: &Endpoint, key: Option<&str>, path: &str) -> Reply {
    Connection::open(endpoint, key).await.unwrap().get(path).await.unwrap()
}

pub async fn post_to(endpoint: &Endpoint, path: &str, body: &Value) -> Reply {
    Connection::open(endpoint, None).await.unwrap().post_json(path, body).await.unwrap()
}

pub async fn delete(endpoint: &Endpoint, path: &str) -> Reply {
    let mut c = Connection::open(endpoint, None).await.unwrap();
    c.send(hyper::Method::DELETE, path, None, bytes::Bytes::new()).await.unwrap()
}

/// Polls `GET /v1/jobs/{id}` until the job has ended (or panics after `timeout`).
pub async fn wait_job(endpoint: &Endpoint, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = get(endpoint, None, &format!("/v1/jobs/{id}")).await.json();
        if matches!(v["status"].as_str(), Some("done" | "failed" | "cancelled")) {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
