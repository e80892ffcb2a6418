//! Reads, proofs, admin, health and metrics.

use std::sync::Arc;

use actlog_core::leaf::{LeafKind, sha256};
use actlog_core::{b64, time, wire};
use actlog_store::{AdminOp, StoredEvent};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use actlog_core::body::json_depth;

use crate::extract::{ApiPath, ApiQuery};
use crate::ingest::read_body;
use crate::{ApiError, AppState, ErrorCode, Role, authorize};

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&actlog_store::Store) -> Result<T, actlog_store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(ApiError::from)
}

fn event_json(ev: &StoredEvent) -> wire::Event {
    let raw = |bytes: &[u8]| -> serde_json::Value {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| RawValue::from_string(s.to_string()).ok())
            .map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
            .unwrap_or(serde_json::Value::Null)
    };
    let envelope = raw(&ev.envelope);
    let payload = match ev.leaf.kind {
        LeafKind::ProducerSigned | LeafKind::LedgerSigned => {
            actlog_core::dsse::Envelope::parse(&ev.envelope).map(|e| raw(&e.payload)).unwrap_or(serde_json::Value::Null)
        }
        LeafKind::TokenAuthenticated => {
            envelope["payload"].as_str().and_then(b64::decode).map(|p| raw(&p)).unwrap_or(serde_json::Value::Null)
        }
    };
    wire::Event {
        seq: ev.seq,
        event_id: ev.leaf.event_id.clone(),
        received_at: time::format_rfc3339_utc(ev.leaf.received_at_unix_nanos as i64),
        payload,
        envelope,
        leaf: b64::encode(&ev.leaf_bytes),
        leaf_hash: b64::encode(ev.leaf_hash),
        chain_hash: b64::encode(ev.chain_hash),
    }
}

pub async fn event_by_seq(
    State(state): State<AppState>,
    headers: HeaderMap,
    seq: Result<ApiPath<String>, ApiError>,
) -> Result<Json<wire::Event>, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let ApiPath(seq) = seq?;
    let seq: u64 =
        seq.parse().map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "seq must be a non-negative integer"))?;
    let ev = blocking(&state, move |s| s.event(seq)).await?;
    ev.map(|e| Json(event_json(&e))).ok_or_else(|| ApiError::not_found(format!("no event at seq {seq}")))
}

pub async fn event_by_id(
    State(state): State<AppState>,
    headers: HeaderMap,
    event_id: Result<ApiPath<String>, ApiError>,
) -> Result<Json<wire::Event>, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let ApiPath(event_id) = event_id?;
    let id = event_id.clone();
    let ev = blocking(&state, move |s| s.event_by_id(&id)).await?;
    ev.map(|e| Json(event_json(&e))).ok_or_else(|| ApiError::not_found(format!("no event with event_id `{event_id}`")))
}

pub async fn log(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::Log>, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let s = &state.store;
    let witnessing = state.witnessing.as_ref().map(|w| {
        let published = w.published();
        wire::Witnessing {
            witnessed_tree_size: published.as_ref().map(|(s, _)| *s),
            witnessed_checkpoint: published.map(|(_, n)| n),
            witnesses: json!(w.status()),
            witness_policy: Some(w.policy().to_text()),
        }
    });
    Ok(Json(wire::Log {
        origin: s.origin().to_string(),
        verifier_key: s.verifier_key().to_text(),
        tree_size: s.head().tree_size,
        checkpoint: s.latest_checkpoint().map(|(_, n)| n),
        witnessing,
    }))
}

pub async fn checkpoint(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !state.public_checkpoint {
        authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    }
    let (_, note) =
        state.store.latest_checkpoint().ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Deserialize)]
pub struct InclusionParams {
    seq: Option<String>,
    tree_size: Option<String>,
    format: Option<String>,
}

fn parse_u64(name: &str, v: Option<&String>) -> Result<Option<u64>, ApiError> {
    v.map(|s| {
        s.parse::<u64>()
            .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, format!("{name} must be a non-negative integer")))
    })
    .transpose()
}

pub async fn inclusion(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<ApiQuery<InclusionParams>, ApiError>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let ApiQuery(p) = p?;
    let seq = parse_u64("seq", p.seq.as_ref())?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, "seq is required"))?;
    match p.format.as_deref() {
        None | Some("json") => {}
        Some("tlog-proof") => return proof_file(&state, seq, parse_u64("tree_size", p.tree_size.as_ref())?).await,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("format=`{other}` is not supported; use json or tlog-proof"),
            ));
        }
    }
    let size = match parse_u64("tree_size", p.tree_size.as_ref())? {
        Some(s) => s,
        None => state.store.latest_checkpoint().map(|(s, _)| s).unwrap_or(state.store.head().tree_size),
    };
    let (leaf_hash, hashes) = blocking(&state, move |s| s.inclusion_proof(seq, size)).await?;
    Ok(Json(wire::InclusionProof {
        seq,
        tree_size: size,
        leaf_hash: b64::encode(leaf_hash),
        hashes: hashes.iter().map(b64::encode).collect(),
    })
    .into_response())
}

