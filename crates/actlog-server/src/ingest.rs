//! `POST /v1/events`: read, decompress, split, check, append, acknowledge.
//!
//! Order of refusals: auth (401/403), overload (429), body size (413),
//! encoding and media type (415), gzip (400/413), JSON shape and depth
//! (400/422), batch size (413), then every envelope is checked and one bad
//! envelope refuses the batch (422 with items). Only a fully checked batch
//! reaches the store, and the 200 is sent after its synced commit.

use std::time::{Duration, Instant};

use actlog_core::b64;
use actlog_core::body::{self, Shape};
use actlog_core::ingest::{self, Checked, EnvelopeLimits, Submitter, check_envelopes_parallel};
use actlog_store::AppendError;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Item;
use crate::{ApiError, AppState, ErrorCode, Limits, Role, authorize};

#[derive(Deserialize)]
pub struct IngestParams {
    wait: Option<String>,
}

/// Reads the body under `body_bytes_max` within `http_body_timeout_ms`,
/// then undoes `Content-Encoding: gzip` under `decompressed_bytes_max` on the
/// blocking pool, so inflating never holds an async worker. A plain body is
/// handed on as collected, without another copy.
pub async fn read_body(body: Body, headers: &HeaderMap, limits: &Limits) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_millis(limits.body_timeout_ms);
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limits.body_bytes_max)).await {
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::BodyTimeout,
                format!("the body did not arrive within http_body_timeout_ms ({} ms)", limits.body_timeout_ms),
            ));
        }
        Ok(Err(_)) => {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("the body exceeds body_bytes_max ({} bytes)", limits.body_bytes_max),
            ));
        }
        Ok(Ok(b)) => b,
    };
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase()) {
        None => Ok(bytes),
        Some(e) if e == "identity" => Ok(bytes),
        Some(e) if e == "gzip" => {
            let max = limits.decompressed_bytes_max;
            tokio::task::spawn_blocking(move || body::gunzip(&bytes, max).map(Bytes::from).map_err(ApiError::from))
                .await
                .map_err(|e| ApiError::internal(format!("gunzip task failed: {e}")))?
        }
        Some(other) => Err(ApiError::new(
            ErrorCode::UnsupportedEncoding,
            format!("Content-Encoding `{other}` is not supported; send gzip or nothing"),
        )),
    }
}

/// An ingest slot, counted globally (`ingest_requests_max`) and per token
/// (`ingest_requests_per_token_max`); both are given back on drop.
pub struct IngestSlot {
    _global: tokio::sync::OwnedSemaphorePermit,
    token: String,
    per_token: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for IngestSlot {
    fn drop(&mut self) {
        let mut m = self.per_token.lock().expect("per-token lock");
        if let Some(n) = m.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.token);
            }
        }
    }
}

/// Takes an ingest slot for `token`, or says which limit is full.
fn ingest_slot(state: &AppState, token: &str) -> Result<IngestSlot, &'static str> {
    let global = state.ingest_slots.clone().try_acquire_owned().map_err(|_| "ingest_requests_max")?;
    let mut m = state.ingest_per_token.lock().expect("per-token lock");
    let n = m.entry(token.to_string()).or_default();
    if *n >= state.limits.ingest_requests_per_token_max.max(1) {
        return Err("ingest_requests_per_token_max");
    }
    *n += 1;
    Ok(IngestSlot {
        _global: global,
        token: token.to_string(),
        per_token: std::sync::Arc::clone(&state.ingest_per_token),
    })
}

/// The media type of a request, lowercase, without parameters ("" when none).
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn media_shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    match content_type(headers).as_str() {
        "application/json" => Ok(Shape::Array),
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => Ok(Shape::Ndjson),
        "" => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send Content-Type application/json (a JSON array of envelopes) or application/x-ndjson",
        )),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type `{other}` is not accepted; send application/json or application/x-ndjson"),
        )),
    }
}

