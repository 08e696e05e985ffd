//! Callbacks against small HTTP servers on 127.0.0.1 (allowed through `allow_networks`),
//! the address table, URL syntax and signatures. No test sends anything beyond loopback:
//! refusals of other addresses are checked with a connector that only records.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::PrivateKeyDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::delivery::{Attempt, Step, backoff, deliver_via, next_step, retry_after};
use super::network::forbidden;
use super::*;

mod rules;

const SECRET: &[u8] = b"test secret";

fn net(s: &str) -> Network {
    s.parse().unwrap()
}

/// Loopback allowed, quick retries, a generous per-attempt timeout (the machine may be busy).
fn local_policy() -> Policy {
    Policy {
        secret: Some(SECRET.to_vec()),
        allow_networks: vec![net("127.0.0.1/32")],
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..Policy::default()
    }
}

/// A request as the test server saw it.
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Answer = Arc<dyn Fn(usize) -> Response<Full<Bytes>> + Send + Sync>;

/// An HTTP server on 127.0.0.1 that records each request and answers the `n`th (from 0)
/// with `answer(n)`. Stopped when dropped.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(answer: impl Fn(usize) -> Response<Full<Bytes>> + Send + Sync + 'static) -> Server {
        Server::start_with(None, Arc::new(answer)).await
    }

    /// The same over TLS with `certified`'s certificate.
    async fn start_tls(certified: &rcgen::CertifiedKey<rcgen::KeyPair>, answer: Answer) -> Server {
        let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        Server::start_with(Some(TlsAcceptor::from(Arc::new(config))), answer).await
    }

    async fn start_with(tls: Option<TlsAcceptor>, answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, tls, seen.clone(), answer));
        Server { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, seen: Arc<Mutex<Vec<Seen>>>, answer: Answer) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (seen, answer, tls) = (seen.clone(), answer.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_one(stream, seen, answer).await,
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_one(stream, seen, answer).await;
                    }
                }
            }
        });
    }
}

async fn serve_one<S>(stream: S, seen: Arc<Mutex<Vec<Seen>>>, answer: Answer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (seen, answer) = (seen.clone(), answer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Seen { path, headers: parts.headers, body });
                seen.len() - 1
            };
            Ok::<_, Infallible>(answer(n))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} header"))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn delivers_signed_with_every_header() {
    let server = Server::start(|_| status(200)).await;
    let policy = local_policy();
    let target = check(&server.url("/hook?token=abc"), &policy).await.unwrap();
    let body = Bytes::from_static(br#"{"id":"job-1","status":"ok"}"#);
    let d = deliver(&target, "job-1", body.clone(), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status, d.error.as_deref()), (Outcome::Delivered, 1, Some(200), None));

    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (h, got) = (&seen[0].headers, &seen[0].body);
    assert_eq!(seen[0].path, "/hook?token=abc");
    assert_eq!(got, &body);
    assert_eq!(header(h, "host"), server.addr.to_string());
    assert_eq!(header(h, "content-type"), "application/json");
    assert_eq!(header(h, "user-agent"), format!("codeexec/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(header(h, "x-codeexec-job"), "job-1");
    assert_eq!(header(h, "idempotency-key"), "job-1");
    assert_eq!(header(h, "x-codeexec-delivery"), "1");
    let ts = header(h, "x-codeexec-timestamp");
    assert!(ts.parse::<u64>().unwrap().abs_diff(now_secs()) < 300, "timestamp {ts}");
    let sig = header(h, "x-codeexec-signature");
    assert!(verify(SECRET, ts, got, sig), "signature {sig} does not verify");
    assert!(!verify(b"another secret", ts, got, sig));
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let server = Server::start(|_| status(204)).await;
    let policy = Policy { secret: None, ..local_policy() };
    let target = check(&server.url("/"), &policy).await.unwrap();
    let d = deliver(&target, "j", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.status), (Outcome::Delivered, Some(204)));
    let seen = server.seen.lock().unwrap();
    assert!(seen[0].headers.get("x-codeexec-signature").is_none());
    assert!(seen[0].headers.get("x-codeexec-timestamp").is_some());
}

