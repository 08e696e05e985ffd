//! Listeners and connections: the Unix socket (made with its mode before anyone can
//! connect; a daemon holds a lock beside it, so a live one is refused and a dead one's
//! stale socket replaced) and TCP, one hyper HTTP/1 connection task per client up to a
//! maximum, and a graceful shutdown: stop accepting, remove the socket file, let in-flight
//! requests finish within the grace period, then kill their runs.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::{TcpListener, UnixListener};

use super::Api;
use super::routes::{Peer, handle};
use crate::config::Settings;

mod conn;

/// A client has this long to send its request headers (also how long an idle keep-alive
/// connection is kept): short, so connections that send nothing cannot hold the cap long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At the connection cap, how often a new client looks again for an idle connection to
/// shed while every connection is busy.
const SHED_RETRY: Duration = Duration::from_millis(100);
/// After the grace period, cancelled runs have this long to wind down.
const AFTER_CANCEL: Duration = Duration::from_secs(5);

/// Errors setting the listeners up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another daemon holds the socket's lock.
    #[error("{0} is in use by a running daemon (it holds {0}.lock); stop it first")]
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
    /// The Unix socket's lock, held while the daemon lives.
    _lock: Option<Flock<std::fs::File>>,
    max_connections: usize,
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
    let (unix, lock) = match &settings.unix_socket {
        Some(path) => {
            let (listener, lock) = bind_unix(path, settings.socket_mode)?;
            (Some((listener, path.clone())), Some(lock))
        }
        None => (None, None),
    };
    let tcp = match settings.tcp {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(io("bind", addr))?),
        None => None,
    };
    Ok(Listeners { unix, tcp, _lock: lock, max_connections: settings.max_connections })
}

/// Takes `PATH.lock` (a daemon that holds it is alive: refuse), replaces a stale socket,
/// and binds in a fresh 0700 directory beside `path`, so the socket has its mode before it
/// is renamed into place, whatever the umask.
fn bind_unix(path: &Path, mode: u32) -> Result<(UnixListener, Flock<std::fs::File>), ServeError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir.display()))?;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(io("open", lock_path.display()))?;
    let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(ServeError::SocketInUse(path.to_owned())),
        Err((_, e)) => return Err(io("lock", lock_path.display())(e.into())),
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            tracing::info!(path = %path.display(), "replacing the stale socket of a daemon that is gone");
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat", path.display())(e)),
    }
    let private = tempfile::Builder::new()
        .prefix(".codeexec-bind-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)
        .map_err(io("create a directory in", dir.display()))?;
    let staged = private.path().join("s");
    let listener = UnixListener::bind(&staged).map_err(io("bind", staged.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", staged.display()))?;
    // atomically replaces a stale socket
    std::fs::rename(&staged, path).map_err(io("rename the socket to", path.display()))?;
    Ok((listener, lock))
}

/// Serves until `shutdown` completes, then shuts down gracefully (see the module docs).
pub async fn serve(api: Arc<Api>, listeners: Listeners, shutdown: impl Future<Output = ()>, grace: Duration) {
    let Listeners { unix, tcp, _lock, max_connections } = listeners;
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections));
    for (what, addr) in [
        ("unix", unix.as_ref().map(|(_, p)| p.display().to_string())),
        ("tcp", tcp.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string())),
    ] {
        if let Some(addr) = addr {
            tracing::info!(listener = what, %addr, "listening");
        }
    }
    let graceful = GracefulShutdown::new();
    let registry = Arc::new(conn::Registry::default());
    api.start_jobs();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = accept_unix(unix.as_ref()) => r.map(|s| (Conn::Unix(s), Peer::Unix)),
            r = accept_tcp(tcp.as_ref()) => r.map(|(s, a)| (Conn::Tcp(s), Peer::Tcp(a))),
            () = &mut shutdown => break,
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            // EMFILE and the like: keep serving the connections we have
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // at most max_connections at once: at the cap, the oldest idle one makes room
        let permit = tokio::select! {
            p = place(&connections, &registry, max_connections) => match p {
                Some(p) => p,
                None => break,
            },
            () = &mut shutdown => break,
        };
        connection(&api, &graceful, &registry, conn, peer, permit);
    }
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    if let Some((_, path)) = &unix {
        // the socket, then its lock (still held: a daemon starting now makes a new one)
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(format!("{}.lock", path.display()));
    }
    drop((unix, tcp));
    api.stop_taking_jobs().await;
    let drained = graceful.shutdown();
    // requests answered and running jobs ended (they hold no connection)
    let idle = async {
        drained.await;
        api.idle().await;
    };
    tokio::pin!(idle);
    tokio::select! {
        () = &mut idle => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over: killing the runs still in progress");
            api.cancel_all();
            let _ = tokio::time::timeout(AFTER_CANCEL, idle).await;
        }
    }
    // nothing starts after this
    api.cancel_all();
    tracing::info!("stopped");
}