/// Splits a body into envelope byte strings, exactly as received.
pub fn split_envelopes(body: &[u8], headers: &HeaderMap, limits: &Limits) -> Result<Vec<Vec<u8>>, ApiError> {
    let shape = media_shape(headers)?;
    body::split(body, shape, &split_limits(limits, false), "envelopes").map_err(ApiError::from)
}

fn split_limits(limits: &Limits, empty_batch_ok: bool) -> body::SplitLimits {
    body::SplitLimits {
        json_depth_max: limits.json_depth_max,
        batch_items_max: limits.batch_envelopes_max,
        empty_batch_ok,
    }
}

/// Checks a batch on the rayon pool (both cores for big batches).
pub async fn check_batch(
    state: &AppState,
    envelopes: Vec<Vec<u8>>,
    submitter: Submitter,
) -> Result<Vec<Checked>, ApiError> {
    let registry = state.store.registry();
    let limits = EnvelopeLimits {
        envelope_bytes_max: state.limits.envelope_bytes_max,
        payload_bytes_max: state.limits.payload_bytes_max,
    };
    let results =
        tokio::task::spawn_blocking(move || check_envelopes_parallel(envelopes, &registry, &submitter, &limits))
            .await
            .map_err(|e| ApiError::internal(format!("check task failed: {e}")))?;
    batch_or_422(state, results, "one or more envelopes were refused; nothing from this batch was stored")
}

/// The checked items of a batch, or one 422 listing every refused item:
/// a batch is stored whole or not at all (`actlog_core::ingest::all_or_nothing`).
fn batch_or_422(
    state: &AppState,
    results: Vec<Result<Checked, actlog_core::ingest::ItemError>>,
    message: &str,
) -> Result<Vec<Checked>, ApiError> {
    ingest::all_or_nothing(results).map_err(|refused| refused_items(state, refused, message))
}

/// One 422 `invalid_batch` naming every refused item, each counted in
/// `/metrics` by its code.
fn refused_items(
    state: &AppState,
    refused: Vec<(usize, actlog_core::ingest::ItemError)>,
    message: impl Into<String>,
) -> ApiError {
    let items: Vec<Item> =
        refused.into_iter().map(|(index, e)| Item { index, code: e.code, message: e.message, path: e.path }).collect();
    for i in &items {
        state.metrics.refused(i.code);
    }
    ApiError { items, ..ApiError::new(ErrorCode::InvalidBatch, message) }
}

/// Refuses a request whose items fan out to more decisions than
/// `batch_envelopes_max` (413 `batch_too_large`); `why` says how.
fn within_batch_max(state: &AppState, decisions: usize, why: impl FnOnce(usize) -> String) -> Result<(), ApiError> {
    let max = state.limits.batch_envelopes_max;
    if decisions > max {
        state.metrics.refused("batch_too_large");
        return Err(ApiError::new(ErrorCode::BatchTooLarge, why(max)));
    }
    Ok(())
}

/// The SHA-256 of an ingest token, as its record holds it: the producer key
/// id of the token-authenticated leaves it submits.
fn token_hash(token: &actlog_store::TokenRecord) -> Result<[u8; 32], ApiError> {
    hex::decode(&token.token_sha256_hex)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| ApiError::internal("a token record has a malformed hash"))
}

/// Appends `checked` and answers with its receipts; nothing to append (an
/// empty chunk, or only skipped items) answers with none.
async fn append_receipts(state: &AppState, checked: Vec<Checked>) -> Result<ReceiptsBody, ApiError> {
    if checked.is_empty() {
        return Ok(ReceiptsBody { checkpoint: None, receipts: Vec::new(), tree_size: state.store.head().tree_size });
    }
    let appended = append(state, checked).await?;
    receipts_body(state, appended, None).await
}

