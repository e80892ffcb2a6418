//! The PostgreSQL wire endpoint: `psql`, Grafana, DBeaver, JDBC and lib/pq
//! query the ledger through the same read-only `actlog_query::Engine` as the
//! HTTP API.
//!
//! It is built on pgwire 0.42. With `--tls-cert`/`--tls-key` it answers an
//! SSLRequest with TLS (rustls), refuses connections that do not ask for
//! it, and may require client certificates; without them, an SSLRequest is
//! answered "no" and clients connect with `sslmode=disable` (loopback or a
//! trusted network).
//!
//! Authentication is a cleartext password. The user name is a role (`query`
//! or `admin`) and the password is an API token. The caller's
//! [`Authenticate`] checks both. A refusal ends the connection with a FATAL
//! ErrorResponse: SQLSTATE 28P01 for a bad token, 28000 for a role that may not
//! query or does not match the user name.
//!
//! Protocol coverage:
//! - Simple query (psql). A query string may hold several statements separated
//!   by `;`. Each one gets RowDescription, DataRows and `SELECT n`, and the
//!   first error stops the rest, as in PostgreSQL.
//! - Extended query (Grafana, JDBC, lib/pq, pgx): Parse, Bind, Describe,
//!   Execute, Close, Sync. Parse plans the statement with `Engine::describe`,
//!   so Describe answers without running it. Parameters are described as TEXT
//!   and passed to the engine as text. Binary parameters of the common types
//!   are converted to text first. Execute honours its row count by suspending
//!   the portal.
//! - CancelRequest (psql's ctrl-c) drops the running query.
//! - Not covered: COPY, replication, `pg_catalog` emulation, and more than one
//!   statement in one Parse.
//!
//! A few session statements that drivers send on their own are answered here
//! and never reach the engine; `classify` lists them.
//!
//! Results are sent in text or binary format, as the client asks. Arrow types
//! map to PostgreSQL types as `PgColumn::of` lists. A result cut by the
//! engine's row limit also carries a WARNING notice.

use std::collections::HashMap;
use std::fmt::{self, Debug, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actlog_query::datafusion::arrow::array::{Array, ArrayRef, AsArray};
use actlog_query::datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use actlog_query::datafusion::arrow::record_batch::RecordBatch;
use actlog_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormatOptions};
use actlog_query::{Engine, QueryError, QueryOptions};
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult, SEVERITY_ERROR, SEVERITY_FATAL, SEVERITY_WARNING};
use pgwire::messages::data::{DataRow, FORMAT_CODE_BINARY};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, FramedParts};

mod statements;
mod values;
use statements::*;
use values::*;

/// Why a login was refused. The message is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The token is unknown, revoked or malformed: SQLSTATE 28P01.
    BadPassword(String),
    /// The token is valid, but its role may not query or is not the user
    /// name: SQLSTATE 28000.
    WrongRole(String),
}

/// Checks a login, given `(user, password)`: the user is a role name and the
/// password an API token. On success it returns a check that the session
/// calls again before each message and every [`TOKEN_RECHECK`]: once the
/// token is revoked or expired, the session ends.
pub type Authenticate = Arc<dyn Fn(&str, &str) -> Result<TokenStillValid, AuthFailure> + Send + Sync>;

/// Whether the token a session logged in with still authenticates.
pub type TokenStillValid = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often an idle logged-in session checks its token.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// The PostgreSQL listener's limits. Defaults are in `docs/operating.md`.
#[derive(Debug, Clone, Copy)]
pub struct PgLimits {
    /// `pg_connections_max`: open connections. At the cap a new connection
    /// evicts the oldest one that has not logged in; when all have, it is
    /// refused with SQLSTATE 53300, as PostgreSQL does beyond
    /// `max_connections` (whose default is also 100).
    pub connections_max: usize,
    /// `pg_auth_timeout_ms`: time from connecting to a completed login.
    pub auth_timeout: Duration,
    /// `pg_idle_timeout_ms`: a logged-in session that sends nothing for
    /// this long while no query runs is closed (SQLSTATE 57P05).
    pub idle_timeout: Duration,
    /// `pg_message_bytes_max`: one message after login. Before login every
    /// message is held to [`PRE_AUTH_MESSAGE_BYTES_MAX`].
    pub message_bytes_max: usize,
}

impl Default for PgLimits {
    fn default() -> Self {
        PgLimits {
            connections_max: 100,
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            message_bytes_max: 4 << 20,
        }
    }
}

/// Largest message before login: what a startup or password message needs
/// (pgwire's own startup limit).
pub const PRE_AUTH_MESSAGE_BYTES_MAX: usize = 10_000;

/// What the PostgreSQL listener shares with the HTTP one.
#[derive(Clone)]
pub struct Guards {
    pub metrics: Arc<crate::Metrics>,
    pub auth_limiter: Arc<crate::AuthLimiter>,
}

/// What the listener knows of one connection.
struct Session {
    peer: std::net::IpAddr,
    logged_in: AtomicBool,
    evict: Notify,
    /// Milliseconds since `epoch` of the last message received.
    last_message: AtomicU64,
    /// A query is running.
    busy: AtomicBool,
    opened: Instant,
    /// Set at login: whether the session's token still authenticates.
    token: Mutex<Option<TokenStillValid>>,
}

