//! One conformance suite for every store (in memory, the SQLite journal, Redis), then what
//! only the durable ones do (a restart, the poison limit) and what only a fleet does
//! (claims taken over, guarded heartbeats, cancels across daemons). The Redis tests start
//! a `redis-server` of their own on a Unix socket in a temporary directory, with its
//! append-only file on, as a fleet's should be.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A `redis-server` for one test, stopped when dropped.
pub(crate) struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocketperm", "700", "--save", "", "--appendonly", "yes"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: apt-get install redis-server (.ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisServer { child, dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("redis.sock").display())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Disk,
    Fleet,
}

fn bounds() -> Bounds {
    Bounds {
        retention: Duration::from_secs(3600),
        max_pending: 100,
        max_finished: 100,
        max_bytes: 1 << 20,
        max_attempts: 3,
    }
}

/// A store and what it lives in; `reopen` makes another store on the same place (a
/// restarted daemon), `peer` another daemon of the same fleet.
struct Harness {
    kind: Kind,
    bounds: Bounds,
    dir: tempfile::TempDir,
    redis: Option<RedisServer>,
    store: Arc<dyn JobStore>,
}

impl Harness {
    async fn new(kind: Kind, bounds: Bounds) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let redis = (kind == Kind::Fleet).then(RedisServer::start);
        let mut h = Harness { kind, bounds, dir, redis, store: Arc::new(LocalStore::memory(bounds)) };
        h.store = h.open("a").await;
        h
    }

    async fn open(&self, consumer: &str) -> Arc<dyn JobStore> {
        match self.kind {
            Kind::Memory => Arc::new(LocalStore::memory(self.bounds)),
            Kind::Disk => Arc::new(LocalStore::open(&self.dir.path().join("jobs"), false, self.bounds).unwrap()),
            Kind::Fleet => {
                let config = FleetConfig {
                    url: self.redis.as_ref().unwrap().url(),
                    consumer: consumer.into(),
                    prefix: "t:".into(),
                    lease: Duration::from_millis(900),
                    block: Duration::from_millis(200),
                };
                Arc::new(FleetStore::open(config, self.bounds).await.unwrap())
            }
        }
    }

    /// The store dropped and opened again on the same place, as a restarted daemon.
    async fn restart(&mut self) {
        self.store = Arc::new(LocalStore::memory(self.bounds));
        self.store = self.open("a").await;
    }
}

fn new_job(owner: Option<&str>, key: Option<&str>, callback: bool) -> NewJob {
    NewJob {
        id: uuid::Uuid::new_v4().simple().to_string(),
        owner: owner.map(str::to_owned),
        request: br#"{"language":"python","code":"print(1)"}"#.to_vec(),
        callback: callback.then(|| Callback {
            url: "https://example.com/hook?t=x".into(),
            host: "example.com".into(),
            state: CallbackState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
        }),
        idempotency_key: key.map(str::to_owned),
    }
}

async fn submit(s: &dyn JobStore, job: NewJob) -> Job {
    match s.submit(job).await.unwrap() {
        Submitted::Accepted(j) => j,
        Submitted::Existing(j) => panic!("a new job was answered as existing: {j:?}"),
    }
}

/// Takes claims until one for `id` comes, or panics (a test with several jobs takes them
/// with `take_all`).
async fn take_id(s: &dyn JobStore, id: &str) -> Claim {
    take_all(s, &[id]).await.pop().unwrap()
}

/// Takes claims until there is one for each of `ids` (in that order), or panics.
async fn take_all(s: &dyn JobStore, ids: &[&str]) -> Vec<Claim> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got: Vec<Claim> = Vec::new();
    while ids.iter().any(|id| !got.iter().any(|c| c.id == *id)) {
        assert!(Instant::now() < deadline, "not every one of {ids:?} was handed out: {got:?}");
        got.extend(s.take(10, Duration::from_millis(200)).await.unwrap());
    }
    ids.iter().map(|id| got.iter().find(|c| c.id == *id).unwrap().clone()).collect()
}

async fn run(s: &dyn JobStore, claim: &Claim) -> Job {
    match s.start(claim).await.unwrap() {
        Started::Run(j, request) => {
            assert!(request.starts_with(b"{\"language\""), "the request comes back as it went in");
            j
        }
        other => panic!("expected a run, got {other:?}"),
    }
}

fn done(v: serde_json::Value) -> Outcome {
    Outcome::Done(v)
}