/// Appends through the store's group commit and waits for the synced write.
pub async fn append(state: &AppState, checked: Vec<Checked>) -> Result<actlog_store::Appended, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let n = checked.len();
    // The numbered events (source.stream), for the sequence gaps once stored.
    let numbered: Vec<(usize, String, String, u64)> = checked
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let f = c.fields();
            Some((i, f.pdp_id.clone(), f.source_stream.clone()?, f.source_stream_seq?))
        })
        .collect();
    let started = Instant::now();
    state.store.append_async(
        checked,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    let result = rx.await.map_err(|_| ApiError::internal("the writer dropped the request"))?;
    state.metrics.commit_latency(started.elapsed());
    match result {
        Ok(a) => {
            let dups = a.receipts.iter().filter(|r| r.duplicate).count();
            state.metrics.accepted((n - dups) as u64, dups as u64, n);
            if !numbered.is_empty() {
                state.metrics.stream_events(
                    numbered
                        .into_iter()
                        .filter(|(i, ..)| a.receipts.get(*i).is_some_and(|r| !r.duplicate))
                        .map(|(_, pdp, stream, n)| (pdp, stream, n)),
                );
            }
            Ok(a)
        }
        Err(AppendError::Conflict { index, event_id, .. }) => {
            state.metrics.refused("conflict");
            Err(ApiError {
                items: vec![Item {
                    index,
                    code: "conflict",
                    message: format!("event_id `{event_id}` is already stored with a different payload"),
                    path: "/event_id".into(),
                }],
                ..ApiError::new(
                    ErrorCode::Conflict,
                    "an event_id is already stored with a different payload; nothing from this batch was stored",
                )
            })
        }
        Err(AppendError::TokenRevoked { index }) => {
            state.metrics.refused("revoked_token");
            Err(ApiError {
                items: vec![Item {
                    index,
                    code: "revoked_token",
                    message: "the ingest token was revoked".into(),
                    path: String::new(),
                }],
                ..ApiError::new(ErrorCode::Unauthenticated, "the token was revoked; nothing from this batch was stored")
            })
        }
        Err(AppendError::KeyRevoked { index }) => {
            state.metrics.refused("revoked_key");
            Err(ApiError {
                items: vec![Item {
                    index,
                    code: "revoked_key",
                    message: "the signing key was revoked".into(),
                    path: "/signatures".into(),
                }],
                ..ApiError::new(
                    ErrorCode::InvalidBatch,
                    "a signing key was revoked; nothing from this batch was stored",
                )
            })
        }
        Err(AppendError::Store(actlog_store::Error::Poisoned)) if state.store.is_disk_full() => {
            state.metrics.refused("storage_full");
            Err(ApiError {
                retry_after_s: Some(5),
                ..ApiError::new(
                    ErrorCode::StorageFull,
                    "the ledger's disk is full: nothing from this batch was stored; actlog exits so that its \
                     supervisor restarts it once space is freed; retry then (appends are idempotent)",
                )
            })
        }
        Err(AppendError::Store(e)) => Err(e.into()),
    }
}

/// The 200 body of an append (contract section 4). Serialized straight
/// from these types, with no JSON tree built per receipt; the fields are in
/// the order JSON objects print in (by name), so the bytes are what they
/// were when the body was built as a `serde_json::Value`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptsBody {
    /// With `?wait=`: the checkpoint (signed note) the proofs are against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// One per event, in submission order.
    pub receipts: Vec<ReceiptOut>,
    /// The tree size after the commit.
    pub tree_size: u64,
}

/// One event's receipt.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptOut {
    /// Whether the event was already in the ledger (then `seq` is its original seq).
    pub duplicate: bool,
    /// The event id.
    pub event_id: String,
    /// With `?wait=`: its inclusion proof against `checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<Inclusion>,
    /// Its Merkle leaf hash, base64.
    pub leaf_hash: String,
    /// Its seq.
    pub seq: u64,
}

