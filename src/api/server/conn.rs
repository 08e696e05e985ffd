//! What the server knows of each open connection: its stream, wrapped so that a write
//! that makes no progress for `WRITE_TIMEOUT` fails (a client that never reads its answer
//! is dropped, and the answer's memory freed), and whether it is idle (no request in
//! hand, nothing waiting to be written), so that at the connection cap the oldest idle
//! connection is shed for a new client.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// A write to a client may wait this long for the client to read; then the connection
/// is dropped.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection's state, shared by its task, its stream and the registry.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Requests being handled.
    requests: AtomicUsize,
    /// A write is waiting for the client to read.
    writing: AtomicBool,
    /// The server asked it to close (it is idle and a new client needs its place).
    shed_asked: AtomicBool,
    shed: Notify,
}

impl State {
    /// No request in hand and nothing waiting to be written.
    pub(super) fn idle(&self) -> bool {
        self.requests.load(Ordering::SeqCst) == 0 && !self.writing.load(Ordering::SeqCst)
    }

    /// Marks a request as in hand until the guard is dropped.
    pub(super) fn request(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Completes when the server asks this connection to close; the connection then
    /// closes if it is still idle, else calls [`State::keep`] and goes on.
    pub(super) async fn shed(&self) {
        self.shed.notified().await;
    }

    /// The shed request came too late: the connection has work again.
    pub(super) fn keep(&self) {
        self.shed_asked.store(false, Ordering::SeqCst);
    }
}

/// A request in hand.
#[derive(Debug)]
pub(super) struct Busy(Arc<State>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
pub(super) struct Registry {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<State>>>,
}

/// A connection's place in the registry, given up on drop.
#[derive(Debug)]
pub(super) struct Entry {
    registry: Arc<Registry>,
    id: u64,
    pub(super) state: Arc<State>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Registry {
    /// Registers a new connection.
    pub(super) fn add(self: &Arc<Self>) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State::default());
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Arc::clone(&state));
        Entry { registry: Arc::clone(self), id, state }
    }

    /// Asks the oldest idle connection not yet asked to close; false when none is idle.
    pub(super) fn shed_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for state in open.values() {
            if state.idle() && !state.shed_asked.swap(true, Ordering::SeqCst) {
                state.shed.notify_one();
                return true;
            }
        }
        false
    }
}

/// A client's stream, its writes bounded by [`WRITE_TIMEOUT`] without progress.
#[derive(Debug)]
pub(super) struct Watched<S> {
    inner: S,
    state: Arc<State>,
    /// How long a write may wait ([`WRITE_TIMEOUT`]).
    timeout: Duration,
    /// Armed while a write waits.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, state: Arc<State>, timeout: Duration) -> Self {
        Watched { inner, state, timeout, deadline: None }
    }

    /// Arms the deadline while `r` is pending and fails once it passes; disarms it on
    /// progress.
    fn bounded<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.deadline = None;
            self.state.writing.store(false, Ordering::SeqCst);
            return r;
        }
        self.state.writing.store(true, Ordering::SeqCst);
        let timeout = self.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", timeout.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bounded(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bounded(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bounded(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_timeout() {
        use tokio::io::AsyncWriteExt;
        let (ours, _theirs) = tokio::io::duplex(16);
        let state = Arc::new(State::default());
        let mut w = Watched::new(ours, Arc::clone(&state), Duration::from_millis(50));
        let e = w.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(!state.idle(), "a connection waiting to write is not idle");
    }

    #[test]
    fn the_oldest_idle_connection_is_shed_first() {
        let r = Arc::new(Registry::default());
        let (a, b, c) = (r.add(), r.add(), r.add());
        let _busy = a.state.request();
        assert!(r.shed_oldest_idle());
        assert!(b.state.shed_asked.load(Ordering::SeqCst), "the oldest idle one");
        assert!(r.shed_oldest_idle());
        assert!(c.state.shed_asked.load(Ordering::SeqCst));
        assert!(!r.shed_oldest_idle(), "none idle and not asked is left");
        drop((b, c));
        assert_eq!(r.open.lock().unwrap().len(), 1);
    }
}
