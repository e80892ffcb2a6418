//! actlog-server: the HTTP API (contract section 4) on axum.
//!
//! This is the only crate that depends on axum (the query engine and the CLI
//! use tokio too). Key items:
//! [`router`] builds the routes over an [`AppState`]; [`run`] serves until
//! SIGTERM or ctrl-c, then stops accepting, drains in-flight requests, signs
//! a final checkpoint and closes the store.
//!
//! Architecture invariants:
//! - A 2xx for an append is sent only after the store's synced group commit
//!   returned for that batch.
//! - Every refusal is an [`error::ApiError`]: a stable code, a message, a
//!   request id, and no internal detail.
//! - Queues are bounded: at most `ingest_requests_max` appends are checked or
//!   waiting at once; beyond that the answer is 429 with `Retry-After`.

mod console;
pub mod cosign;
pub mod error;
mod extract;
mod handlers;
mod ingest;
pub mod listen;
mod metrics;
pub mod otlp;
pub mod pg;
mod sql;
mod tlog;
pub mod tls;
pub mod witness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actlog_core::leaf::sha256;
use actlog_store::{Store, TokenRecord};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorCode};
pub use handlers::expires_at;
pub use metrics::Metrics;

/// Named limits, each with its unit last. Defaults are in `docs/operating.md`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body as sent (compressed or not).
    pub body_bytes_max: usize,
    /// Largest body after gzip decompression; a bigger one is refused early.
    pub decompressed_bytes_max: usize,
    /// Envelopes in one `POST /v1/events`.
    pub batch_envelopes_max: usize,
    /// One envelope as received.
    pub envelope_bytes_max: usize,
    /// One decoded payload.
    pub payload_bytes_max: usize,
    /// Nesting depth of any JSON body.
    pub json_depth_max: usize,
    /// Appends being checked or waiting for commit at once.
    pub ingest_requests_max: usize,
    /// Longest time a request may take.
    pub request_timeout_ms: u64,
    /// Longest wait for `?wait=checkpoint`.
    pub wait_checkpoint_ms: u64,
    /// Longest time to read one request body (`http_body_timeout_ms`).
    pub body_timeout_ms: u64,
    /// Appends one token may have in flight at once
    /// (`ingest_requests_per_token_max`), so one client cannot hold every
    /// ingest slot.
    pub ingest_requests_per_token_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: 16 << 20,
            decompressed_bytes_max: 64 << 20,
            batch_envelopes_max: 4096,
            envelope_bytes_max: 256 << 10,
            payload_bytes_max: 128 << 10,
            json_depth_max: 64,
            ingest_requests_max: 64,
            request_timeout_ms: 30_000,
            wait_checkpoint_ms: 5_000,
            body_timeout_ms: 30_000,
            ingest_requests_per_token_max: 16,
        }
    }
}