#[tokio::test]
async fn a_500_is_retried_then_delivered() {
    let server = Server::start(|n| status(if n == 0 { 500 } else { 200 })).await;
    let policy = local_policy();
    let target = check(&server.url("/"), &policy).await.unwrap();
    let d = deliver(&target, "j2", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Delivered, 2, Some(200)));
    let seen = server.seen.lock().unwrap();
    let numbers: Vec<&str> = seen.iter().map(|s| header(&s.headers, "x-codeexec-delivery")).collect();
    assert_eq!(numbers, ["1", "2"]);
    for s in seen.iter() {
        let h = &s.headers;
        assert!(verify(SECRET, header(h, "x-codeexec-timestamp"), &s.body, header(h, "x-codeexec-signature")));
    }
}

#[tokio::test]
async fn a_404_is_final() {
    let server = Server::start(|_| status(404)).await;
    let policy = local_policy();
    let target = check(&server.url("/missing"), &policy).await.unwrap();
    let d = deliver(&target, "j3", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Rejected, 1, Some(404)), "{:?}", d.error);
    assert!(d.error.unwrap().contains("404"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn every_attempt_failing_exhausts_them() {
    let server = Server::start(|_| status(503)).await;
    let policy = local_policy();
    let target = check(&server.url("/"), &policy).await.unwrap();
    let d = deliver(&target, "j4", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Exhausted, 3, Some(503)));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = Server::start(|_| status(200)).await;
    let location = elsewhere.url("/");
    let server = Server::start(move |_| {
        let mut r = status(302);
        r.headers_mut().insert("location", location.parse().unwrap());
        r
    })
    .await;
    let policy = local_policy();
    let target = check(&server.url("/"), &policy).await.unwrap();
    let d = deliver(&target, "j5", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Rejected, 1, Some(302)));
    assert_eq!((server.count(), elsewhere.count()), (1, 0));
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // accepts, holds every connection open, never reads nor answers
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let policy = Policy { attempts: 2, timeout: Duration::from_millis(300), ..local_policy() };
    let target = check(&format!("http://{addr}/"), &policy).await.unwrap();
    let started = Instant::now();
    let d = deliver(&target, "j6", Bytes::from_static(b"{}"), &policy).await;
    // the accepting task may lag behind the kernel's accepts on a busy machine
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Exhausted, 2, None));
    assert!(d.error.as_deref().unwrap().contains("no answer within"), "{:?}", d.error);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_closed_port_is_retried() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let policy = Policy { attempts: 2, ..local_policy() };
    let target = check(&format!("http://{addr}/"), &policy).await.unwrap();
    let d = deliver(&target, "j7", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Exhausted, 2));
    assert!(d.error.as_deref().unwrap().contains("connecting to 127.0.0.1"), "{:?}", d.error);
}

#[tokio::test]
async fn retry_after_is_honoured_and_capped() {
    let server = Server::start(|n| {
        let mut r = status(if n == 0 { 429 } else { 200 });
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        r
    })
    .await;
    let policy = local_policy();
    let target = check(&server.url("/"), &policy).await.unwrap();
    let started = Instant::now();
    let d = deliver(&target, "j8", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Delivered, 2));
    // the 10 ms backoff alone would have retried at once
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());

    let server = Server::start(|n| {
        let mut r = status(if n == 0 { 503 } else { 200 });
        r.headers_mut().insert("retry-after", "3600".parse().unwrap());
        r
    })
    .await;
    let policy = Policy { max_backoff: Duration::from_millis(50), ..local_policy() };
    let target = check(&server.url("/"), &policy).await.unwrap();
    let started = Instant::now();
    let d = deliver(&target, "j9", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Delivered, 2));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn too_large_a_body_or_a_bad_job_id_is_never_sent() {
    let server = Server::start(|_| status(200)).await;
    let policy = Policy { max_body: 4, ..local_policy() };
    let target = check(&server.url("/"), &policy).await.unwrap();
    let d = deliver(&target, "j", Bytes::from_static(b"12345"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Refused, 0));
    assert!(d.error.unwrap().contains("5 bytes"));
    let d = deliver(&target, "bad\nid", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Refused, 0));
    assert_eq!(server.count(), 0);
}

/// Refused hosts, what each is, and the IPv4 address inside when there is one.
const REFUSED: &[(&str, &str, Option<&str>)] = &[
    ("http://127.0.0.1/", "loopback", None),
    ("http://localhost:8080/", "loopback", None),
    ("http://[::1]/", "loopback", None),
    ("http://10.1.2.3/", "private", None),
    ("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)", None),
    ("http://[::ffff:127.0.0.1]/", "loopback", Some("127.0.0.1")),
    ("http://[fd00:ec2::254]/", "unique local (cloud metadata)", None),
    ("http://0.0.0.0/", "unspecified (this network)", None),
];