/// A C2SP tlog-proof file for `seq`: against the checkpoint of `tree_size`
/// when given (with its stored cosignatures), else against the latest
/// published checkpoint (the latest witnessed one under a witness policy).
async fn proof_file(state: &AppState, seq: u64, tree_size: Option<u64>) -> Result<Response, ApiError> {
    let published = match tree_size {
        Some(_) => None,
        None => Some(crate::tlog::published(state)?),
    };
    let text = blocking(state, move |s| {
        let (size, note) = match (published, tree_size) {
            (Some(p), _) => p,
            (None, Some(size)) => match s.cosigned_checkpoint(size)? {
                Some(note) => (size, note),
                None => {
                    return Err(actlog_store::Error::Refused {
                        code: "tree_size_out_of_range",
                        message: format!("no checkpoint of tree size {size} is stored; a proof file needs one"),
                    });
                }
            },
            (None, None) => unreachable!("one of the two is set"),
        };
        let (_, path) = s.inclusion_proof(seq, size)?;
        let leaf = s
            .event(seq)?
            .ok_or_else(|| actlog_store::Error::Refused {
                code: "seq_out_of_range",
                message: format!("no event {seq}"),
            })?
            .leaf_bytes;
        Ok(actlog_core::tlog_proof::TlogProof { leaf: Some(leaf), index: seq, path, checkpoint: note }.to_text())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Deserialize)]
pub struct ConsistencyParams {
    old: Option<String>,
    new: Option<String>,
}

pub async fn consistency(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<ApiQuery<ConsistencyParams>, ApiError>,
) -> Result<Json<wire::ConsistencyProof>, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let ApiQuery(p) = p?;
    let old = parse_u64("old", p.old.as_ref())?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, "old is required"))?;
    let new = parse_u64("new", p.new.as_ref())?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, "new is required"))?;
    let hashes = blocking(&state, move |s| s.consistency_proof(old, new)).await?;
    Ok(Json(wire::ConsistencyProof { old, new, hashes: hashes.iter().map(b64::encode).collect() }))
}

/// Reads a small admin JSON body under the same limits as ingest.
async fn admin_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes = read_body(body, headers, &state.limits).await?;
    if json_depth(&bytes) > state.limits.json_depth_max {
        return Err(ApiError::new(ErrorCode::JsonTooDeep, "the body nests too deep"));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::new(ErrorCode::MalformedJson, "the body must be a JSON object"));
    }
    Ok(v)
}

fn field<'a>(v: &'a serde_json::Value, name: &str, required: bool) -> Result<Option<&'a str>, ApiError> {
    match v.get(name) {
        None | Some(serde_json::Value::Null) if !required => Ok(None),
        None | Some(serde_json::Value::Null) => Err(ApiError {
            items: vec![crate::error::Item {
                index: 0,
                code: "missing_field",
                message: format!("`{name}` is required"),
                path: format!("/{name}"),
            }],
            ..ApiError::new(ErrorCode::InvalidRequest, format!("`{name}` is required"))
        }),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError {
            items: vec![crate::error::Item {
                index: 0,
                code: "invalid_type",
                message: format!("`{name}` must be a string"),
                path: format!("/{name}"),
            }],
            ..ApiError::new(ErrorCode::InvalidRequest, format!("`{name}` must be a string"))
        }),
    }
}

/// Parses a public key: base64 of 32 raw bytes, or a C2SP verifier key.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    if let Ok(vk) = actlog_core::note::VerifierKey::parse(text) {
        return Some(*vk.key.as_bytes());
    }
    b64::decode(text.trim())?.try_into().ok()
}

pub async fn add_key(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Admin])?;
    let v = admin_body(&state, &headers, body).await?;
    let name = field(&v, "name", true)?.unwrap_or_default().to_string();
    let pk_text = field(&v, "public_key", true)?.unwrap_or_default();
    let pdp_id = field(&v, "pdp_id", false)?.map(str::to_string).unwrap_or_else(|| name.clone());
    let public_key = parse_public_key(pk_text).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidPublicKey, "public_key must be base64 of 32 raw bytes or a C2SP verifier key")
    })?;
    let (n, p) = (name.clone(), pdp_id.clone());
    let seq = blocking(&state, move |s| s.admin(AdminOp::AddKey { name: n, pdp_id: p, public_key })).await?;
    let key_id = hex::encode(sha256(&public_key));
    Ok((StatusCode::CREATED, Json(wire::KeyAdded { name, pdp_id, key_id, added_seq: seq })).into_response())
}