/// Failed authentications per source address, over a sliding minute: past
/// `auth_failures_per_minute_max`, that address's requests (HTTP) and
/// logins (PostgreSQL) are refused until the minute has passed.
#[derive(Debug)]
pub struct AuthLimiter {
    max: u32,
    failures: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

/// The window of [`AuthLimiter`].
pub const AUTH_WINDOW: Duration = Duration::from_secs(60);

impl AuthLimiter {
    pub fn new(max: u32) -> AuthLimiter {
        AuthLimiter { max: max.max(1), failures: Default::default() }
    }
    /// How long `ip` stays refused, if it is.
    pub fn blocked(&self, ip: std::net::IpAddr) -> Option<Duration> {
        let m = self.failures.lock().expect("auth limiter lock");
        let (n, since) = m.get(&ip)?;
        let left = AUTH_WINDOW.saturating_sub(since.elapsed());
        (*n >= self.max && !left.is_zero()).then_some(left)
    }
    /// Counts one failed authentication from `ip`.
    pub fn failed(&self, ip: std::net::IpAddr) {
        let mut m = self.failures.lock().expect("auth limiter lock");
        if m.len() > 65_536 {
            // Bound the table: forget addresses whose window has passed.
            m.retain(|_, (_, since)| since.elapsed() < AUTH_WINDOW);
        }
        let e = m.entry(ip).or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= AUTH_WINDOW {
            *e = (0, std::time::Instant::now());
        }
        e.0 += 1;
    }
    /// The limit.
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub ingest_slots: Arc<Semaphore>,
    /// Failed authentications per source address.
    pub auth_limiter: Arc<AuthLimiter>,
    /// Appends in flight per token name.
    pub ingest_per_token: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    pub shutting_down: Arc<AtomicBool>,
    pub public_checkpoint: bool,
    /// Serve every `/tlog/` route without a token.
    pub public_tlog: bool,
    /// actlog's own witness (`serve --witness-for`).
    pub witness: Option<Arc<witness::Witness>>,
    /// Witnessing of this ledger's checkpoints (`serve --witness-policy`).
    pub witnessing: Option<Arc<cosign::Witnessing>>,
    /// `witness_wait_ms`.
    pub witness_wait: Duration,
    pub opa_mapping: Arc<actlog_core::opa::OpaMapping>,
    pub engine: actlog_query::Engine,
}

impl AppState {
    pub fn new(store: Arc<Store>, limits: Limits, engine: actlog_query::Engine) -> AppState {
        AppState {
            engine,
            store,
            ingest_slots: Arc::new(Semaphore::new(limits.ingest_requests_max)),
            ingest_per_token: Arc::default(),
            auth_limiter: Arc::new(AuthLimiter::new(AUTH_FAILURES_PER_MINUTE_MAX_DEFAULT)),
            limits: Arc::new(limits),
            metrics: Arc::new(Metrics::default()),
            shutting_down: Arc::new(AtomicBool::new(false)),
            public_checkpoint: false,
            public_tlog: false,
            witness: None,
            witnessing: None,
            witness_wait: Duration::from_secs(10),
            opa_mapping: Arc::new(actlog_core::opa::OpaMapping::default()),
        }
    }
}

pub use actlog_core::role::Role;

/// Authenticates the bearer token and checks that its role is one of `allowed` (or admin).
pub fn authorize(state: &AppState, headers: &HeaderMap, allowed: &[Role]) -> Result<TokenRecord, ApiError> {
    let unauthenticated = |m: &str| ApiError::new(ErrorCode::Unauthenticated, m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("send `Authorization: Bearer <token>`"))?
        .to_str()
        .map_err(|_| unauthenticated("the Authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let record = state
        .store
        .with_registry(|r| r.authenticate(token.trim()).cloned())
        .ok_or_else(|| unauthenticated("the token is unknown, revoked or expired"))?;
    if record.role == Role::Admin || allowed.contains(&record.role) {
        Ok(record)
    } else {
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this endpoint needs the {} role; the token has `{}`", names.join(" or "), record.role),
        ))
    }
}

/// The routes of contract section 4.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events).get(console::events))
        .route("/v1/search", get(console::search))
        .route("/v1/principals/{id}", get(console::principal))
        .route("/v1/agents/{id}", get(console::agent))
        .route("/v1/evidence", post(console::evidence))
        .route("/ui", get(console::index_redirect))
        .route("/ui/", get(console::index))
        .route("/ui/app.js", get(console::app_js))
        .route("/ui/app.css", get(console::app_css))
        .route("/v1/opa/logs", post(ingest::post_opa))
        .route("/v1/opa/logs/{partition}", post(ingest::post_opa))
        .route("/v1/cerbos/logs", post(ingest::post_cerbos))
        .route("/v1/authzen/decisions", post(ingest::post_authzen))
        .route("/v1/otlp/v1/traces", post(ingest::post_otlp_traces))
        .route("/v1/otlp/v1/logs", post(ingest::post_otlp_logs))
        .route("/v1/events/{seq}", get(handlers::event_by_seq))
        .route("/v1/events/by-id/{event_id}", get(handlers::event_by_id))
        .route("/v1/log", get(handlers::log))
        .route("/v1/checkpoint", get(handlers::checkpoint))
        .route("/v1/proofs/inclusion", get(handlers::inclusion))
        .route("/v1/proofs/consistency", get(handlers::consistency))
        .route("/v1/keys", post(handlers::add_key).get(handlers::list_keys))
        .route("/v1/keys/{name}/revoke", post(handlers::revoke_key))
        .route("/v1/tokens", post(handlers::create_token).get(handlers::list_tokens))
        .route("/v1/tokens/{name}/revoke", post(handlers::revoke_token))
        .route("/v1/sql", post(sql::post_sql))
        .route("/v1/chains/{event_id}", get(sql::chain))
        .route("/tlog/checkpoint", get(tlog::checkpoint))
        .route("/tlog/tile/{*path}", get(tlog::tile))
        .route("/tlog-witness/add-checkpoint", post(witness::add_checkpoint))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // Bodies are read with our own limit so refusals follow the error contract.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Each request's log lines carry its span: id, method, path. With
        // `ACTLOG_LOG=debug`, one line when it starts and one when it ends.
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        // The id in the log is always the server's own: a client's is dropped.
        .layer(MapRequestLayer::new(|mut req: Request| {
            req.headers_mut().remove(X_REQUEST_ID);
            req
        }))
        .with_state(state)
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

const X_REQUEST_ID: &str = "x-request-id";

/// Request ids: 8 random hex digits, `-`, a counter. Errors carry the id in
/// `x-request-id`, and the server log shows it with the internal detail.
#[derive(Debug, Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut r = [0u8; 4];
        let _ = actlog_store::random::fill(&mut r);
        let id = format!("{}-{}", hex::encode(r), REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed));
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The span of one request: its id, method and path (never its query
/// string or headers, which may hold a credential).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req.extensions().get::<RequestId>().and_then(|r| r.header_value().to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
}