/// An inclusion proof in a receipt.
#[derive(Debug, Serialize, Deserialize)]
pub struct Inclusion {
    /// The audit path, base64, from the leaf upward.
    pub hashes: Vec<String>,
    /// The tree size it proves against.
    pub tree_size: u64,
}

/// Builds the 200 body, with a checkpoint and proofs for `?wait=checkpoint`.
pub async fn receipts_body(
    state: &AppState,
    appended: actlog_store::Appended,
    wait: Option<Wait>,
) -> Result<ReceiptsBody, ApiError> {
    let need = appended.receipts.iter().map(|r| r.seq + 1).max().unwrap_or(0);
    let seqs: Vec<u64> = appended.receipts.iter().map(|r| r.seq).collect();
    // Duplicates of events below the cold floor come without their leaf
    // hashes: they are read here, off the writer, from the archive's tiles.
    let store = std::sync::Arc::clone(&state.store);
    let fill = move |receipts: Vec<actlog_store::Receipt>| -> Result<Vec<_>, actlog_store::Error> {
        receipts.into_iter().map(|r| Ok((r.leaf_hash.map_or_else(|| store.leaf_hash(r.seq), Ok)?, r))).collect()
    };
    let receipts = if appended.receipts.iter().all(|r| r.leaf_hash.is_some()) {
        fill(appended.receipts)?
    } else {
        let receipts = appended.receipts;
        tokio::task::spawn_blocking(move || fill(receipts))
            .await
            .map_err(|e| ApiError::internal(format!("leaf hash task failed: {e}")))??
    };
    let mut body = ReceiptsBody {
        checkpoint: None,
        receipts: receipts
            .into_iter()
            .map(|(leaf_hash, r)| ReceiptOut {
                duplicate: r.duplicate,
                event_id: r.event_id,
                inclusion: None,
                leaf_hash: b64::encode(leaf_hash),
                seq: r.seq,
            })
            .collect(),
        tree_size: appended.tree_size,
    };
    if let Some(wait) = wait {
        let found = match (wait, &state.witnessing) {
            (Wait::Witnessed, Some(w)) => w.wait_published(need, state.witness_wait).await,
            _ => {
                let store = std::sync::Arc::clone(&state.store);
                let timeout = Duration::from_millis(state.limits.wait_checkpoint_ms);
                tokio::task::spawn_blocking(move || store.wait_checkpoint(need, timeout))
                    .await
                    .map_err(|e| ApiError::internal(format!("checkpoint task failed: {e}")))?
            }
        };
        let Some((size, note)) = found else {
            return Err(match wait {
                Wait::Checkpoint => ApiError::unavailable(
                    ErrorCode::CheckpointTimeout,
                    "the events are stored, but no checkpoint covered them within wait_checkpoint_ms; retry (appends are idempotent)",
                ),
                Wait::Witnessed => ApiError::unavailable(
                    ErrorCode::WitnessQuorumTimeout,
                    "the events are stored, but no checkpoint covering them met the witness quorum within witness_wait_ms; \
                     retry (appends are idempotent), and see /v1/log for each witness",
                ),
            });
        };
        let store = std::sync::Arc::clone(&state.store);
        let proofs = tokio::task::spawn_blocking(move || {
            seqs.iter().map(|s| store.inclusion_proof(*s, size)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ApiError::internal(format!("proof task failed: {e}")))??;
        for (r, (_, hashes)) in body.receipts.iter_mut().zip(proofs) {
            r.inclusion = Some(Inclusion { hashes: hashes.iter().map(b64::encode).collect(), tree_size: size });
        }
        body.checkpoint = Some(note);
    }
    Ok(body)
}

/// What `?wait=` asks a receipt to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A signed checkpoint covering the events.
    Checkpoint,
    /// A checkpoint covering them that meets the witness quorum.
    Witnessed,
}

/// At most this much of a shed request's body is read before answering 429.
const SHED_DRAIN_BYTES_MAX: usize = 1 << 20;

/// Refuses an append for overload. Up to `SHED_DRAIN_BYTES_MAX` of the body
/// is read and dropped first (no parsing, no checks), so most clients see a
/// clean 429 rather than a reset mid-upload, while shed requests cannot hold
/// more than that much memory each.
async fn shed(state: &AppState, body: Body, limit: &'static str) -> ApiError {
    state.metrics.refused("overloaded");
    let drain = axum::body::to_bytes(body, SHED_DRAIN_BYTES_MAX);
    let _ = tokio::time::timeout(Duration::from_millis(state.limits.body_timeout_ms.min(1_000)), drain).await;
    let n = if limit == "ingest_requests_max" {
        state.limits.ingest_requests_max
    } else {
        state.limits.ingest_requests_per_token_max
    };
    ApiError::overloaded(format!("more than {limit} ({n}) appends are in flight"))
}

pub async fn post_events(
    State(state): State<AppState>,
    params: Result<crate::extract::ApiQuery<IngestParams>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    let token = authorize(&state, &headers, &[Role::Ingest])?;
    let crate::extract::ApiQuery(params) = params?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable(
            ErrorCode::ShuttingDown,
            "the server is shutting down; retry against the next instance",
        ));
    }
    let wait = match params.wait.as_deref() {
        None => None,
        Some("checkpoint") => Some(Wait::Checkpoint),
        Some("witnessed") if state.witnessing.is_some() => Some(Wait::Witnessed),
        Some("witnessed") => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "wait=witnessed needs a server started with --witness-policy",
            ));
        }
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("wait=`{other}` is not supported; use wait=checkpoint or wait=witnessed"),
            ));
        }
    };
    // Bounded: beyond ingest_requests_max in flight (or one token's share
    // of them), shed load at once.
    let _slot = match ingest_slot(&state, &token.name) {
        Ok(slot) => slot,
        Err(limit) => return Err(shed(&state, body, limit).await),
    };
    let bytes = read_body(body, &headers, &state.limits).await?;
    let (h, l) = (headers.clone(), std::sync::Arc::clone(&state.limits));
    let envelopes = scan(bytes.len(), move || split_envelopes(&bytes, &h, &l)).await?;
    state.metrics.batch(envelopes.len());
    let checked = check_batch(&state, envelopes, Submitter { pdp_id: token.pdp_id.clone() }).await?;
    let appended = append(&state, checked).await?;
    Ok(Json(receipts_body(&state, appended, wait).await?))
}

