//! A small HTTP/1 client for the daemon's API (hyper's client connection over a Unix or TCP
//! stream): used by `codeexec run --remote`, the API benchmark and the tests. One
//! [`Connection`] is one kept-alive HTTP/1 connection; requests on it go one at a time.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::pipeline::Verdict;
use crate::run::{Exceeded, RunOutcome, Status};

/// Where a daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// Errors talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not `unix:PATH`, an absolute path or `http://HOST:PORT`.
    #[error("endpoint {0:?}: expected unix:/path/to.sock, /path/to.sock or http://host:port")]
    Endpoint(String),
    /// Connecting failed.
    #[error("connecting to {endpoint}")]
    Connect {
        /// Where.
        endpoint: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP")]
    Http(#[from] hyper::Error),
    /// A request could not be built (a bad header value).
    #[error("building the request")]
    Request(#[from] hyper::http::Error),
}

impl std::str::FromStr for Endpoint {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, ClientError> {
        if let Some(path) = s.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(ClientError::Endpoint(s.into()))
            } else {
                Ok(Endpoint::Unix(path.into()))
            };
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(s.into()));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
                return Err(ClientError::Endpoint(s.into()));
            }
            return Ok(Endpoint::Tcp(authority.into()));
        }
        Err(ClientError::Endpoint(s.into()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// A response: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1 connection to a daemon. Must be used inside a tokio runtime.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    api_key: Option<HeaderValue>,
}

impl Connection {
    /// Connects; `api_key` goes with every request as `X-Api-Key`.
    pub async fn open(endpoint: &Endpoint, api_key: Option<&str>) -> Result<Connection, ClientError> {
        let connect = |source| ClientError::Connect { endpoint: endpoint.to_string(), source };
        let (sender, host) = match endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect)?;
                (handshake(stream).await?, HeaderValue::from_static("localhost"))
            }
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str()).await.map_err(connect)?;
                let _ = stream.set_nodelay(true);
                let host = HeaderValue::from_str(authority).map_err(|_| ClientError::Endpoint(authority.clone()))?;
                (handshake(stream).await?, host)
            }
        };
        let api_key = match api_key {
            Some(k) => Some(
                HeaderValue::from_str(k)
                    .map_err(|_| ClientError::Endpoint("the API key is not a valid header value".into()))?,
            ),
            None => None,
        };
        Ok(Connection { sender, host, api_key })
    }

    /// Sends a request with a raw body and `content_type` (when given) and reads the whole reply.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        if let Some(k) = &self.api_key {
            builder = builder.header("x-api-key", k.clone());
        }
        self.raw(builder.body(Full::new(body))?).await
    }

    /// Sends a request as it is (no `Host` or key added) and reads the whole reply.
    pub async fn raw(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// `POST path` with a JSON body, asking for a stream (`accept`): the response as it
    /// comes, its body to be read frame by frame.
    pub async fn post_streaming(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, accept);
        if let Some(k) = &self.api_key {
            builder = builder.header("x-api-key", k.clone());
        }
        let req = builder.body(Full::new(Bytes::from(bytes)))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &serde_json::Value) -> Result<Reply, ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(Method::POST, path, Some("application/json"), Bytes::from(bytes)).await
    }
}

/// What an execute response says: the verdict, the deciding stage's name, and that stage
/// as an outcome, so a remote run prints and exits like a local one.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The verdict.
    pub verdict: Verdict,
    /// `run`, `compile` or `syntax`.
    pub stage: String,
    /// The deciding stage (its output, figures and the verdict's message).
    pub last: RunOutcome,
}