/// Failed authentications from one address in a minute before it is refused
/// (`auth_failures_per_minute_max`).
pub const AUTH_FAILURES_PER_MINUTE_MAX_DEFAULT: u32 = 100;

/// Timeout, the failed-authentication limit, and logging of internal
/// errors (inside the request's span, so with its id).
async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<listen::Peer>().map(|p| p.0.ip());
    // Health checks need no token, so a blocked address (a proxy that many
    // clients share, say) still gets them: a flood of bad tokens must not
    // make the server look down.
    let health = matches!(req.uri().path(), "/healthz" | "/readyz");
    if let Some(left) = peer.filter(|_| !health).and_then(|ip| state.auth_limiter.blocked(ip)) {
        state.metrics.connection_refused("auth_failures_per_minute_max");
        return ApiError {
            retry_after_s: Some(left.as_secs().max(1) as u32),
            ..ApiError::new(ErrorCode::TooManyAuthFailures,
                format!(
                    "auth_failures_per_minute_max ({}) failed authentications came from this address within a minute; retry later",
                    state.auth_limiter.max()
                ),
            )
        }
        .into_response();
    }
    let path = req.uri().path().to_string();
    let mut timeout = Duration::from_millis(state.limits.request_timeout_ms);
    if path == "/v1/sql" {
        // SQL has its own named limit (sql_time_ms); let it answer first.
        timeout = timeout.max(state.engine.limits().time + Duration::from_secs(5));
    }
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable(
            ErrorCode::Timeout,
            format!(
                "the request took longer than request_timeout_ms ({} ms); retry (appends are idempotent)",
                timeout.as_millis()
            ),
        )
        .into_response(),
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        state.metrics.auth_failed("http");
        if let Some(ip) = peer {
            state.auth_limiter.failed(ip);
        }
        // Never the credential: only where it came from and what it asked for.
        let from = peer.map(|ip| ip.to_string()).unwrap_or_else(|| "an unknown address".into());
        tracing::warn!("authentication failed from {from}");
    }
    if let Some(detail) = resp.extensions().get::<error::InternalDetail>() {
        tracing::error!("{}", detail.0);
    }
    resp
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Serve `GET /v1/checkpoint` without a token.
    pub public_checkpoint: bool,
    /// Serve every `/tlog/` route (checkpoint, tiles, bundles) without a token.
    pub public_tlog: bool,
    /// Witness the logs of a `--witness-for` policy.
    pub witness: Option<Arc<witness::Witness>>,
    /// Have this ledger's checkpoints witnessed (`--witness-policy`).
    pub witnessing: Option<WitnessingConfig>,
    /// Where OPA input fields are, for non-AuthZEN input.
    pub opa_mapping: actlog_core::opa::OpaMapping,
    /// The PostgreSQL wire endpoint, when enabled.
    pub pg_listen: Option<SocketAddr>,
    /// Segments and per-query limits.
    pub query: actlog_query::EngineOptions,
    /// The HTTP listener's connection limits.
    pub http: listen::ConnLimits,
    /// The PostgreSQL listener's limits.
    pub pg: pg::PgLimits,
    /// `auth_failures_per_minute_max`, shared by both listeners.
    pub auth_failures_per_minute_max: u32,
    /// TLS for both listeners, when `--tls-cert` and `--tls-key` are given.
    pub tls: Option<tls::Tls>,
    /// `--archive`: where sealed ranges go.
    pub archive: Option<ArchiveConfig>,
}