/// `POST /v1/opa/logs[/{partition}]`: OPA's decision-log upload protocol.
pub async fn post_opa(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    let token = authorize(&state, &headers, &[Role::Ingest])?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable(ErrorCode::ShuttingDown, "the server is shutting down; OPA will retry"));
    }
    let _slot = match ingest_slot(&state, &token.name) {
        Ok(slot) => slot,
        Err(limit) => return Err(shed(&state, body, limit).await),
    };
    let bytes = read_body(body, &headers, &state.limits).await?;
    let limits = std::sync::Arc::clone(&state.limits);
    let raws = scan(bytes.len(), move || split_opa(&bytes, &limits)).await?;
    if raws.is_empty() {
        return Ok(Json(ReceiptsBody {
            checkpoint: None,
            receipts: Vec::new(),
            tree_size: state.store.head().tree_size,
        }));
    }
    state.metrics.batch(raws.len());
    let mapping = std::sync::Arc::clone(&state.opa_mapping);
    let token_hash = token_hash(&token)?;
    let limits = state.limits.clone();
    let results = tokio::task::spawn_blocking(move || {
        raws.par_iter().map(|raw| map_opa(raw, &mapping, &token, token_hash, &limits)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("mapping task failed: {e}")))?;
    let checked =
        batch_or_422(&state, results, "one or more OPA events were refused; nothing from this chunk was stored")?;
    let appended = append(&state, checked).await?;
    Ok(Json(receipts_body(&state, appended, None).await?))
}