/// A connection's place: a free one, or one an idle connection gives up (the oldest
/// first); while every connection is busy, the new client waits.
async fn place(
    connections: &Arc<tokio::sync::Semaphore>,
    registry: &conn::Registry,
    max_connections: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(p) = Arc::clone(connections).try_acquire_owned() {
        return Some(p);
    }
    let mut warned = false;
    loop {
        if !registry.shed_oldest_idle() && !warned {
            tracing::warn!(max_connections, "every connection is busy; a new client waits");
            warned = true;
        }
        match tokio::time::timeout(SHED_RETRY, Arc::clone(connections).acquire_owned()).await {
            Ok(p) => return p.ok(),
            Err(_) => continue,
        }
    }
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

/// One HTTP/1 connection on its own task, watched for graceful shutdown and registered
/// (shed when idle at the cap; its writes bounded by `conn::WRITE_TIMEOUT`). hyper keeps
/// reading while a response is pending, so a client that hangs up is noticed and its
/// request future dropped (which kills its run).
fn connection(
    api: &Arc<Api>,
    graceful: &GracefulShutdown,
    registry: &Arc<conn::Registry>,
    conn: Conn,
    peer: Peer,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let api = Arc::clone(api);
    let entry = registry.add();
    let state = Arc::clone(&entry.state);
    let service = service_fn(move |req| {
        let api = Arc::clone(&api);
        let busy = state.request();
        async move {
            let resp = handle(api, req, peer).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    // HTTP/1 only; hyper-util's auto builder is what serves upgrades (the WebSocket at
    // /v1/connect) under a graceful shutdown
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    match conn {
        Conn::Unix(s) => {
            let io = TokioIo::new(conn::Watched::new(s, Arc::clone(&entry.state), conn::WRITE_TIMEOUT));
            let served = builder.serve_connection_with_upgrades(io, service).into_owned();
            tokio::spawn(serve_one(graceful.watch(served), entry, permit));
        }
        Conn::Tcp(s) => {
            let _ = s.set_nodelay(true);
            let io = TokioIo::new(conn::Watched::new(s, Arc::clone(&entry.state), conn::WRITE_TIMEOUT));
            let served = builder.serve_connection_with_upgrades(io, service).into_owned();
            tokio::spawn(serve_one(graceful.watch(served), entry, permit));
        }
    }
}

/// Drives a connection to its end, or drops it when the server sheds it while idle.
async fn serve_one<E: std::fmt::Display>(
    conn: impl Future<Output = Result<(), E>>,
    entry: conn::Entry,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::pin!(conn);
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = entry.state.shed() => {
                if entry.state.idle() {
                    tracing::debug!("an idle connection shed for a new client");
                    break;
                }
                entry.state.keep();
            }
        }
    }
    // the connection (a local) is dropped before `entry` and `_permit` (parameters)
}
