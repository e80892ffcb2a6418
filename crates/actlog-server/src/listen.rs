//! The HTTP listener: hyper connections under named limits (contract §14).
//!
//! `axum::serve` sets no header timeout, no idle timeout and no connection
//! cap, so idle or slow sockets could pile up until file descriptors ran
//! out. This loop serves the same router with:
//! - `http_connections_max`: open connections. At the cap, a new connection
//!   evicts the connection that has been quiet longest among those with no
//!   handler running (idle keep-alive, or still sending its head); when
//!   every connection is busy, the new one gets a 503 and is closed.
//! - `http_header_timeout_ms`: a request head must arrive complete within
//!   this time of the connection being ready for one (opened, or its last
//!   response sent), so it also closes keep-alive connections idle as long.
//! - `http_idle_timeout_ms`: a connection that moves no byte for this long
//!   while no handler runs on it (a client that stopped reading its
//!   response) is closed.
//! - Request bodies are read under `http_body_timeout_ms` by the handlers
//!   (see `ingest::read_body`).
//! - With TLS, the handshake must finish within `http_header_timeout_ms` of
//!   the connection opening.
//!
//! On shutdown it stops accepting, asks every connection to finish its
//! current request and close, and waits up to [`DRAIN_TIMEOUT`] for them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The client's address, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// How long shutdown waits for open connections to finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection limits of one listener. Defaults are in `docs/operating.md`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// `http_connections_max` (or `pg_connections_max`).
    pub connections_max: usize,
    /// `http_header_timeout_ms`.
    pub header_timeout: Duration,
    /// `http_idle_timeout_ms`.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            connections_max: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What the listener knows of one open connection.
pub(crate) struct Conn {
    /// When a byte last moved, in ms since the process's first connection.
    last_io: AtomicU64,
    /// Handlers running on it (0 or 1 for HTTP/1.1 without pipelining).
    busy: AtomicUsize,
    /// Told when the connection is to be closed now.
    evict: Notify,
}

impl Conn {
    fn new() -> Conn {
        Conn { last_io: AtomicU64::new(now_ms()), busy: AtomicUsize::new(0), evict: Notify::new() }
    }
    fn touch(&self) {
        self.last_io.store(now_ms(), Ordering::Relaxed);
    }
    fn quiet_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_io.load(Ordering::Relaxed))
    }
    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }
}

/// Counts a handler as running until dropped (also when its future is).
struct Busy(Arc<Conn>);

impl Busy {
    fn new(c: &Arc<Conn>) -> Busy {
        c.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(c))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open connections, for eviction at the cap.
#[derive(Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().expect("registry lock").len()
    }
    fn add(&self, c: Arc<Conn>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().expect("registry lock").insert(id, c);
        id
    }
    fn remove(&self, id: u64) {
        self.open.lock().expect("registry lock").remove(&id);
    }
    /// Tells the quietest connection with no handler running to close.
    /// False when every connection is busy.
    fn evict_one(&self) -> bool {
        let open = self.open.lock().expect("registry lock");
        let victim = open.values().filter(|c| !c.is_busy()).max_by_key(|c| c.quiet_ms());
        match victim {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A stream that records when bytes move.
pub(crate) struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The answer to a connection beyond the cap when none can be evicted.
fn refuse(socket: &TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"http_connections_max ({max}) connections are open and busy; retry shortly\",\"items\":[]}}}}"
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Best effort: the socket is new, so the short answer fits its buffer.
    let _ = socket.try_write(resp.as_bytes());
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    if registry.len() >= limits.connections_max {
                        metrics.connection_refused("http_connections_max");
                        if !registry.evict_one() {
                            refuse(&socket, limits.connections_max);
                            continue;
                        }
                    }
                    let conn = Arc::new(Conn::new());
                    let id = registry.add(Arc::clone(&conn));
                    let registry = Arc::clone(&registry);
                    let app = app.clone();
                    let stop = stop_rx.clone();
                    let tls = tls.clone();
                    tasks.spawn(async move {
                        match tls {
                            None => serve_connection(socket, peer, app, conn, limits, stop).await,
                            Some(acceptor) => {
                                // The handshake counts against the header timeout,
                                // so a silent TLS client holds its slot no longer
                                // than a silent plain one.
                                let handshake = tokio::select! {
                                    r = tokio::time::timeout(limits.header_timeout, acceptor.accept(socket)) => r.ok().and_then(Result::ok),
                                    _ = conn.evict.notified() => None,
                                };
                                if let Some(stream) = handshake {
                                    // The handshake moved bytes the tracker did not see.
                                    conn.touch();
                                    serve_connection(stream, peer, app, conn, limits, stop).await;
                                }
                            }
                        }
                        registry.remove(id);
                    });
                }
                Err(e) => {
                    // Usually a shortage of file descriptors: do not spin on it.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still open after {} s of draining; closing them",
            tasks.len(),
            DRAIN_TIMEOUT.as_secs()
        );
        tasks.shutdown().await;
    }
    Ok(())
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    socket: S,
    peer: std::net::SocketAddr,
    app: Router,
    conn: Arc<Conn>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let per_request = Arc::clone(&conn);
    let svc = tower::service_fn(move |mut req: Request<Incoming>| {
        let busy = Busy::new(&per_request);
        let app = app.clone();
        req.extensions_mut().insert(Peer(peer));
        async move {
            let resp: Response = app.oneshot(req.map(Body::new)).await.unwrap_or_else(|e: Infallible| match e {});
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(Tracked { inner: socket, conn: Arc::clone(&conn) });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let served = builder.serve_connection(io, TowerToHyperService::new(svc));
    tokio::pin!(served);
    let mut draining = false;
    loop {
        let quiet = Duration::from_millis(conn.quiet_ms());
        let idle_left = limits.idle_timeout.saturating_sub(quiet);
        tokio::select! {
            _ = served.as_mut() => return,
            _ = conn.evict.notified() => return,
            _ = tokio::time::sleep(idle_left.max(Duration::from_millis(10))) => {
                if !conn.is_busy() && Duration::from_millis(conn.quiet_ms()) >= limits.idle_timeout {
                    return;
                }
            }
            changed = stop.changed(), if !draining => {
                let _ = changed;
                draining = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}