async fn life_of_a_job(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(Some("k1"), None, false)).await;
    assert_eq!(j.status, State::Queued);
    let got = s.get(&j.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.owner.as_deref(), got.runs), (State::Queued, Some("k1"), 0));
    assert_eq!(s.pending().await.unwrap(), 1);
    let claim = take_id(s, &j.id).await;
    let running = run(s, &claim).await;
    assert_eq!((running.status, running.runs), (State::Running, 1));
    assert!(running.started_at.is_some());
    assert_eq!(s.get(&j.id).await.unwrap().unwrap().status, State::Running);
    assert_eq!(s.heartbeat(std::slice::from_ref(&claim)).await.unwrap(), vec![Lease::Held]);
    let ended = s.finish(&claim, done(json!({"status": "ok", "n": 12345678901234_u64}))).await.unwrap().unwrap();
    assert_eq!(ended.status, State::Done);
    let got = s.get(&j.id).await.unwrap().unwrap();
    assert_eq!(got.result, Some(json!({"status": "ok", "n": 12345678901234_u64})), "the result comes back exactly");
    assert!(got.finished_at.unwrap() >= got.created_at);
    assert_eq!(s.pending().await.unwrap(), 0);
    assert!(s.take(1, Duration::from_millis(100)).await.unwrap().is_empty(), "nothing else to take");
    assert!(s.get("0123").await.unwrap().is_none());
}

async fn the_first_result_written_stands(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, None, false)).await;
    let claim = take_id(s, &j.id).await;
    run(s, &claim).await;
    assert!(s.finish(&claim, done(json!(1))).await.unwrap().is_some());
    assert!(s.finish(&claim, done(json!(2))).await.unwrap().is_none(), "a second result is not written");
    let failed = Outcome::Failed(Failure { code: "internal_error".into(), message: "late".into() });
    assert!(s.finish(&claim, failed).await.unwrap().is_none());
    let got = s.get(&j.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.result), (State::Done, Some(json!(1))));
    assert_eq!(s.pending().await.unwrap(), 0, "counted once");
}

async fn a_cancelled_queued_job_never_runs(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, None, true)).await;
    let Cancelled::Now(c) = s.cancel(&j.id, "asked").await.unwrap() else { panic!("not cancelled") };
    assert_eq!(c.status, State::Cancelled);
    assert_eq!(c.error.as_ref().unwrap().code, "cancelled");
    assert_eq!(c.callback.as_ref().unwrap().state, CallbackState::Failed, "a cancelled job's callback is not sent");
    for claim in s.take(10, Duration::from_millis(300)).await.unwrap() {
        assert!(matches!(s.start(&claim).await.unwrap(), Started::Skip), "a cancelled job is not started");
    }
    assert_eq!(s.pending().await.unwrap(), 0);
    assert!(matches!(s.cancel(&j.id, "again").await.unwrap(), Cancelled::Ended(_)));
    assert!(matches!(s.cancel("nope", "x").await.unwrap(), Cancelled::Unknown));
}

async fn a_cancelled_running_job_keeps_its_cancel(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, None, false)).await;
    let claim = take_id(s, &j.id).await;
    run(s, &claim).await;
    assert!(matches!(s.cancel(&j.id, "asked").await.unwrap(), Cancelled::Now(_)));
    assert_eq!(s.heartbeat(std::slice::from_ref(&claim)).await.unwrap(), vec![Lease::Cancelled]);
    assert!(s.finish(&claim, done(json!(1))).await.unwrap().is_none(), "the killed run's result is not written");
    let got = s.get(&j.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.result), (State::Cancelled, None));
    assert_eq!(s.pending().await.unwrap(), 0);
}

async fn an_idempotency_key_answers_the_first_job(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let first = submit(s, new_job(Some("k1"), Some("order-7"), false)).await;
    match s.submit(new_job(Some("k1"), Some("order-7"), false)).await.unwrap() {
        Submitted::Existing(j) => assert_eq!(j.id, first.id),
        Submitted::Accepted(j) => panic!("a second job {} for the same key", j.id),
    }
    let other = submit(s, new_job(Some("k2"), Some("order-7"), false)).await;
    assert_ne!(other.id, first.id, "another owner's key is another key");
    assert_eq!(s.pending().await.unwrap(), 2);
}

async fn pending_jobs_are_bounded(kind: Kind) {
    let h = Harness::new(kind, Bounds { max_pending: 2, ..bounds() }).await;
    let s = &*h.store;
    let a = submit(s, new_job(None, None, false)).await;
    submit(s, new_job(None, None, false)).await;
    let err = s.submit(new_job(None, None, false)).await.unwrap_err();
    assert!(matches!(err, StoreError::Busy(_) | StoreError::QueueFull { .. }), "{err:?}");
    let claim = take_id(s, &a.id).await;
    run(s, &claim).await;
    s.finish(&claim, done(json!(1))).await.unwrap();
    submit(s, new_job(None, None, false)).await;
}