#[tokio::test]
async fn check_refuses_internal_addresses() {
    for &(url, why, embeds) in REFUSED {
        let e = check(url, &Policy::default()).await.expect_err(url);
        let CallbackError::Refused(r) = &e else { panic!("{url}: {e}") };
        assert_eq!(r.why, why, "{url}");
        assert_eq!(r.embeds.map(|(_, v4)| v4.to_string()).as_deref(), embeds, "{url}");
        assert_eq!(r.name.is_some(), url.contains("localhost"), "{url}");
        let message = e.to_string();
        assert!(message.contains(&r.addr.to_string()) && message.contains("callbacks.allow_networks"), "{message}");
    }
    let e = check("http://169.254.169.254/", &Policy::default()).await.unwrap_err();
    assert!(e.to_string().starts_with("169.254.169.254 is link-local (cloud metadata): "), "{e}");
}

/// What deliver's connector was asked for: it never connects anywhere.
#[derive(Default)]
struct Recorder(Mutex<Vec<SocketAddr>>);

#[tokio::test]
async fn deliver_checks_addresses_again() {
    let anything = Policy { allow_networks: vec![net("0.0.0.0/0"), net("::/0")], ..local_policy() };
    let strict = Policy { allow_networks: Vec::new(), ..local_policy() };
    let recorder = Arc::new(Recorder::default());
    let r = recorder.clone();
    let connect = move |addr: SocketAddr| {
        r.0.lock().unwrap().push(addr);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        Box::pin(async move { Err(refused) }) as Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>
    };
    for &(url, why, _) in REFUSED {
        let target = check(url, &anything).await.expect(url);
        let d = deliver_via(&target, "j", (hyper::Method::POST, Bytes::from_static(b"{}")), &strict, &connect).await;
        assert_eq!((d.outcome, d.attempts), (Outcome::Refused, 1), "{url}");
        assert!(d.error.as_deref().unwrap().contains(why), "{url}: {:?}", d.error);
    }
    assert_eq!(recorder.0.lock().unwrap().len(), 0);

    // and for real: a server that check() allowed, delivered to under a stricter policy
    let server = Server::start(|_| status(200)).await;
    let target = check(&server.url("/"), &local_policy()).await.unwrap();
    let d = deliver(&target, "j", Bytes::from_static(b"{}"), &strict).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Refused, 1));
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn public_and_allowed_literals_pass_without_any_traffic() {
    // literals are not looked up, and check() never connects
    for url in
        ["http://93.184.216.34/hook", "http://[2606:2800:220:1:248:1893:25c8:1946]:8080/", "http://[::ffff:8.8.8.8]/"]
    {
        check(url, &Policy::default()).await.expect(url);
    }
    let t = check("http://93.184.216.34/hook?a=b", &Policy::default()).await.unwrap();
    assert_eq!(
        (t.host().as_str(), t.port(), t.authority(), t.path().as_str()),
        ("93.184.216.34", 80, "93.184.216.34", "/hook?a=b")
    );
    let internal = Policy { allow_networks: vec![net("10.0.0.0/8")], ..Policy::default() };
    check("http://10.1.2.3/", &internal).await.unwrap();
    check("http://[::ffff:10.1.2.3]/", &internal).await.unwrap();
    assert!(check("http://192.168.1.1/", &internal).await.is_err());
}

#[test]
fn retry_rules() {
    let answered = |code: u16| Attempt::Answered { status: StatusCode::from_u16(code).unwrap(), retry_after: None };
    for (code, step) in [
        (200, Step::Done(Outcome::Delivered)),
        (204, Step::Done(Outcome::Delivered)),
        (301, Step::Done(Outcome::Rejected)),
        (307, Step::Done(Outcome::Rejected)),
        (400, Step::Done(Outcome::Rejected)),
        (401, Step::Done(Outcome::Rejected)),
        (408, Step::Retry(None)),
        (429, Step::Retry(None)),
        (500, Step::Retry(None)),
        (503, Step::Retry(None)),
    ] {
        assert_eq!(next_step(&answered(code)), (StatusCode::from_u16(code).ok(), step), "{code}");
    }
    assert_eq!(next_step(&Attempt::Failed("x".into())), (None, Step::Retry(None)));
    assert_eq!(next_step(&Attempt::Refused("x".into())), (None, Step::Done(Outcome::Refused)));
    let with = Attempt::Answered { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::from_secs(2)) };
    assert_eq!(next_step(&with).1, Step::Retry(Some(Duration::from_secs(2))));

    let mut h = HeaderMap::new();
    for (value, want) in [("5", Some(5)), (" 7 ", Some(7)), ("0", Some(0)), ("-1", None), ("", None), ("1.5", None)] {
        h.insert("retry-after", value.parse().unwrap());
        assert_eq!(retry_after(&h), want.map(Duration::from_secs), "{value:?}");
    }
    h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    assert_eq!(retry_after(&h), None);
}