/// `POST /v1/cerbos/logs`: Cerbos decision-log entries, as its `file`
/// audit backend writes them (NDJSON, or a JSON array), from a log shipper.
/// Each entry fans out to a decision per resource and action; access-log
/// entries are skipped and counted. All or nothing, like every batch.
pub async fn post_cerbos(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    post_mapped(state, headers, body, "Cerbos log entries", |raw, token, max, _| {
        actlog_core::cerbos::check(raw, token, max)
    })
    .await
}

/// `POST /v1/authzen/decisions`: AuthZEN evaluations as a PEP or PDP
/// records them, `{request, response, pdp, policy_version, x_request_id,
/// time}`: one record (a JSON object), a JSON array or NDJSON. A batch
/// evaluation fans out to a decision per item.
pub async fn post_authzen(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    post_mapped(state, headers, body, "AuthZEN records", |raw, token, max, received| {
        actlog_core::authzen::check(raw, token, max, received).map(Some)
    })
    .await
}

/// `POST /v1/otlp/v1/traces`: OTLP/HTTP trace exports (protobuf or JSON,
/// gzip or not) from an OpenTelemetry SDK or Collector; GenAI guardrail and
/// tool-call spans become decisions and outcomes (`crate::otlp`).
pub async fn post_otlp_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    post_otlp(state, headers, body, crate::otlp::Signal::Traces).await
}

/// `POST /v1/otlp/v1/logs`: OTLP/HTTP log exports; log records that carry
/// the GenAI attributes map as spans do.
pub async fn post_otlp_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    post_otlp(state, headers, body, crate::otlp::Signal::Logs).await
}

async fn post_otlp(
    state: AppState,
    headers: HeaderMap,
    body: Body,
    signal: crate::otlp::Signal,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let token = authorize(&state, &headers, &[Role::Ingest])?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable(ErrorCode::ShuttingDown, "the server is shutting down; retry"));
    }
    let json = match content_type(&headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Type `{other}` is not OTLP/HTTP; send application/x-protobuf or application/json"),
            ));
        }
    };
    let _slot = match ingest_slot(&state, &token.name) {
        Ok(slot) => slot,
        Err(limit) => return Err(shed(&state, body, limit).await),
    };
    let bytes = read_body(body, &headers, &state.limits).await?;
    let token_hash = token_hash(&token)?;
    let store = std::sync::Arc::clone(&state.store);
    let mapped = tokio::task::spawn_blocking(move || {
        let stored = |trace: &str, span: &str| stored_guardrail(&store, trace, span);
        let mapped = crate::otlp::map(signal, &bytes, json, token.pdp_id.as_deref(), &stored)?;
        let skipped = mapped.skipped;
        let t = actlog_core::opa::OpaToken { name: &token.name, sha256: token_hash, pdp_id: token.pdp_id.as_deref() };
        Ok::<_, Vec<_>>((crate::otlp::checked(mapped, &t), skipped))
    })
    .await
    .map_err(|e| ApiError::internal(format!("mapping task failed: {e}")))?;
    let (checked, skipped) = match mapped {
        Ok(m) => m,
        Err(refused) => {
            if let [(_, e)] = &refused[..]
                && (e.code == "malformed_json" || e.code == "malformed_protobuf")
            {
                let code =
                    if e.code == "malformed_json" { ErrorCode::MalformedJson } else { ErrorCode::MalformedProtobuf };
                state.metrics.refused(code.as_str());
                return Err(ApiError::new(code, e.message.clone()));
            }
            return Err(refused_items(
                &state,
                refused,
                "one or more spans were refused; nothing from this export was stored",
            ));
        }
    };
    state.metrics.otlp_skipped(skipped);
    within_batch_max(&state, checked.len(), |max| {
        format!(
            "the export holds {} GenAI spans, more than batch_envelopes_max = {max}; export smaller batches",
            checked.len()
        )
    })?;
    let body = append_receipts(&state, checked).await?;
    // OTLP/HTTP answers in the request's encoding: an empty
    // Export*ServiceResponse in protobuf; in JSON, the receipts (fields an
    // OTLP client ignores).
    Ok(if json {
        Json(body).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new()).into_response()
    })
}

