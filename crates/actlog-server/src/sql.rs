//! `POST /v1/sql` and `GET /v1/chains/{event_id}`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use actlog_core::body::json_depth;

use crate::ingest::read_body;
use crate::{ApiError, AppState, ErrorCode, Role, authorize};

/// Largest `POST /v1/sql` body, as sent and after gzip: the SQL text limit
/// plus room for JSON escapes. Read no further than this.
fn sql_body_bytes_max(state: &AppState) -> usize {
    state.engine.limits().text_bytes_max.saturating_mul(2).saturating_add(4096)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Off forces scans instead of index lookups (same answers, slower).
    #[serde(default)]
    use_index: Option<bool>,
}

pub(crate) fn query_error(e: actlog_query::QueryError) -> ApiError {
    match e.code {
        "sql_busy" => ApiError::overloaded(e.message),
        "storage_corruption" => ApiError::internal(format!("storage corruption: {}", e.message)),
        "internal" => ApiError::internal(e.message),
        code => ApiError::named(code, e.message),
    }
}

pub async fn post_sql(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let max = sql_body_bytes_max(&state);
    let limits = crate::Limits { body_bytes_max: max, decompressed_bytes_max: max, ..(*state.limits).clone() };
    let bytes = read_body(body, &headers, &limits).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::SqlTooLarge,
                format!(
                    "the body exceeds {max} bytes: the query text may be at most sql_text_bytes_max = {} bytes",
                    state.engine.limits().text_bytes_max
                ),
            )
        } else {
            e
        }
    })?;
    if json_depth(&bytes) > state.limits.json_depth_max {
        return Err(ApiError::new(
            ErrorCode::JsonTooDeep,
            format!("the body nests deeper than json_depth_max ({})", state.limits.json_depth_max),
        ));
    }
    let req: SqlRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body must be {{\"sql\": \"...\"}} (optionally \"use_index\"): {e}"),
        )
    })?;
    drop(bytes);
    let opts = actlog_query::QueryOptions { use_index: req.use_index.unwrap_or(true), ..Default::default() };
    let out = state.engine.query(&req.sql, &opts).await.map_err(query_error)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let truncated = if out.truncated { "true" } else { "false" };
    let tree_size = out.tree_size;
    // The body is encoded one batch at a time as it is sent: the result is
    // held once, as Arrow, within sql_result_bytes_max.
    let (content_type, body) = if accept.contains("application/vnd.apache.arrow.stream") {
        let bytes = actlog_query::output::to_arrow_ipc(&out).map_err(ApiError::internal)?;
        ("application/vnd.apache.arrow.stream", Body::from(bytes))
    } else if accept.contains("text/csv") {
        ("text/csv; charset=utf-8", chunked(out, |o| Box::new(actlog_query::output::csv_chunks(o))))
    } else {
        ("application/json", chunked(out, |o| Box::new(actlog_query::output::json_chunks(o))))
    };
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    resp.headers_mut().insert("x-actlog-truncated", header::HeaderValue::from_static(truncated));
    if let Ok(v) = header::HeaderValue::from_str(&tree_size.to_string()) {
        resp.headers_mut().insert("x-actlog-tree-size", v);
    }
    Ok(resp)
}

type Chunks<'a> = Box<dyn Iterator<Item = Vec<u8>> + Send + 'a>;

/// A body that encodes `out` chunk by chunk as the client reads it.
fn chunked(out: actlog_query::QueryOutput, encode: for<'a> fn(&'a actlog_query::QueryOutput) -> Chunks<'a>) -> Body {
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    // Encoding runs off the async workers; the channel of one holds at most
    // one encoded batch besides the one being sent.
    tokio::task::spawn_blocking(move || {
        let mut tx = tx;
        for chunk in encode(&out) {
            if futures::executor::block_on(futures::SinkExt::send(&mut tx, Ok(bytes::Bytes::from(chunk)))).is_err() {
                return; // the client went away
            }
        }
    });
    Body::from_stream(rx)
}

pub async fn chain(
    State(state): State<AppState>,
    headers: HeaderMap,
    event_id: Result<crate::extract::ApiPath<String>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers, &[Role::Query, Role::Auditor])?;
    let crate::extract::ApiPath(event_id) = event_id?;
    let store = state.store.clone();
    let id = event_id.clone();
    let c = tokio::task::spawn_blocking(move || actlog_query::chain::reconstruct(&store, &id))
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    c.map(Json).ok_or_else(|| ApiError::not_found(format!("no event with event_id `{event_id}`")))
}
