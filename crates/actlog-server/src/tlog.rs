//! The tlog-tiles read API (contract §11): `/tlog/checkpoint`, hash tiles,
//! Go's `tile/8/…` alias and entry bundles, so monitors, mirrors and caches
//! read the tree with stock tools.
//!
//! Tiles are served for the tree of the latest published checkpoint: a
//! client only asks for what a verified checkpoint implies, and nothing
//! past a checkpoint is shown before the ledger has signed it. Every tile's
//! bytes depend only on its path, so full and partial tiles alike are
//! immutable and cacheable for a year.

use std::io::Write;

use actlog_core::tiles::{self, TileKind};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState, Role, authorize};

/// `Cache-Control` of tiles and bundles: their bytes never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the checkpoint: a few seconds at most (tlog-tiles).
const CHECKPOINT_CACHE: &str = "public, max-age=2";

fn check_access(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.public_tlog {
        authorize(state, headers, &[Role::Auditor])?;
    }
    Ok(())
}

/// The latest published checkpoint: (tree size, note). With a witness
/// policy, the latest one whose cosignatures meet the quorum, with them;
/// without one, the latest signed checkpoint.
pub(crate) fn published(state: &AppState) -> Result<(u64, String), ApiError> {
    match &state.witnessing {
        Some(w) => w.published().ok_or_else(|| {
            ApiError::not_found("no checkpoint meets the witness policy's quorum yet; see /v1/log for each witness")
        }),
        None => state.store.latest_checkpoint().ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet")),
    }
}

/// `GET /tlog/checkpoint`: the latest published checkpoint.
pub async fn checkpoint(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_access(&state, &headers)?;
    let (_, note) = published(&state)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, CHECKPOINT_CACHE)], note)
        .into_response())
}

/// `GET /tlog/tile/{*path}`: a hash tile (`<L>/<N>[.p/<W>]`, or Go's
/// `8/<L>/<N>[.p/<W>]`) or an entry bundle (`entries/<N>[.p/<W>]`).
pub async fn tile(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<crate::extract::ApiPath<String>, ApiError>,
) -> Result<Response, ApiError> {
    check_access(&state, &headers)?;
    let crate::extract::ApiPath(path) = path?;
    let tile = tiles::parse_tile_path(&path).map_err(|e| ApiError::not_found(e.to_string()))?;
    let size = state.store.latest_checkpoint().map(|(s, _)| s).unwrap_or(0);
    let store = std::sync::Arc::clone(&state.store);
    let bytes = tokio::task::spawn_blocking(move || store.tile(&tile, size))
        .await
        .map_err(|e| ApiError::internal(format!("tile task failed: {e}")))?
        .map_err(|e| match e {
            actlog_store::Error::Refused { code: "tile_out_of_range", message } => ApiError::not_found(format!(
                "{message}, the latest published checkpoint; ask only for tiles a verified checkpoint implies"
            )),
            e => ApiError::from(e),
        })?;
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    // Bundles are compressed when the client takes gzip (tlog-tiles says
    // they SHOULD be); hashes do not compress.
    let body = if tile.kind == TileKind::Entries && accepts_gzip(&headers) {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        gzip(&bytes)?
    } else {
        bytes
    };
    *resp.body_mut() = Body::from(body);
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let refused =
                it.any(|p| matches!(p.trim().replace(' ', "").as_str(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 2), flate2::Compression::fast());
    enc.write_all(bytes).and_then(|_| enc.finish()).map_err(|e| ApiError::internal(format!("gzip failed: {e}")))
}
