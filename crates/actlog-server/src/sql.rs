//! `POST /v1/sql` and `GET /v1/chains/{event_id}`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::ingest::{json_depth, read_body};
use crate::{ApiError, AppState, Role, authorize};

/// Longest SQL text accepted, in bytes.
pub const SQL_BYTES_MAX: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Off forces scans instead of index lookups (same answers, slower).
    #[serde(default)]
    use_index: Option<bool>,
}

fn query_error(e: actlog_query::QueryError) -> ApiError {
    let status = match e.code {
        "sql_time_limit" | "sql_memory_limit" => StatusCode::UNPROCESSABLE_ENTITY,
        "sql_refused" | "sql_invalid" => StatusCode::BAD_REQUEST,
        "storage_corruption" => return ApiError::internal(format!("storage corruption: {}", e.message)),
        _ => return ApiError::internal(e.message),
    };
    ApiError::new(status, e.code, e.message)
}

pub async fn post_sql(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Query])?;
    let bytes = read_body(body, &headers, &state.limits).await?;
    if bytes.len() > SQL_BYTES_MAX {
        return Err(ApiError::too_large(
            "sql_too_large",
            format!("the body exceeds sql_bytes_max ({SQL_BYTES_MAX} bytes)"),
        ));
    }
    if json_depth(&bytes) > state.limits.json_depth_max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "json_too_deep",
            format!("the body nests deeper than json_depth_max ({})", state.limits.json_depth_max),
        ));
    }
    let req: SqlRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("the body must be {{\"sql\": \"...\"}} (optionally \"use_index\"): {e}"),
        )
    })?;
    // Each query may hold up to sql_memory_bytes: bound how many run at once.
    let _slot = state.sql_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::overloaded(format!(
            "sql_requests_max ({}) queries are running; retry shortly",
            state.limits.sql_requests_max
        ))
    })?;
    let opts = actlog_query::QueryOptions { use_index: req.use_index.unwrap_or(true), ..Default::default() };
    let out = state.engine.query(&req.sql, &opts).await.map_err(query_error)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let truncated = if out.truncated { "true" } else { "false" };
    let resp = if accept.contains("application/vnd.apache.arrow.stream") {
        let bytes = actlog_query::output::to_arrow_ipc(&out).map_err(ApiError::internal)?;
        ([(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")], bytes).into_response()
    } else if accept.contains("text/csv") {
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], actlog_query::output::to_csv(&out)).into_response()
    } else {
        Json(actlog_query::output::to_json(&out)).into_response()
    };
    let mut resp = resp;
    resp.headers_mut().insert("x-actlog-truncated", header::HeaderValue::from_static(truncated));
    if let Ok(v) = header::HeaderValue::from_str(&out.tree_size.to_string()) {
        resp.headers_mut().insert("x-actlog-tree-size", v);
    }
    Ok(resp)
}

pub async fn chain(
    State(state): State<AppState>,
    headers: HeaderMap,
    event_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers, &[Role::Query])?;
    let Path(event_id) = event_id.map_err(|_| ApiError::bad_request("invalid_parameter", "the path is not valid"))?;
    let store = state.store.clone();
    let id = event_id.clone();
    let c = tokio::task::spawn_blocking(move || actlog_query::chain::reconstruct(&store, &id))
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    c.map(Json).ok_or_else(|| ApiError::not_found(format!("no event with event_id `{event_id}`")))
}