/// Reads an execute response (see [`Remote`]).
pub fn outcome(v: &serde_json::Value) -> Result<Remote, String> {
    use base64::Engine as _;
    let field = |k: &str| v.get(k).ok_or_else(|| format!("the response has no {k:?}"));
    let name = field("status")?.as_str().unwrap_or_default();
    let verdict = Verdict::parse(name).ok_or_else(|| format!("unknown status {name:?}"))?;
    let stage = v.get("stage").and_then(|s| s.as_str()).unwrap_or("run").to_owned();
    let status = match verdict {
        Verdict::Run(s) => s,
        // the refusing stage's own status (a compiler's exit code, or a limit it hit)
        _ => v[stage.as_str()]["status"].as_str().and_then(Status::parse).unwrap_or(Status::RuntimeError),
    };
    let output = |k: &str| -> Result<Vec<u8>, String> {
        let text = field(k)?.as_str().unwrap_or_default();
        match v.get(format!("{k}_encoding")).and_then(|e| e.as_str()) {
            Some("base64") => base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("{k}: {e}")),
            _ => Ok(text.as_bytes().to_vec()),
        }
    };
    let int = |k: &str| v.get(k).and_then(serde_json::Value::as_i64).and_then(|n| i32::try_from(n).ok());
    let ms = |k: &str| Duration::try_from_secs_f64(v["time"][k].as_f64().unwrap_or(0.0) / 1000.0).unwrap_or_default();
    Ok(RunOutcome {
        status,
        exceeded: v.get("exceeded").and_then(|e| e.as_str()).and_then(Exceeded::parse),
        exit_code: int("exit_code"),
        signal: int("signal"),
        message: v.get("message").and_then(|m| m.as_str()).map(str::to_owned),
        stdout: output("stdout")?,
        stderr: output("stderr")?,
        stdout_truncated: v["stdout_truncated"].as_bool().unwrap_or(false),
        stderr_truncated: v["stderr_truncated"].as_bool().unwrap_or(false),
        cpu_time: ms("cpu_ms"),
        wall_time: ms("wall_ms"),
        memory_peak_bytes: v["memory_peak_kb"].as_u64().unwrap_or(0).saturating_mul(1024),
        files: Vec::new(),
        files_truncated: false,
    })
    .map(|last| Remote { verdict, stage, last })
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "client connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!("unix:/run/x.sock".parse::<Endpoint>().unwrap(), Endpoint::Unix("/run/x.sock".into()));
        assert_eq!("/run/x.sock".parse::<Endpoint>().unwrap(), Endpoint::Unix("/run/x.sock".into()));
        assert_eq!("http://127.0.0.1:8080".parse::<Endpoint>().unwrap(), Endpoint::Tcp("127.0.0.1:8080".into()));
        assert_eq!("http://localhost:80/".parse::<Endpoint>().unwrap(), Endpoint::Tcp("localhost:80".into()));
        for bad in ["unix:", "https://x:1", "localhost:80", "http://x", "http://x:1/v1", "x.sock"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn responses_become_outcomes() {
        let v = serde_json::json!({
            "status": "time_limit", "exceeded": "wall_time", "exit_code": null, "signal": 9,
            "message": "wall time limit", "stdout": "aGk=", "stdout_encoding": "base64",
            "stdout_truncated": true, "stderr": "x", "stderr_encoding": "utf8", "stderr_truncated": false,
            "time": {"cpu_ms": 1.5, "wall_ms": 1000.0}, "memory_peak_kb": 2
        });
        let r = outcome(&v).unwrap();
        assert_eq!((r.verdict, r.stage.as_str()), (Verdict::Run(Status::TimeLimit), "run"));
        let o = r.last;
        assert_eq!(
            (o.status, o.exceeded, o.exit_code, o.signal),
            (Status::TimeLimit, Some(Exceeded::WallTime), None, Some(9))
        );
        assert_eq!((o.stdout.as_slice(), o.stderr.as_slice()), (&b"hi"[..], &b"x"[..]));
        assert!(o.stdout_truncated && !o.stderr_truncated);
        assert_eq!(
            (o.cpu_time, o.wall_time, o.memory_peak_bytes),
            (Duration::from_micros(1500), Duration::from_secs(1), 2048)
        );
        assert!(outcome(&serde_json::json!({"status": "great"})).is_err());
        let v = serde_json::json!({
            "status": "compile_error", "stage": "compile", "compile": {"status": "time_limit"},
            "stdout": "", "stderr": "", "message": "the compiler did not finish"
        });
        let r = outcome(&v).unwrap();
        assert_eq!((r.verdict, r.stage.as_str(), r.last.status), (Verdict::CompileError, "compile", Status::TimeLimit));
    }
}