async fn finished_jobs_are_forgotten_after_their_retention(kind: Kind) {
    let h = Harness::new(kind, Bounds { retention: Duration::from_millis(400), ..bounds() }).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, Some("k"), false)).await;
    let claim = take_id(s, &j.id).await;
    run(s, &claim).await;
    s.finish(&claim, done(json!(1))).await.unwrap();
    assert!(s.get(&j.id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(s.get(&j.id).await.unwrap().is_none(), "gone after its retention");
    // so is its idempotency key: the same key makes a new job
    submit(s, new_job(None, Some("k"), false)).await;
}

async fn a_released_job_runs_again(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, None, false)).await;
    let claim = take_id(s, &j.id).await;
    run(s, &claim).await;
    s.release(&claim).await.unwrap();
    let got = s.get(&j.id).await.unwrap().unwrap();
    if kind == Kind::Memory {
        // nothing in memory outlives the daemon: handing back means cancelling
        assert_eq!(got.status, State::Cancelled);
        return;
    }
    assert_eq!((got.status, got.runs), (State::Queued, 0), "handed back, not counted as a run");
    let again = take_id(s, &j.id).await;
    assert_eq!(run(s, &again).await.runs, 1);
}

async fn a_callback_is_recorded(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let s = &*h.store;
    let j = submit(s, new_job(None, None, true)).await;
    let claim = take_id(s, &j.id).await;
    run(s, &claim).await;
    let ended = s.finish(&claim, done(json!(1))).await.unwrap().unwrap();
    let mut cb = ended.callback.unwrap();
    assert_eq!(cb.state, CallbackState::Pending);
    cb.state = CallbackState::Delivered;
    cb.attempts = 2;
    cb.last_status = Some(200);
    s.callback_progress(&j.id, &cb).await.unwrap();
    s.close(&claim).await.unwrap();
    assert_eq!(s.get(&j.id).await.unwrap().unwrap().callback.unwrap(), cb);
}

async fn take_wakes_when_a_job_comes(kind: Kind) {
    let h = Harness::new(kind, bounds()).await;
    let store = Arc::clone(&h.store);
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        loop {
            let got = store.take(1, Duration::from_secs(20)).await.unwrap();
            if !got.is_empty() || started.elapsed() > Duration::from_secs(20) {
                return (got, started.elapsed());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let j = submit(&*h.store, new_job(None, None, false)).await;
    let (got, took) = waiting.await.unwrap();
    assert_eq!(got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![j.id.as_str()]);
    assert!(took < Duration::from_secs(5), "woken by the submission, not by its timeout: {took:?}");
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$test(Kind::Memory).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(Kind::Disk).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$test(Kind::Fleet).await;
            }
        }
    )*};
}

conformance!(
    life_of_a_job,
    the_first_result_written_stands,
    a_cancelled_queued_job_never_runs,
    a_cancelled_running_job_keeps_its_cancel,
    an_idempotency_key_answers_the_first_job,
    pending_jobs_are_bounded,
    finished_jobs_are_forgotten_after_their_retention,
    a_released_job_runs_again,
    a_callback_is_recorded,
    take_wakes_when_a_job_comes,
);

/// A restarted daemon (same journal, or same consumer name) finds every job: a queued one
/// is queued, a running one runs again (its second run), a finished one answers, and one
/// whose callback was not delivered is handed out to deliver it.
async fn a_restart_finds_every_job(kind: Kind) {
    let mut h = Harness::new(kind, bounds()).await;
    let s = Arc::clone(&h.store);
    let running = submit(&*s, new_job(None, None, false)).await;
    let claim = take_id(&*s, &running.id).await;
    run(&*s, &claim).await;
    let calling = submit(&*s, new_job(None, None, true)).await;
    let c2 = take_id(&*s, &calling.id).await;
    run(&*s, &c2).await;
    let mut cb = s.finish(&c2, done(json!("r"))).await.unwrap().unwrap().callback.unwrap();
    cb.state = CallbackState::Delivering;
    s.callback_progress(&calling.id, &cb).await.unwrap();
    let finished = submit(&*s, new_job(None, None, false)).await;
    let c3 = take_id(&*s, &finished.id).await;
    run(&*s, &c3).await;
    s.finish(&c3, done(json!("f"))).await.unwrap();
    let queued = submit(&*s, new_job(None, None, false)).await;
    drop(s);
    h.restart().await;
    let s = &*h.store;
    assert_eq!(s.get(&finished.id).await.unwrap().unwrap().result, Some(json!("f")));
    assert_eq!(s.get(&queued.id).await.unwrap().unwrap().status, State::Queued);
    assert_eq!(s.pending().await.unwrap(), 2, "the running and the queued job");
    let [again, q, cc] = <[Claim; 3]>::try_from(take_all(s, &[&running.id, &queued.id, &calling.id]).await).unwrap();
    assert_eq!(run(s, &again).await.runs, 2, "the job that was running runs again");
    assert_eq!(run(s, &q).await.runs, 1);
    match s.start(&cc).await.unwrap() {
        Started::Callback(j) => assert_eq!(j.result, Some(json!("r"))),
        other => panic!("expected the callback to deliver, got {other:?}"),
    }
}