impl Session {
    fn new(peer: std::net::IpAddr) -> Session {
        Session {
            peer,
            logged_in: AtomicBool::new(false),
            evict: Notify::new(),
            last_message: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            opened: Instant::now(),
            token: Mutex::new(None),
        }
    }
    /// False once the token this session logged in with is revoked or
    /// expired (true before login: the login checks the token itself).
    fn token_valid(&self) -> bool {
        self.token.lock().expect("session token lock").as_ref().is_none_or(|still_valid| still_valid())
    }
    fn touch(&self) {
        self.last_message.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn quiet(&self) -> Duration {
        self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_message.load(Ordering::Relaxed)))
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` becomes true (or
/// its sender is dropped), one task per connection.
///
/// On shutdown it stops accepting and then closes every open connection,
/// aborting any running query: sessions such as an idle psql can last
/// forever, so they are not drained. It returns once all connection tasks are
/// gone, so nothing holds `engine` afterwards.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    auth: Authenticate,
    limits: PgLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    guards: Guards,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let metrics = Arc::clone(&guards.metrics);
    let handlers = Arc::new(Handlers::new(engine, auth, guards));
    let mut connections = JoinSet::new();
    let sessions: Arc<Mutex<HashMap<u64, Arc<Session>>>> = Arc::default();
    let mut next_id = 0u64;
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                // A dropped sender means that the server is going away.
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let open = sessions.lock().expect("sessions lock").len();
                    if open >= limits.connections_max {
                        metrics.connection_refused("pg_connections_max");
                        let victim = sessions
                            .lock()
                            .expect("sessions lock")
                            .values()
                            .filter(|s| !s.logged_in.load(Ordering::SeqCst))
                            .min_by_key(|s| s.opened)
                            .cloned();
                        match victim {
                            Some(v) => v.evict.notify_one(),
                            None => {
                                refuse_connection(&socket, limits.connections_max);
                                continue;
                            }
                        }
                    }
                    let session = Arc::new(Session::new(peer.ip()));
                    let id = next_id;
                    next_id += 1;
                    sessions.lock().expect("sessions lock").insert(id, Arc::clone(&session));
                    let (handlers, sessions, tls) = (Arc::clone(&handlers), Arc::clone(&sessions), tls.clone());
                    connections.spawn(async move {
                        // An error here is the client's connection failing;
                        // the client has been told what it could be told.
                        let _ = serve_socket(socket, &handlers, Arc::clone(&session), limits, tls).await;
                        sessions.lock().expect("sessions lock").remove(&id);
                    });
                }
                Err(e) => {
                    // Usually a transient shortage (EMFILE); do not spin on it.
                    tracing::warn!("postgres endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// How long a closing FATAL error may take to send: a client that stopped
/// reading must not keep its connection (and slot) by it.
const FATAL_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends a FATAL error as PostgreSQL does, with no ReadyForQuery after it,
/// and gives up after [`FATAL_SEND_TIMEOUT`]. The caller then closes.
async fn send_fatal<S>(
    socket: &mut Framed<S, pgwire::tokio::server::PgWireMessageServerCodec<PreparedStatement>>,
    e: PgWireError,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let _ = tokio::time::timeout(FATAL_SEND_TIMEOUT, pgwire::tokio::server::process_error(socket, e, true)).await;
}

/// The error that ends a session whose token was revoked or expired.
fn token_ended() -> PgWireError {
    fatal("28000", "the token this session logged in with was revoked or has expired; connect again with a valid token")
}

/// Tells a client beyond `pg_connections_max` why it is turned away.
fn refuse_connection(socket: &TcpStream, max: usize) {
    let info = ErrorInfo::new(
        SEVERITY_FATAL.to_owned(),
        "53300".to_owned(),
        format!("sorry, too many clients already (pg_connections_max = {max})"),
    );
    let mut message = BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(info.into()).encode(&mut message).is_ok() {
        // Best effort: the socket is new, so the short message fits its send
        // buffer. libpq reads an ErrorResponse even in place of an SSL answer.
        let _ = socket.try_write(&message);
    }
}

/// Reads a connection's bytes and refuses any message longer than its
/// limit before the codec buffers it: [`PRE_AUTH_MESSAGE_BYTES_MAX`] until
/// the login succeeded, `pg_message_bytes_max` after.
struct FrameGuard<S> {
    inner: S,
    session: Arc<Session>,
    max_after_login: usize,
    /// Untyped messages (startup, SSL or GSS requests) come first.
    untyped: bool,
    /// Header bytes of the message being read, and how many are in.
    header: [u8; 8],
    have: usize,
    /// Body bytes still to pass before the next header.
    skip: usize,
}

impl<S> FrameGuard<S> {
    fn new(inner: S, session: Arc<Session>, max_after_login: usize) -> FrameGuard<S> {
        FrameGuard { inner, session, max_after_login, untyped: true, header: [0; 8], have: 0, skip: 0 }
    }

    /// Follows the message framing over `bytes`; an error names the limit.
    fn observe(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let need = if self.untyped { 8 } else { 5 };
            let n = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < need {
                return Ok(());
            }
            let at = if self.untyped { 0 } else { 1 };
            let len = u32::from_be_bytes(self.header[at..at + 4].try_into().expect("4 bytes")) as usize;
            let logged_in = self.session.logged_in.load(Ordering::SeqCst);
            let (max, name) = if logged_in {
                (self.max_after_login, "pg_message_bytes_max")
            } else {
                (PRE_AUTH_MESSAGE_BYTES_MAX, "the pre-login message limit")
            };
            if len < 4 || len > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a message of {len} bytes exceeds {name} ({max} bytes)"),
                ));
            }
            if self.untyped {
                // An SSLRequest or GSSENCRequest is followed by another
                // untyped message; a startup message by typed ones.
                let code = u32::from_be_bytes(self.header[4..8].try_into().expect("4 bytes"));
                self.untyped = code == 80_877_103 || code == 80_877_104;
                self.skip = len - 8;
            } else {
                self.skip = len - 4;
            }
            self.have = 0;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = r {
            let new = buf.filled()[before..].to_vec();
            if let Err(e) = self.observe(&new) {
                return std::task::Poll::Ready(Err(e));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Before closing on a refused message: stop writing, then read and drop
/// what the client is still sending for a moment (at most 1 MiB or 1 s), so
/// that the close does not reset the connection before the client has read
/// the error.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut FrameGuard<S>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = io.inner.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut total = 0usize;
        while total < 1 << 20 {
            match io.inner.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// One connection: SSL negotiation, then pgwire's message handling under
/// the frame guard, the login timeout and the idle timeout.
async fn serve_socket(
    socket: TcpStream,
    handlers: &Arc<Handlers>,
    session: Arc<Session>,
    limits: PgLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let login_deadline = tokio::time::Instant::now() + limits.auth_timeout;
    let tls_required = tls.is_some();
    let negotiated = tokio::select! {
        _ = tokio::time::sleep_until(login_deadline) => return Ok(()),
        _ = session.evict.notified() => return Ok(()),
        s = pgwire::tokio::server::negotiate_tls::<PreparedStatement>(socket, tls) => s?,
    };
    let Some(framed) = negotiated else { return Ok(()) };
    let tls = matches!(framed.get_ref(), pgwire::tokio::server::MaybeTls::Tls(_));
    // Bytes that arrived in clear before the TLS handshake must not pass as
    // sent over TLS (the class of PostgreSQL's CVE-2021-23214).
    let injected = tls && !framed.read_buffer().is_empty();
    let parts = framed.into_parts();
    let mut guard = FrameGuard::new(parts.io, Arc::clone(&session), limits.message_bytes_max);
    // Bytes the negotiation read ahead go to the codec without passing the
    // guard's reads: follow their framing too.
    let early = guard.observe(&parts.read_buf);
    let mut new_parts = FramedParts::new(guard, parts.codec);
    new_parts.read_buf = parts.read_buf;
    new_parts.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(new_parts);
    if injected {
        send_fatal(&mut socket, fatal("08P01", "unencrypted data after the SSL request")).await;
        return Ok(());
    }
    if let Err(e) = early {
        send_fatal(&mut socket, fatal("54000", e.to_string())).await;
        linger(socket.get_mut()).await;
        return Ok(());
    }
    let conn = ConnHandlers::new(handlers, &session);
    let copy = Arc::new(pgwire::api::NoopHandler);
    loop {
        let logged_in = session.logged_in.load(Ordering::SeqCst);
        if logged_in && !session.token_valid() {
            send_fatal(&mut socket, token_ended()).await;
            return Ok(());
        }
        let wait = if logged_in {
            let idle_left = limits.idle_timeout.saturating_sub(session.quiet());
            tokio::time::Instant::now() + idle_left.min(TOKEN_RECHECK)
        } else {
            login_deadline
        };
        let msg = tokio::select! {
            m = socket.next() => m,
            _ = session.evict.notified() => return Ok(()),
            _ = tokio::time::sleep_until(wait) => {
                if !logged_in {
                    return Ok(()); // no login within pg_auth_timeout_ms
                }
                if session.quiet() < limits.idle_timeout || session.busy.load(Ordering::SeqCst) {
                    continue;
                }
                let e = fatal("57P05", format!(
                    "terminating connection due to idle timeout (pg_idle_timeout_ms = {})",
                    limits.idle_timeout.as_millis()
                ));
                send_fatal(&mut socket, e).await;
                return Ok(());
            }
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(PgWireError::IoError(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                // The frame guard refused a message: say why, then close.
                send_fatal(&mut socket, fatal("54000", e.to_string())).await;
                linger(socket.get_mut()).await;
                return Ok(());
            }
            Some(Err(e)) => {
                send_fatal(&mut socket, e).await;
                return Ok(());
            }
            None => return Ok(()),
        };
        session.touch();
        // A Terminate means the client is disconnecting: close at once.
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        // As PostgreSQL's `hostssl` lines do: with TLS on, nothing but a
        // cancel request (which libpq sends in clear) is served without it,
        // so no password crosses in clear.
        if tls_required && !tls && !matches!(msg, PgWireFrontendMessage::CancelRequest(_)) {
            let e = fatal("28000", "this server requires TLS on the PostgreSQL endpoint; connect with sslmode=require");
            send_fatal(&mut socket, e).await;
            return Ok(());
        }
        // The token may have been revoked since the last check: nothing runs
        // on it once it has.
        if session.logged_in.load(Ordering::SeqCst) && !session.token_valid() {
            send_fatal(&mut socket, token_ended()).await;
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(is_extended_query) => is_extended_query,
            _ => msg.is_extended_query(),
        };
        let is_cancel_request = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        session.busy.store(true, Ordering::SeqCst);
        // While a message runs (a long statement), the token is checked every
        // TOKEN_RECHECK too: a revoked or expired token ends the statement
        // (dropping it aborts its query) and the session.
        let result = {
            let run = pgwire::tokio::server::process_message(
                msg,
                &mut socket,
                Arc::clone(&conn.startup),
                Arc::clone(&conn.queries),
                Arc::clone(&conn.queries),
                Arc::clone(&copy),
                Arc::clone(&conn.cancel),
            );
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    _ = tokio::time::sleep(TOKEN_RECHECK) => {
                        if session.logged_in.load(Ordering::SeqCst) && !session.token_valid() {
                            break None;
                        }
                    }
                }
            }
        };
        session.busy.store(false, Ordering::SeqCst);
        let Some(result) = result else {
            send_fatal(&mut socket, token_ended()).await;
            return Ok(());
        };
        session.touch();
        if let Err(e) = result {
            let is_fatal = e.is_fatal();
            // After a FATAL error no ReadyForQuery follows, as in PostgreSQL,
            // so clients (and pools) see the session as over.
            pgwire::tokio::server::process_error(&mut socket, e, is_extended_query || is_fatal).await?;
            if is_fatal {
                return Ok(());
            }
        }
        if is_cancel_request {
            return Ok(());
        }
    }
}

/// The pgwire handlers shared by every connection.
struct Handlers {
    auth: Authenticate,
    guards: Guards,
    connection_manager: Arc<ConnectionManager>,
    queries: Arc<QueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(engine: Engine, auth: Authenticate, guards: Guards) -> Handlers {
        // Connections register here at login, so a CancelRequest can find them.
        let connection_manager = Arc::new(ConnectionManager::new());
        let parser = Arc::new(StatementParser { engine: engine.clone() });
        Handlers {
            auth,
            guards,
            cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&connection_manager))),
            connection_manager,
            queries: Arc::new(QueryHandler { engine, parser }),
        }
    }
}

type Startup = CleartextPasswordAuthStartupHandler<TokenAuth, DefaultServerParameterProvider>;

/// One connection's handlers: the shared ones, and a login handler that
/// marks this connection's session as logged in. The message loop in
/// `serve_socket` calls them as pgwire's own `process_socket` would.
struct ConnHandlers {
    startup: Arc<Startup>,
    queries: Arc<QueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnHandlers {
    fn new(h: &Handlers, session: &Arc<Session>) -> ConnHandlers {
        let auth = TokenAuth { auth: Arc::clone(&h.auth), session: Arc::clone(session), guards: h.guards.clone() };
        let startup = Startup::new(auth, DefaultServerParameterProvider::default())
            .with_connection_manager(Arc::clone(&h.connection_manager));
        ConnHandlers { startup: Arc::new(startup), queries: Arc::clone(&h.queries), cancel: Arc::clone(&h.cancel) }
    }
}

/// Checks the password message with the caller's [`Authenticate`].
struct TokenAuth {
    auth: Authenticate,
    session: Arc<Session>,
    guards: Guards,
}

impl Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenAuth")
    }
}

#[async_trait]
impl AuthSource for TokenAuth {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Tokens are checked, never handed out: `verify_password` is the only
        // path, and pgwire's cleartext mechanism calls nothing else.
        Err(fatal("28P01", "password authentication failed"))
    }

    async fn verify_password(&self, login: &LoginInfo, presented_password: &[u8]) -> PgWireResult<Option<()>> {
        let user = login.user().unwrap_or_default();
        if self.guards.auth_limiter.blocked(self.session.peer).is_some() {
            self.guards.metrics.connection_refused("auth_failures_per_minute_max");
            return Err(fatal(
                "28000",
                format!(
                    "auth_failures_per_minute_max ({}) failed logins came from this address within a minute; retry later",
                    self.guards.auth_limiter.max()
                ),
            ));
        }
        let Ok(password) = std::str::from_utf8(presented_password) else {
            self.guards.metrics.auth_failed("pg");
            self.guards.auth_limiter.failed(self.session.peer);
            tracing::warn!("PostgreSQL login as {user:?} from {} failed: the password is not UTF-8", self.session.peer);
            return Err(fatal("28P01", "the password is not valid UTF-8"));
        };
        let result = (self.auth)(user, password);
        if result.is_err() {
            self.guards.metrics.auth_failed("pg");
            self.guards.auth_limiter.failed(self.session.peer);
            // Never the password: only the role asked for and the address.
            tracing::warn!("PostgreSQL login as {user:?} from {} failed", self.session.peer);
        }
        match result {
            Ok(still_valid) => {
                *self.session.token.lock().expect("session token lock") = Some(still_valid);
                self.session.logged_in.store(true, Ordering::SeqCst);
                Ok(None)
            }
            Err(AuthFailure::BadPassword(message)) => Err(fatal("28P01", message)),
            Err(AuthFailure::WrongRole(message)) => Err(fatal("28000", message)),
        }
    }
}

/// Answers both query protocols.
struct QueryHandler {
    engine: Engine,
    parser: Arc<StatementParser>,
}

/// One statement, as kept between Parse and Execute.
#[derive(Debug, Clone)]
struct PreparedStatement {
    /// The statement as the client sent it.
    sql: String,
    command: Command,
    /// The output schema from `Engine::describe`; `None` for statements that do
    /// not reach the engine, and in the simple protocol, which does not plan
    /// twice.
    schema: Option<SchemaRef>,
    /// The number of `$n` placeholders.
    param_count: usize,
}

impl PreparedStatement {
    fn fields(&self, format: Option<&Format>) -> Vec<FieldInfo> {
        match (&self.command, &self.schema) {
            (Command::Engine, Some(schema)) => field_infos(schema, format),
            (Command::ShowIsolation, _) => vec![isolation_field(format)],
            _ => Vec::new(),
        }
    }
}

/// Per-connection `SET actlog.use_index`, kept in pgwire's session extensions.
#[derive(Debug, Clone, Copy)]
struct UseIndex(bool);

const ISOLATION_COLUMN: &str = "transaction_isolation";
const ISOLATION_LEVEL: &str = "read committed";

impl QueryHandler {
    /// Runs one statement and turns its outcome into a pgwire response. Query
    /// errors are `PgWireError::UserError`.
    async fn execute<C>(
        &self,
        client: &mut C,
        statement: &PreparedStatement,
        params: Vec<Option<String>>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &statement.command {
            Command::Engine => {
                let options = query_options(client);
                let result = if params.is_empty() {
                    self.engine.query(&statement.sql, &options).await
                } else {
                    self.engine.query_params(&statement.sql, params, &options).await
                };
                let output = result.map_err(|e| query_error(&e))?;
                if output.truncated {
                    let notice = ErrorInfo::new(
                        SEVERITY_WARNING.to_owned(),
                        "01000".to_owned(),
                        format!("the result was cut at {} rows by the row limit", output.row_count),
                    );
                    client.feed(PgWireBackendMessage::NoticeResponse(notice.into())).await?;
                }
                // Encode with the schema that Describe announced, so binary
                // values match the announced types; the engine plans the same
                // way twice, so the column count check is a safety net only.
                let schema = statement
                    .schema
                    .as_ref()
                    .filter(|described| described.fields().len() == output.schema.fields().len())
                    .cloned()
                    .unwrap_or_else(|| Arc::clone(&output.schema));
                Ok(Response::Query(query_response(&schema, output.batches, format)))
            }
            Command::Set { use_index } => {
                if let Some(use_index) = use_index {
                    client.session_extensions().insert(UseIndex(*use_index));
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Command::Begin(tag) => Ok(Response::TransactionStart(Tag::new(tag))),
            Command::End(tag) => Ok(Response::TransactionEnd(Tag::new(tag))),
            Command::ShowIsolation => Ok(Response::Query(show_isolation(format)?)),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let pieces = split_statements(query);
        if pieces.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(pieces.len());
        for sql in pieces {
            let result = match classify(sql) {
                Ok(command) => {
                    let statement = PreparedStatement { sql: sql.to_owned(), command, schema: None, param_count: 0 };
                    self.execute(client, &statement, Vec::new(), &Format::UnifiedText).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(response) => responses.push(response),
                // Like PostgreSQL, the first failing statement ends the string.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PreparedStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// pgwire keeps the response in the portal and sends at most the
    /// Execute message's row count per Execute, so `_max_rows` needs no work
    /// here.
    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let params = text_parameters(portal)?;
        if params.len() != statement.param_count {
            return Err(sql_error(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but the prepared statement requires {}",
                    params.len(),
                    statement.param_count
                ),
            ));
        }
        self.execute(client, statement, params, &portal.result_column_format).await
    }
}

/// Parses (and, for the engine, plans) the statement of a Parse message.
struct StatementParser {
    engine: Engine,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let pieces = split_statements(sql);
        match pieces.as_slice() {
            // Only comments: pgwire stores an empty statement.
            [] => Ok(None),
            [piece] => {
                let command = classify(piece)?;
                let (schema, param_count) = if command == Command::Engine {
                    let (schema, param_count) = self.engine.describe(piece).await.map_err(|e| query_error(&e))?;
                    (Some(schema), param_count)
                } else {
                    (None, 0)
                };
                Ok(Some(PreparedStatement { sql: (*piece).to_owned(), command, schema, param_count }))
            }
            _ => Err(sql_error("42601", "cannot insert multiple commands into a prepared statement")),
        }
    }

    fn get_parameter_types(&self, stmt: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        // TEXT, not UNKNOWN: every driver can encode any value as text, and
        // the engine casts the text to what the query needs.
        Ok(vec![Type::TEXT; stmt.param_count])
    }

    fn get_result_schema(
        &self,
        stmt: &PreparedStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt.fields(column_format))
    }
}

fn query_options<C: ClientInfo>(client: &C) -> QueryOptions {
    QueryOptions {
        use_index: client.session_extensions().get::<UseIndex>().is_none_or(|setting| setting.0),
        ..Default::default()
    }
}

// Errors.

fn sql_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(SEVERITY_ERROR.to_owned(), code.to_owned(), message.into())))
}

/// A FATAL error ends the connection once sent.
fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(SEVERITY_FATAL.to_owned(), code.to_owned(), message.into())))
}

fn internal(message: impl Into<String>) -> PgWireError {
    sql_error("XX000", message)
}

/// Maps the engine's stable error codes to SQLSTATEs.
fn query_error(error: &QueryError) -> PgWireError {
    let code = match error.code {
        "sql_refused" => "42501",
        "sql_invalid" => invalid_sql_code(&error.message),
        "sql_time_limit" => "57014",
        "sql_memory_limit" | "sql_result_too_large" => "53200",
        "sql_busy" => "53000",
        "sql_too_deep" | "sql_too_complex" | "sql_too_large" => "54001",
        _ => {
            // Internal details (storage messages, paths) stay in the server log.
            tracing::error!("pg query failed: {}: {}", error.code, error.message);
            return sql_error("XX000", "internal error; the server log has the details");
        }
    };
    sql_error(code, error.message.clone())
}

/// Tells a missing table or column from other planning errors, by DataFusion's
/// wording ("table '...' not found", "No field named ..."); 42601 otherwise.
fn invalid_sql_code(message: &str) -> &'static str {
    let message = message.to_ascii_lowercase();
    if message.contains("table") && message.contains("not found") {
        "42P01"
    } else if message.contains("no field named") {
        "42703"
    } else {
        "42601"
    }
}

#[cfg(test)]
mod tests {
    use actlog_query::datafusion::arrow::array::{
        BooleanArray, Date32Array, Float64Array, Int32Array, ListBuilder, NullArray, StringArray, StringBuilder,
        TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
    };
    use actlog_query::datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    /// The fields of a DataRow, as raw bytes.
    fn fields_of(row: &DataRow) -> Vec<Option<Vec<u8>>> {
        let mut fields = Vec::new();
        let mut rest: &[u8] = &row.data;
        for _ in 0..row.field_count {
            let length = i32::from_be_bytes(rest[..4].try_into().unwrap());
            rest = &rest[4..];
            if length < 0 {
                fields.push(None);
                continue;
            }
            let (value, tail) = rest.split_at(usize::try_from(length).unwrap());
            fields.push(Some(value.to_vec()));
            rest = tail;
        }
        assert!(rest.is_empty());
        fields
    }

    fn plan_of(batch: &RecordBatch, format: FieldFormat) -> RowPlan {
        RowPlan {
            columns: batch.schema().fields().iter().map(|f| PgColumn::of(f.data_type())).collect(),
            formats: vec![format; batch.num_columns()],
        }
    }

    fn text_rows(batch: &RecordBatch) -> Vec<Vec<Option<String>>> {
        let rows = encode_batch(batch, &plan_of(batch, FieldFormat::Text)).unwrap();
        rows.iter()
            .map(|row| fields_of(row).into_iter().map(|f| f.map(|v| String::from_utf8(v).unwrap())).collect())
            .collect()
    }

    #[test]
    fn split_keeps_quoted_semicolons_and_drops_empty_pieces() {
        // Goal: only top-level semicolons split, and each piece is the text as sent.
        let sql = "select 'a;b', \"c;d\" ; -- x; y\n select $$;$$, $t$;$t$, E'\\';' ;; /* ; /* ; */ */ ; select $1";
        assert_eq!(
            split_statements(sql),
            vec!["select 'a;b', \"c;d\" ", " -- x; y\n select $$;$$, $t$;$t$, E'\\';' ", " select $1"]
        );
        assert!(split_statements("  ;; -- only a comment").is_empty());
        assert_eq!(split_statements("select 1"), vec!["select 1"]);
        // An unterminated quote swallows the rest; the engine reports it.
        assert_eq!(split_statements("select 'a; select 2"), vec!["select 'a; select 2"]);
        assert_eq!(split_statements("select 1; select 'a"), vec!["select 1", " select 'a"]);
        // Cuts land on the bytes of the `;` after multi-byte characters and
        // on later lines.
        assert_eq!(
            split_statements("select 'é', \"ü;\";\r\nselect '日本' -- ; é\n; select 3"),
            vec!["select 'é', \"ü;\"", "\r\nselect '日本' -- ; é\n", " select 3"]
        );
    }

    /// The semicolons sqlparser's PostgreSQL tokenizer finds, as pieces the
    /// way `split_statements` cuts them; `None` when it cannot read the text.
    fn tokenizer_pieces(sql: &str) -> Option<Vec<&str>> {
        use actlog_query::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use actlog_query::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
        let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let (mut pieces, mut start, mut blank) = (Vec::new(), 0, true);
        for t in &tokens {
            match &t.token {
                Token::SemiColon => {
                    let line = line_starts[t.span.start.line as usize - 1];
                    let at = line + sql[line..].char_indices().nth(t.span.start.column as usize - 1)?.0;
                    assert!(sql[at..].starts_with(';'));
                    if !blank {
                        pieces.push(&sql[start..at]);
                    }
                    (start, blank) = (at + 1, true);
                }
                Token::Whitespace(_) => {}
                _ => blank = false,
            }
        }
        if !blank {
            pieces.push(&sql[start..]);
        }
        Some(pieces)
    }

    /// The hand-written splitter (linear, no allocation per token, so safe
    /// on a 4 MiB message) cuts where sqlparser's tokenizer finds the
    /// semicolons, on every text the tokenizer reads among thousands made
    /// of quotes, dollar quotes, comments, escapes and semicolons.
    #[test]
    fn split_agrees_with_sqlparsers_tokenizer() {
        const PARTS: [&str; 22] = [
            ";", " ", "\n", "'", "''", "\"", "E'", "\\", "$$", "$t$", "$1", "--", "/*", "*/", "a", "select 1", "é",
            "x$", "e", "\r\n", "'a;b'", "$q$;$q$",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut compared, mut skipped) = (0, 0);
        for _ in 0..20_000 {
            let n = 1 + (next() % 12) as usize;
            let sql: String = (0..n).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect();
            match tokenizer_pieces(&sql) {
                Some(want) => {
                    assert_eq!(split_statements(&sql), want, "{sql:?}");
                    compared += 1;
                }
                None => skipped += 1,
            }
        }
        assert!(compared > 5_000, "compared {compared}, tokenizer refused {skipped}");
    }

    #[test]
    fn classify_answers_driver_statements() {
        // Goal: the allowlist catches what drivers send, and nothing else.
        assert_eq!(classify("SET extra_float_digits = 3").unwrap(), Command::Set { use_index: None });
        assert_eq!(classify("set application_name to 'x y'").unwrap(), Command::Set { use_index: None });
        assert_eq!(classify("SET actlog.use_index = false").unwrap(), Command::Set { use_index: Some(false) });
        assert_eq!(
            classify("/* c */ SET SESSION actlog.use_index TO 'true'").unwrap(),
            Command::Set { use_index: Some(true) }
        );
        assert_eq!(classify("set actlog.use_index=off").unwrap(), Command::Set { use_index: Some(false) });
        assert!(
            matches!(classify("SET actlog.use_index = maybe"), Err(PgWireError::UserError(e)) if e.code == "22023")
        );
        assert!(matches!(classify("SET actlog.use_indx = true"), Err(PgWireError::UserError(e)) if e.code == "42704"));
        assert_eq!(classify("BEGIN").unwrap(), Command::Begin("BEGIN"));
        assert_eq!(classify("start transaction read only").unwrap(), Command::Begin("START TRANSACTION"));
        assert_eq!(classify("commit").unwrap(), Command::End("COMMIT"));
        assert_eq!(classify("ROLLBACK").unwrap(), Command::End("ROLLBACK"));
        assert_eq!(classify("SHOW TRANSACTION ISOLATION LEVEL").unwrap(), Command::ShowIsolation);
        assert_eq!(classify("select version()").unwrap(), Command::Engine);
        assert_eq!(classify("SHOW ALL").unwrap(), Command::Engine);
        assert_eq!(classify("settle").unwrap(), Command::Engine);
    }

    #[test]
    fn timestamps_dates_and_floats_print_like_postgres() {
        let text = |f: &dyn Fn(&mut String) -> fmt::Result| {
            let mut s = String::new();
            f(&mut s).unwrap();
            s
        };
        // 2026-01-02 03:04:05 UTC.
        let seconds = 1_767_323_045;
        assert_eq!(text(&|s| write_timestamp(s, seconds, 123_456, "+00")), "2026-01-02 03:04:05.123456+00");
        assert_eq!(text(&|s| write_timestamp(s, seconds, 120_000, "+00")), "2026-01-02 03:04:05.12+00");
        assert_eq!(text(&|s| write_timestamp(s, seconds, 0, "")), "2026-01-02 03:04:05");
        assert_eq!(text(&|s| write_timestamp(s, -1, 500_000, "")), "1969-12-31 23:59:59.5");
        assert_eq!(text(&|s| write_date(s, 0)), "1970-01-01");
        assert_eq!(text(&|s| write_date(s, 11_016)), "2000-02-29");
        assert_eq!(text(&|s| write_date(s, -719_163)), "0001-12-31 BC");
        assert_eq!(text(&|s| write_float(s, 0.1f64, 0.1)), "0.1");
        assert_eq!(text(&|s| write_float(s, 0.1f32, f64::from(0.1f32))), "0.1");
        assert_eq!(text(&|s| write_float(s, 1e300f64, 1e300)), "1e+300");
        assert_eq!(text(&|s| write_float(s, 1.5e-5f64, 1.5e-5)), "1.5e-05");
        assert_eq!(text(&|s| write_float(s, 123_456.0f64, 123_456.0)), "123456");
        assert_eq!(text(&|s| write_float(s, f64::NEG_INFINITY, f64::NEG_INFINITY)), "-Infinity");
    }

    #[test]
    fn batches_encode_as_postgres_text() {
        // Goal: every mapped type, NULLs and array quoting, in text format.
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value("c d");
        tags.values().append_null();
        tags.values().append_value("q\"\\,{}");
        tags.values().append_value("");
        tags.values().append_value("NULL");
        tags.append(true);
        tags.append(false);
        let batch = RecordBatch::try_from_iter(vec![
            ("b", Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef),
            ("i", Arc::new(Int32Array::from(vec![-7, 8])) as ArrayRef),
            ("u", Arc::new(UInt64Array::from(vec![u64::MAX, 1])) as ArrayRef),
            ("f", Arc::new(Float64Array::from(vec![2.5, 1e20])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec![Some("x y"), None])) as ArrayRef),
            (
                "t",
                Arc::new(TimestampMicrosecondArray::from(vec![1_767_323_045_123_456, 0]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            ("n", Arc::new(TimestampNanosecondArray::from(vec![1_500, -1])) as ArrayRef),
            ("d", Arc::new(Date32Array::from(vec![20_455, 0])) as ArrayRef),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
        ])
        .unwrap();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            text_rows(&batch),
            vec![
                vec![
                    s("t"),
                    s("-7"),
                    s("18446744073709551615"),
                    s("2.5"),
                    s("x y"),
                    s("2026-01-02 03:04:05.123456+00"),
                    s("1970-01-01 00:00:00.000001"),
                    s("2026-01-02"),
                    s(r#"{a,"c d",NULL,"q\"\\,{}","","NULL"}"#),
                ],
                vec![
                    None,
                    s("8"),
                    s("1"),
                    s("1e+20"),
                    None,
                    s("1970-01-01 00:00:00+00"),
                    s("1969-12-31 23:59:59.999999"),
                    s("1970-01-01"),
                    None,
                ],
            ]
        );

        // A column of Arrow's Null type has no validity bitmap, only logical nulls.
        let schema = Arc::new(Schema::new(vec![Field::new("z", DataType::Null, true)]));
        let nulls = RecordBatch::try_new(schema, vec![Arc::new(NullArray::new(2)) as ArrayRef]).unwrap();
        assert_eq!(text_rows(&nulls), vec![vec![None], vec![None]]);
    }

    #[test]
    fn binary_results_and_parameters() {
        // Goal: binary results follow PostgreSQL's encodings, and binary
        // parameters become the text the engine casts from.
        let batch = RecordBatch::try_from_iter(vec![
            ("i", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            (
                "t",
                Arc::new(TimestampMicrosecondArray::from(vec![946_684_800_000_001]).with_timezone("UTC")) as ArrayRef,
            ),
            ("u", Arc::new(UInt64Array::from(vec![u64::MAX])) as ArrayRef),
        ])
        .unwrap();
        let two = batch.project(&[0, 1]).unwrap();
        let rows = encode_batch(&two, &plan_of(&two, FieldFormat::Binary)).unwrap();
        assert_eq!(fields_of(&rows[0]), vec![Some(vec![0, 0, 0, 1]), Some(vec![0, 0, 0, 0, 0, 0, 0, 1])]);
        // UInt64 above i64::MAX has no binary INT8 form.
        assert!(matches!(
            encode_batch(&batch, &plan_of(&batch, FieldFormat::Binary)),
            Err(PgWireError::UserError(e)) if e.code == "22003"
        ));

        // A TEXT[] in binary: one dimension, a NULL, element type TEXT.
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("ab");
        tags.values().append_null();
        tags.append(true);
        let list = RecordBatch::try_from_iter(vec![("tags", Arc::new(tags.finish()) as ArrayRef)]).unwrap();
        let rows = encode_batch(&list, &plan_of(&list, FieldFormat::Binary)).unwrap();
        let mut expected = Vec::new();
        for word in [1i32, 1, 25, 2, 1, 2] {
            expected.extend_from_slice(&word.to_be_bytes());
        }
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(fields_of(&rows[0]), vec![Some(expected)]);

        assert_eq!(binary_parameter(Some(&Type::INT8), &42i64.to_be_bytes(), 1).unwrap(), "42");
        assert_eq!(binary_parameter(Some(&Type::BOOL), &[1], 1).unwrap(), "true");
        assert_eq!(binary_parameter(None, b"abc", 1).unwrap(), "abc");
        assert_eq!(
            binary_parameter(Some(&Type::TIMESTAMPTZ), &1i64.to_be_bytes(), 1).unwrap(),
            "2000-01-01 00:00:00.000001+00:00"
        );
        assert!(matches!(
            binary_parameter(Some(&Type::INT4), &[0, 1], 2),
            Err(PgWireError::UserError(e)) if e.code == "22P03"
        ));
    }
}