/// The guardrail decision stored for the tool-call span `span` of trace
/// `trace` (an earlier export), if any: the one that started first.
fn stored_guardrail(store: &actlog_store::Store, trace: &str, span: &str) -> Option<String> {
    let ids = store.event_ids_with_prefix(&format!("otel:{trace}:"), 4096).ok()?;
    let seqs: Vec<u64> = ids.iter().map(|(_, s)| *s).collect();
    let events = store.events_at(&seqs).ok()?;
    events
        .iter()
        .filter_map(|ev| {
            let record: serde_json::Value = serde_json::from_slice(&ev.envelope).ok()?;
            let payload = b64::decode(record["payload"].as_str()?)?;
            let p: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            (p["event_type"] == "authz.decision" && p["ext"]["otel"]["parent_span_id"] == span)
                .then(|| (p["event_time"].as_str().unwrap_or("").to_string(), ev.leaf.event_id.clone()))
        })
        .min()
        .map(|(_, id)| id)
}

/// A source's mapping: one raw item to its decisions (`None`: skipped).
type MapFn = fn(
    &[u8],
    &actlog_core::opa::OpaToken<'_>,
    usize,
    &str,
) -> Result<Option<Vec<Checked>>, actlog_core::ingest::ItemError>;

/// Shared by the token-authenticated sources that fan out: split the body,
/// map every item on the rayon pool, all or nothing, then append and answer
/// with receipts.
async fn post_mapped(
    state: AppState,
    headers: HeaderMap,
    body: Body,
    what: &'static str,
    map: MapFn,
) -> Result<Json<ReceiptsBody>, ApiError> {
    let token = authorize(&state, &headers, &[Role::Ingest])?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable(ErrorCode::ShuttingDown, "the server is shutting down; retry"));
    }
    let shape = media_shape(&headers)?;
    let _slot = match ingest_slot(&state, &token.name) {
        Ok(slot) => slot,
        Err(limit) => return Err(shed(&state, body, limit).await),
    };
    let bytes = read_body(body, &headers, &state.limits).await?;
    let limits = std::sync::Arc::clone(&state.limits);
    let raws = scan(bytes.len(), move || {
        // One JSON object is one item.
        let (shape, one) = match shape {
            Shape::Array if bytes.trim_ascii_start().starts_with(b"{") => (Shape::Ndjson, true),
            s => (s, false),
        };
        let items = body::split(&bytes, shape, &split_limits(&limits, false), what).map_err(ApiError::from)?;
        if one && items.len() != 1 {
            return Err(ApiError::new(
                ErrorCode::MalformedJson,
                format!("send one JSON object, or an array of {what}"),
            ));
        }
        Ok(items)
    })
    .await?;
    state.metrics.batch(raws.len());
    let token_hash = token_hash(&token)?;
    let limits = state.limits.clone();
    let received = actlog_core::time::format_rfc3339_utc(actlog_store::now_ns());
    let results = tokio::task::spawn_blocking(move || {
        let t = actlog_core::opa::OpaToken { name: &token.name, sha256: token_hash, pdp_id: token.pdp_id.as_deref() };
        raws.par_iter().map(|raw| map(raw, &t, limits.envelope_bytes_max, &received)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("mapping task failed: {e}")))?;
    let (checked, skipped) = mapped_batch(&state, results, what)?;
    state.metrics.cerbos_access_skipped(skipped);
    Ok(Json(append_receipts(&state, checked).await?))
}