#[test]
fn backoff_doubles_with_jitter_and_a_cap() {
    let policy = Policy::default();
    for n in 1..=6 {
        let full = Duration::from_secs(1 << (n - 1));
        let waits: Vec<Duration> = (0..20).map(|_| backoff(&policy, n, "job")).collect();
        assert!(waits.iter().all(|w| *w >= full / 2 && *w <= full), "attempt {n}: {waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "attempt {n}: no jitter in {waits:?}");
    }
    for n in [7, 20, 40, u32::MAX] {
        let w = backoff(&policy, n, "job");
        assert!(w >= Duration::from_secs(30) && w <= Duration::from_secs(60), "attempt {n}: {w:?}");
    }
}

/// A self-signed certificate for 127.0.0.1 and what trusting it takes.
fn self_signed(names: &[&str]) -> (rcgen::CertifiedKey<rcgen::KeyPair>, Vec<Vec<u8>>) {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let roots = parse_pem_certificates(certified.cert.pem().as_bytes()).unwrap();
    assert_eq!(roots, [certified.cert.der().to_vec()]);
    (certified, roots)
}

#[tokio::test]
async fn https_to_a_trusted_certificate() {
    let (certified, roots) = self_signed(&["127.0.0.1"]);
    let server = Server::start_tls(&certified, Arc::new(|_| status(200))).await;
    let policy = Policy { extra_roots: roots, ..local_policy() };
    let target = check(&format!("https://{}/tls?x=1", server.addr), &policy).await.unwrap();
    let body = Bytes::from_static(br#"{"secure":true}"#);
    let d = deliver(&target, "jt", body.clone(), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Delivered, 1, Some(200)), "{:?}", d.error);
    let seen = server.seen.lock().unwrap();
    let h = &seen[0].headers;
    assert_eq!((seen[0].path.as_str(), &seen[0].body), ("/tls?x=1", &body));
    assert_eq!(header(h, "host"), server.addr.to_string());
    assert!(verify(SECRET, header(h, "x-codeexec-timestamp"), &body, header(h, "x-codeexec-signature")));
}

#[tokio::test]
async fn https_refuses_untrusted_or_mismatched_certificates() {
    let (certified, _) = self_signed(&["127.0.0.1"]);
    let server = Server::start_tls(&certified, Arc::new(|_| status(200))).await;
    let policy = Policy { attempts: 2, ..local_policy() };
    let target = check(&format!("https://{}/", server.addr), &policy).await.unwrap();
    let d = deliver(&target, "ju", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts, d.status), (Outcome::Exhausted, 2, None));
    assert!(d.error.as_deref().unwrap().contains("TLS with 127.0.0.1"), "{:?}", d.error);

    // trusted, but issued to another name than the URL's host
    let (certified, roots) = self_signed(&["callbacks.example.test"]);
    let server = Server::start_tls(&certified, Arc::new(|_| status(200))).await;
    let policy = Policy { attempts: 1, extra_roots: roots, ..local_policy() };
    let target = check(&format!("https://{}/", server.addr), &policy).await.unwrap();
    let d = deliver(&target, "jm", Bytes::from_static(b"{}"), &policy).await;
    assert_eq!((d.outcome, d.attempts), (Outcome::Exhausted, 1));
    assert!(d.error.as_deref().unwrap().contains("certificate"), "{:?}", d.error);
    assert_eq!(server.count(), 0);
}

#[test]
fn pem_certificates() {
    assert!(matches!(parse_pem_certificates(b""), Err(TlsError::NoCertificate)));
    assert!(matches!(parse_pem_certificates(b"not a certificate"), Err(TlsError::NoCertificate)));
    let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(parse_pem_certificates(broken), Err(TlsError::Pem(_))));
    let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(parse_pem_certificates(junk), Err(TlsError::Certificate { index: 0, .. })));
}