/// `--archive` and what the archiver needs.
#[derive(Clone)]
pub struct ArchiveConfig {
    /// The archive location.
    pub archive: actlog_archive::Archive,
    /// The ledger key, which signs each range's bundle and record.
    pub seed: [u8; 32],
    /// Seqs per archived range (the segment size).
    pub range_events: u64,
    /// A local directory for the range being written.
    pub staging: std::path::PathBuf,
    /// `--hot-retention`: archived ranges whose newest event is older than
    /// this leave RocksDB. `None` keeps everything.
    pub hot_retention: Option<Duration>,
    /// `archive_cache_bytes`: archived leaves kept in memory for reads.
    pub cache_bytes: usize,
    /// `archive_segment_cache_bytes`: archived segment files kept in
    /// memory for queries.
    pub segment_cache_bytes: usize,
}

impl std::fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("ArchiveConfig")
            .field("archive", &self.archive)
            .field("range_events", &self.range_events)
            .field("staging", &self.staging)
            .field("hot_retention", &self.hot_retention)
            .field("cache_bytes", &self.cache_bytes)
            .field("segment_cache_bytes", &self.segment_cache_bytes)
            .finish_non_exhaustive()
    }
}

/// How often the archiver looks for a range to archive, and waits after a failure.
const ARCHIVE_INTERVAL: Duration = Duration::from_secs(2);

/// The archiver: its own thread and runtime, so exporting a range never
/// holds the server's async threads. Each turn archives what the latest
/// checkpoint covers; a failed turn is logged, counted and retried.
fn spawn_archiver(
    config: ArchiveConfig,
    engine: actlog_query::Engine,
    metrics: Arc<metrics::Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("actlog-archiver".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("the archiver cannot start a runtime: {e}");
                return;
            }
        };
        while !*stop.borrow() {
            let turn = actlog_archive::archive_ranges(
                &config.archive,
                &engine,
                &config.seed,
                &config.staging,
                config.range_events,
                1,
            );
            let mut more = false;
            match rt.block_on(turn) {
                Ok(p) => {
                    metrics.archive_end(p.end_seq);
                    more = p.ranges > 0;
                }
                Err(e) => {
                    metrics.archive_failed();
                    tracing::error!("archiving to {} failed (retried): {e}", config.archive.url());
                }
            }
            if let Some(horizon) = config.hot_retention {
                match rt.block_on(evict_one(&config.archive, engine.store(), horizon)) {
                    Ok(Some((floor, n))) => {
                        metrics.evicted(floor, n);
                        more = true;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        metrics.archive_failed();
                        tracing::error!("moving archived events out of RocksDB failed (retried): {e}");
                    }
                }
                match rt.block_on(actlog_archive::retire_segments(&config.archive, &engine)) {
                    Ok(n) => metrics.retired(n),
                    Err(e) => {
                        metrics.archive_failed();
                        tracing::error!("retiring query segments to the archive failed (retried): {e}");
                    }
                }
            }
            if more {
                continue; // more may be waiting: no pause between ranges
            }
            let mut stop = stop.clone();
            rt.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(ARCHIVE_INTERVAL) => {}
                    _ = stop.changed() => {}
                }
            });
        }
    })
}