/// A job whose daemon dies at every run fails with `worker_lost` once it has been handed
/// out `max_attempts` times.
async fn a_job_that_kills_its_daemon_fails_after_its_limit(kind: Kind) {
    let mut h = Harness::new(kind, Bounds { max_attempts: 2, ..bounds() }).await;
    let j = submit(&*h.store, new_job(None, None, false)).await;
    for attempt in 1..=2 {
        let s = Arc::clone(&h.store);
        let claim = take_id(&*s, &j.id).await;
        assert_eq!(run(&*s, &claim).await.runs, attempt);
        drop(s);
        h.restart().await;
    }
    let s = &*h.store;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for claim in s.take(10, Duration::from_millis(200)).await.unwrap() {
            assert!(!matches!(s.start(&claim).await.unwrap(), Started::Run(..)), "run a third time");
        }
        let got = s.get(&j.id).await.unwrap().unwrap();
        if got.status == State::Failed {
            assert_eq!(got.error.unwrap().code, "worker_lost");
            assert_eq!(s.pending().await.unwrap(), 0);
            return;
        }
        assert!(Instant::now() < deadline, "never failed: {got:?}");
    }
}

macro_rules! durable {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(Kind::Disk).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$test(Kind::Fleet).await;
            }
        }
    )*};
}

durable!(a_restart_finds_every_job, a_job_that_kills_its_daemon_fails_after_its_limit);

#[tokio::test]
async fn a_journal_directory_serves_one_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let _a = LocalStore::open(dir.path(), false, bounds()).unwrap();
    let err = LocalStore::open(dir.path(), false, bounds()).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path().join("jobs.db")), 0o600, "it holds requests and callback URLs");
}

/// Two daemons of a fleet: a claim not renewed for a lease is taken over; the late daemon's
/// heartbeat learns it lost it and takes nothing back; its full result, written first,
/// stands, and the second run finds the job ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_takes_over_a_silent_daemons_job() {
    let h = Harness::new(Kind::Fleet, bounds()).await;
    let (a, b) = (Arc::clone(&h.store), h.open("b").await);
    let j = submit(&*a, new_job(None, None, false)).await;
    let ca = take_id(&*a, &j.id).await;
    run(&*a, &ca).await;
    assert!(b.take(5, Duration::from_millis(100)).await.unwrap().is_empty(), "a's claim is fresh");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let cb = take_id(&*b, &j.id).await;
    assert_eq!(run(&*b, &cb).await.runs, 2);
    assert_eq!(a.heartbeat(std::slice::from_ref(&ca)).await.unwrap(), vec![Lease::Lost]);
    assert_eq!(b.heartbeat(std::slice::from_ref(&cb)).await.unwrap(), vec![Lease::Held], "a took nothing back");
    assert!(a.finish(&ca, done(json!("a"))).await.unwrap().is_some(), "a's run ended first: its result stands");
    assert!(b.finish(&cb, done(json!("b"))).await.unwrap().is_none());
    assert_eq!(b.get(&j.id).await.unwrap().unwrap().result, Some(json!("a")));
    assert_eq!(b.pending().await.unwrap(), 0);
}

/// A cancel sent to one daemon reaches the one running the job, on the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_daemon_running_the_job() {
    let h = Harness::new(Kind::Fleet, bounds()).await;
    let (a, b) = (Arc::clone(&h.store), h.open("b").await);
    let mut cancels = a.watch_cancels().expect("a fleet store tells of cancels");
    let j = submit(&*b, new_job(None, None, false)).await;
    let ca = take_id(&*a, &j.id).await;
    run(&*a, &ca).await;
    assert!(matches!(b.cancel(&j.id, "asked").await.unwrap(), Cancelled::Now(_)));
    let id = tokio::time::timeout(Duration::from_secs(5), cancels.recv()).await.unwrap().unwrap();
    assert_eq!(id, j.id);
    assert_eq!(a.heartbeat(std::slice::from_ref(&ca)).await.unwrap(), vec![Lease::Cancelled]);
}