pub async fn list_keys(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::Keys>, ApiError> {
    authorize(&state, &headers, &[Role::Admin])?;
    let mut keys: Vec<_> = state.store.registry().keys.into_values().collect();
    keys.sort_by_key(|k| k.added_seq);
    Ok(Json(wire::Keys { keys: keys.iter().map(wire::Key::from).collect() }))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<ApiPath<String>, ApiError>,
) -> Result<Json<wire::Revoked>, ApiError> {
    revoke(&state, &headers, name, |name| AdminOp::RevokeKey { name }).await
}

/// Runs a revocation of the key or token named in the path, as admin (the
/// token is checked before the path), and answers `{"name","revoked_seq"}`.
async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    name: Result<ApiPath<String>, ApiError>,
    op: fn(String) -> AdminOp,
) -> Result<Json<wire::Revoked>, ApiError> {
    authorize(state, headers, &[Role::Admin])?;
    let ApiPath(name) = name?;
    let op = op(name.clone());
    let seq = blocking(state, move |s| s.admin(op)).await?;
    Ok(Json(wire::Revoked { name, revoked_seq: seq }))
}

/// A fresh API token: `actlog_` and 43 URL-safe base64 characters (256 bits).
pub fn new_token() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    actlog_store::random::fill(&mut b).map_err(|e| ApiError::internal(format!("random source: {e}")))?;
    Ok(actlog_core::api_token(&b))
}

pub async fn create_token(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Admin])?;
    let v = admin_body(&state, &headers, body).await?;
    let role = field(&v, "role", true)?.unwrap_or_default().to_string();
    let pdp_id = field(&v, "pdp_id", false)?.map(str::to_string);
    let expires_at_ns = match field(&v, "expires_in", false)? {
        None => None,
        Some(d) => Some(expires_at(d).map_err(|m| ApiError {
            items: vec![crate::error::Item {
                index: 0,
                code: "invalid_duration",
                message: m.clone(),
                path: "/expires_in".into(),
            }],
            ..ApiError::new(ErrorCode::InvalidRequest, m)
        })?),
    };
    let token = new_token()?;
    let name = match field(&v, "name", false)? {
        Some(n) => n.to_string(),
        None => format!("{role}-{}", &hex::encode(sha256(token.as_bytes()))[..8]),
    };
    let (n, r, p, h) = (name.clone(), role.clone(), pdp_id.clone(), sha256(token.as_bytes()));
    let op = AdminOp::CreateToken { name: n, role: r, pdp_id: p, token_sha256: h, expires_at_ns };
    let seq = blocking(&state, move |s| s.admin(op)).await?;
    // The store refused any other name before the token was recorded.
    let role = Role::parse(&role).ok_or_else(|| ApiError::internal(format!("the store recorded role `{role}`")))?;
    let body = wire::TokenCreated {
        token,
        name,
        role,
        pdp_id,
        created_seq: seq,
        expires_at: expires_at_ns.map(actlog_core::time::format_rfc3339_utc),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The expiry time of a token created now with lifetime `duration`
/// (`90s`, `15m`, `2h`, `7d`), as unix nanoseconds.
pub fn expires_at(duration: &str) -> Result<i64, String> {
    let secs = actlog_core::time::parse_duration_secs(duration).map_err(|e| format!("expires_in: {e}"))?;
    Ok(actlog_store::now_ns().saturating_add(secs as i64 * 1_000_000_000))
}

pub async fn list_tokens(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::Tokens>, ApiError> {
    authorize(&state, &headers, &[Role::Admin])?;
    let mut tokens: Vec<_> = state.store.registry().tokens.into_values().collect();
    tokens.sort_by_key(|t| t.created_seq);
    Ok(Json(wire::Tokens { tokens: tokens.iter().map(wire::Token::from).collect() }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<ApiPath<String>, ApiError>,
) -> Result<Json<wire::Revoked>, ApiError> {
    revoke(&state, &headers, name, |name| AdminOp::RevokeToken { name }).await
}

pub async fn healthz() -> Json<wire::Health> {
    Json(wire::Health { status: "ok".into(), tree_size: None })
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let shedding = state.ingest_slots.available_permits() == 0;
    let down = state.shutting_down.load(std::sync::atomic::Ordering::SeqCst);
    let stopped = state.store.is_poisoned();
    if shedding || down || stopped {
        let why = if stopped {
            "store stopped after a failed write"
        } else if down {
            "shutting down"
        } else {
            "shedding load"
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(wire::Health { status: why.into(), tree_size: None }))
            .into_response();
    }
    Json(wire::Health { status: "ready".into(), tree_size: Some(state.store.head().tree_size) }).into_response()
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Auditor])?;
    let in_flight = state.limits.ingest_requests_max - state.ingest_slots.available_permits();
    let memory = state.store.memory_stats();
    let text = state.metrics.render(
        state.store.head().tree_size,
        state.store.checkpoint_age().map(|d| d.as_secs_f64()),
        in_flight,
        &memory,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see docs/operating.md for the API")
}