/// Retention's step: the archived range that starts at the cold floor
/// leaves RocksDB once it lies wholly before the head, its newest event
/// was received longer than `horizon` ago, its objects check out in the
/// archive, and (inside [`Store::evict`]) its leaves and envelopes there
/// are byte for byte the ledger's. Returns the new floor and the events
/// moved, or `None` when no range is due.
async fn evict_one(
    archive: &actlog_archive::Archive,
    store: &Arc<Store>,
    horizon: Duration,
) -> Result<Option<(u64, u64)>, String> {
    let floor = store.cold_floor();
    let ranges = archive.ranges().await.map_err(|e| e.to_string())?;
    let Some(&(first, end)) = ranges.iter().find(|(f, _)| *f == floor) else { return Ok(None) };
    if end >= store.head().tree_size {
        return Ok(None);
    }
    let newest = store.event(end - 1).map_err(|e| e.to_string())?.ok_or("the range's last event is missing")?;
    let age_ns = actlog_store::now_ns().saturating_sub(newest.leaf.received_at_unix_nanos as i64);
    if (age_ns as u128) < horizon.as_nanos() {
        return Ok(None);
    }
    actlog_archive::check_range(archive, store.verifier_key(), first, end).await.map_err(|e| e.to_string())?;
    let store = Arc::clone(store);
    let n = tokio::task::spawn_blocking(move || store.evict(end)).await.map_err(|e| e.to_string())?;
    let n = n.map_err(|e| e.to_string())?;
    tracing::info!("seqs {first}..{end} left RocksDB; they are read from {}", archive.url());
    Ok(Some((end, n)))
}

/// `--witness-policy` and its timeouts.
#[derive(Debug, Clone)]
pub struct WitnessingConfig {
    /// The C2SP tlog-policy: witnesses, groups, quorum.
    pub policy: actlog_core::witness::Policy,
    /// `witness_timeout_ms`: the longest one call to a witness may take.
    pub timeout: Duration,
    /// `witness_wait_ms`: the longest `?wait=witnessed` waits.
    pub wait: Duration,
}

/// How often the sealer looks for a full segment.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Binds and serves until SIGTERM or ctrl-c (or `shutdown` resolves), then
/// drains, signs a final checkpoint and closes the store. `on_bound` gets the
/// bound address (useful with port 0).
pub fn run(
    store: Store,
    config: ServerConfig,
    on_bound: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("actlog-http").build()?;
    let store = Arc::new(store);
    // Reads below the cold floor go to the archive, from the first one on.
    let cold_stats = match &config.archive {
        Some(a) => {
            let cold = actlog_archive::ArchiveCold::start(a.archive.clone(), a.cache_bytes)?;
            let stats = cold.stats();
            store.set_cold_source(Arc::new(cold)).map_err(std::io::Error::other)?;
            Some(stats)
        }
        None if store.cold_floor() > 0 => {
            return Err(std::io::Error::other(format!(
                "events below seq {} have left this data directory for the archive; start with --archive URL",
                store.cold_floor()
            )));
        }
        None => None,
    };
    let result = runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives once we have said we listen
        // must find them installed.
        let signals = Signals::install()?;
        let engine = actlog_query::Engine::open(Arc::clone(&store), config.query)
            .map_err(|e| std::io::Error::other(format!("opening the query engine: {e}")))?;
        if let Some(a) = &config.archive {
            engine.attach_archive(a.archive.reader(), a.segment_cache_bytes);
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let pg_listener = match config.pg_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
            None => None,
        };
        on_bound(Bound { http: listener.local_addr()?, pg: pg_listener.as_ref().map(|l| l.local_addr()).transpose()? });
        let mut state = AppState::new(Arc::clone(&store), config.limits, engine.clone());
        state.public_checkpoint = config.public_checkpoint;
        state.public_tlog = config.public_tlog;
        state.witness = config.witness.clone();
        let witnessing = match &config.witnessing {
            Some(c) => {
                let w = cosign::Witnessing::open(&store, c.policy.clone()).map_err(std::io::Error::other)?;
                state.witness_wait = c.wait;
                Some((Arc::new(w), c.timeout))
            }
            None => None,
        };
        state.witnessing = witnessing.as_ref().map(|(w, _)| Arc::clone(w));
        state.auth_limiter = Arc::new(AuthLimiter::new(config.auth_failures_per_minute_max));
        state.opa_mapping = Arc::new(config.opa_mapping);
        let flag = Arc::clone(&state.shutting_down);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sealer = tokio::spawn(seal_loop(engine.clone(), stop_rx.clone()));
        if let Some(stats) = cold_stats {
            state.metrics.cold_reads(stats);
        }
        if let Some(cache) = engine.archive_cache() {
            state.metrics.segment_reads(cache);
        }
        state.metrics.evicted(store.cold_floor(), 0);
        let archiver = match config.archive.clone() {
            Some(a) => Some(spawn_archiver(a, engine.clone(), Arc::clone(&state.metrics), stop_rx.clone())?),
            None => None,
        };
        let submitter = witnessing.map(|(w, timeout)| {
            tokio::spawn(cosign::run(w, Arc::clone(&store), Arc::clone(&state.metrics), timeout, stop_rx.clone()))
        });
        let pg = pg_listener.map(|l| {
            let auth_store = Arc::clone(&store);
            let auth: pg::Authenticate =
                Arc::new(move |user: &str, password: &str| pg_authenticate(&auth_store, user, password));
            let guards = pg::Guards { metrics: Arc::clone(&state.metrics), auth_limiter: Arc::clone(&state.auth_limiter) };
            let tls = config.tls.as_ref().map(|t| t.pg.clone());
            tokio::spawn(pg::serve(l, engine.clone(), auth, config.pg, tls, guards, stop_rx.clone()))
        });
        let metrics = Arc::clone(&state.metrics);
        let app = router(state);
        let watched = Arc::clone(&store);
        let http_tls = config.tls.as_ref().map(|t| t.http.clone());
        let served = listen::serve(listener, app, config.http, http_tls, metrics, async move {
            tokio::select! {
                _ = shutdown => {}
                _ = signals.wait() => {}
                _ = storage_failed(&watched) => {
                    tracing::error!("the store stopped after a failed write; exiting so that a supervisor restarts actlog");
                }
            }
            flag.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: no new connections; draining in-flight requests");
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = sealer.await;
        if let Some(a) = archiver {
            let _ = tokio::task::spawn_blocking(move || a.join()).await;
        }
        if let Some(s) = submitter {
            let _ = s.await;
        }
        if let Some(pg) = pg {
            let _ = pg.await;
        }
        served
    });
    runtime.shutdown_timeout(Duration::from_secs(30));
    let store = Arc::try_unwrap(store).map_err(|_| std::io::Error::other("store still in use after shutdown"))?;
    if store.is_poisoned() {
        // Fail-stop: the writer's state may be ahead of the disk, so the only
        // trusted state is what a fresh open recovers and checks.
        let why = if store.is_disk_full() { "the disk is full" } else { "a storage write failed" };
        drop(store);
        result?;
        return Err(std::io::Error::other(format!(
            "the store stopped because {why}; every acknowledged event is on disk. \
             Fix the cause and restart actlog (a supervisor does this on a non-zero exit)"
        )));
    }
    store.close().map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!("final checkpoint signed; store closed");
    result
}