/// All or nothing over a batch of mapped items (each refusal names its
/// index), then the decisions in order, under `batch_envelopes_max`, and
/// the number of items skipped.
fn mapped_batch(
    state: &AppState,
    results: Vec<Result<Option<Vec<Checked>>, actlog_core::ingest::ItemError>>,
    what: &str,
) -> Result<(Vec<Checked>, u64), ApiError> {
    let mut refused = Vec::new();
    let (mut checked, mut skipped) = (Vec::new(), 0u64);
    for (index, r) in results.into_iter().enumerate() {
        match r {
            Err(e) => refused.push((index, e)),
            Ok(None) => skipped += 1,
            Ok(Some(c)) => checked.extend(c),
        }
    }
    if !refused.is_empty() {
        return Err(refused_items(
            state,
            refused,
            format!("one or more {what} were refused; nothing from this batch was stored"),
        ));
    }
    within_batch_max(state, checked.len(), |max| {
        format!(
            "the {what} fan out to {} decisions, more than batch_envelopes_max = {max}; send fewer per request",
            checked.len()
        )
    })?;
    Ok((checked, skipped))
}

/// Bodies up to this size are split on the async worker; larger ones on the
/// blocking pool, so a few big uploads cannot stall the two workers. For a
/// small batch the hop to the pool cost more than the scan: it added about
/// 0.2 ms to the median latency of batches of 10 (docs/benchmarks.md).
const SCAN_INLINE_BYTES_MAX: usize = 64 * 1024;

/// Runs `f`, a scan over a body of `len` bytes, where it costs least.
async fn scan<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if len <= SCAN_INLINE_BYTES_MAX {
        return f();
    }
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("split task failed: {e}")))?
}

/// Splits an OPA chunk into its events' bytes, under the depth and batch limits.
fn split_opa(bytes: &[u8], limits: &Limits) -> Result<Vec<Vec<u8>>, ApiError> {
    body::split(bytes, Shape::Array, &split_limits(limits, true), "OPA decision events").map_err(ApiError::from)
}

fn map_opa(
    raw: &[u8],
    mapping: &actlog_core::opa::OpaMapping,
    token: &actlog_store::TokenRecord,
    token_hash: [u8; 32],
    limits: &Limits,
) -> Result<Checked, actlog_core::ingest::ItemError> {
    let t = actlog_core::opa::OpaToken { name: &token.name, sha256: token_hash, pdp_id: token.pdp_id.as_deref() };
    actlog_core::opa::check(raw, mapping, &t, limits.envelope_bytes_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed body prints the bytes the `serde_json::Value` body printed.
    #[test]
    fn receipts_print_as_the_json_tree_did() {
        let body = ReceiptsBody {
            checkpoint: Some("log\n2\nroot\n".into()),
            receipts: vec![
                ReceiptOut {
                    duplicate: false,
                    event_id: "e-1".into(),
                    inclusion: Some(Inclusion { hashes: vec!["aGFzaA==".into()], tree_size: 2 }),
                    leaf_hash: "bGVhZg==".into(),
                    seq: 0,
                },
                ReceiptOut {
                    duplicate: true,
                    event_id: "e\"2".into(),
                    inclusion: None,
                    leaf_hash: "eA==".into(),
                    seq: 1,
                },
            ],
            tree_size: 2,
        };
        let tree = serde_json::json!({
            "tree_size": 2,
            "checkpoint": "log\n2\nroot\n",
            "receipts": [
                {"event_id": "e-1", "seq": 0, "leaf_hash": "bGVhZg==", "duplicate": false,
                 "inclusion": {"tree_size": 2, "hashes": ["aGFzaA=="]}},
                {"event_id": "e\"2", "seq": 1, "leaf_hash": "eA==", "duplicate": true},
            ],
        });
        assert_eq!(serde_json::to_string(&body).unwrap(), tree.to_string());
        let back: ReceiptsBody = serde_json::from_str(&tree.to_string()).unwrap();
        assert_eq!(back.receipts[1].event_id, "e\"2");
    }
}
