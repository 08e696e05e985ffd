//! Listeners and connections: the Unix socket (created with its mode; a stale socket of a
//! dead daemon replaced, a live one refused) and TCP, one hyper HTTP/1 connection task per
//! client, and a graceful shutdown: stop accepting, remove the socket file, let in-flight
//! requests finish within the grace period, then kill their runs.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};

use super::Api;
use super::routes::{Peer, handle};
use crate::config::Settings;

/// A client has this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// After the grace period, cancelled runs have this long to wind down.
const AFTER_CANCEL: Duration = Duration::from_secs(5);

/// Errors setting the listeners up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another daemon answers on the socket.
    #[error("{0} is in use by a running daemon (connect succeeded); stop it first")]
    SocketInUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A file operation or bind failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    unix: Option<(UnixListener, PathBuf)>,
    tcp: Option<TcpListener>,
}

impl Listeners {
    /// The TCP address actually bound (port 0 picks one).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }
}

fn io(op: &'static str, path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_string();
    move |source| ServeError::Io { op, path, source }
}

/// Binds what the settings ask for. Must run inside a tokio runtime.
pub async fn bind(settings: &Settings) -> Result<Listeners, ServeError> {
    let unix = match &settings.unix_socket {
        Some(path) => Some((bind_unix(path, settings.socket_mode)?, path.clone())),
        None => None,
    };
    let tcp = match settings.tcp {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(io("bind", addr))?),
        None => None,
    };
    Ok(Listeners { unix, tcp })
}

fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "replacing the stale socket of a daemon that is gone");
            std::fs::remove_file(path).map_err(io("remove", path.display()))?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat", path.display())(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("bind", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path.display()))?;
    Ok(listener)
}

/// Serves until `shutdown` completes, then shuts down gracefully (see the module docs).
pub async fn serve(api: Arc<Api>, listeners: Listeners, shutdown: impl Future<Output = ()>, grace: Duration) {
    let Listeners { unix, tcp } = listeners;
    for (what, addr) in [
        ("unix", unix.as_ref().map(|(_, p)| p.display().to_string())),
        ("tcp", tcp.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string())),
    ] {
        if let Some(addr) = addr {
            tracing::info!(listener = what, %addr, "listening");
        }
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = accept_unix(unix.as_ref()) => r.map(|s| (Conn::Unix(s), Peer::Unix)),
            r = accept_tcp(tcp.as_ref()) => r.map(|(s, a)| (Conn::Tcp(s), Peer::Tcp(a))),
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((conn, peer)) => connection(&api, &graceful, conn, peer),
            // EMFILE and the like: keep serving the connections we have
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    if let Some((_, path)) = &unix {
        let _ = std::fs::remove_file(path);
    }
    drop((unix, tcp));
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    tokio::select! {
        () = &mut drained => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over: killing the runs still in progress");
            api.cancel_all();
            let _ = tokio::time::timeout(AFTER_CANCEL, drained).await;
        }
    }
    tracing::info!("stopped");
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept_unix(l: Option<&(UnixListener, PathBuf)>) -> std::io::Result<tokio::net::UnixStream> {
    match l {
        Some((l, _)) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

async fn accept_tcp(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One HTTP/1 connection on its own task, watched for graceful shutdown. hyper keeps
/// reading while a response is pending, so a client that hangs up is noticed and its
/// request future dropped (which kills its run).
fn connection(api: &Arc<Api>, graceful: &GracefulShutdown, conn: Conn, peer: Peer) {
    let api = Arc::clone(api);
    let service = service_fn(move |req| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(handle(api, req, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    match conn {
        Conn::Unix(s) => {
            let watched = graceful.watch(builder.serve_connection(TokioIo::new(s), service));
            tokio::spawn(async move {
                if let Err(e) = watched.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        Conn::Tcp(s) => {
            let _ = s.set_nodelay(true);
            let watched = graceful.watch(builder.serve_connection(TokioIo::new(s), service));
            tokio::spawn(async move {
                if let Err(e) = watched.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    }
}