/// Resolves once the store's writer has stopped after a failed write.
async fn storage_failed(store: &Store) {
    while !store.is_poisoned() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses the server listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// HTTP.
    pub http: SocketAddr,
    /// PostgreSQL wire, when enabled.
    pub pg: Option<SocketAddr>,
}

/// Seals full segments in the background until told to stop. A failure is
/// logged and retried: segments are derived data, and queries read the
/// tail from the ledger meanwhile.
async fn seal_loop(engine: actlog_query::Engine, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.seal()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!("sealed {n} segment(s)"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("sealing a segment failed (queries read the ledger meanwhile): {e}"),
            Err(e) => tracing::error!("the sealer task failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SEAL_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// The PostgreSQL wire login: `user` is the role, the password the token.
/// The session keeps a check of that token, so it ends when the token is
/// revoked or expires.
fn pg_authenticate(store: &Arc<Store>, user: &str, password: &str) -> Result<pg::TokenStillValid, pg::AuthFailure> {
    let record = store.with_registry(|r| r.authenticate(password.trim()).cloned()).ok_or_else(|| {
        pg::AuthFailure::BadPassword(
            "the password must be a valid actlog API token, not revoked or expired".to_string(),
        )
    })?;
    if record.role != Role::Query && record.role != Role::Admin {
        return Err(pg::AuthFailure::WrongRole(format!(
            "SQL needs a token with the query (or admin) role; this token has `{}`",
            record.role
        )));
    }
    if record.role.as_str() != user {
        return Err(pg::AuthFailure::WrongRole(format!(
            "connect with user={} (the token's role), not `{user}`",
            record.role
        )));
    }
    let (store, hash) = (Arc::clone(store), sha256(password.trim().as_bytes()));
    Ok(Arc::new(move || store.with_registry(|r| r.authenticate_hash(&hash).is_some())))
}

/// SIGTERM and SIGINT (ctrl-c), registered before the server announces itself.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
