//! The one error type at the HTTP edge.
//!
//! Every refusal becomes `{"error":{"code","message","items"}}` with a stable
//! snake_case code. Internal details (storage messages, paths) never reach the
//! client: a 5xx body says "internal error" and the detail goes to the server
//! log with the request id that the response also carries.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One refused envelope of a batch.
#[derive(Debug, Clone)]
pub struct Item {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
    pub path: String,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub items: Vec<Item>,
    pub retry_after_s: Option<u32>,
    /// Logged, never sent.
    pub internal: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), items: Vec::new(), retry_after_s: None, internal: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message) }
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            internal: Some(detail.into()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the server log has the details under this request id",
            )
        }
    }
}

impl From<actlog_store::Error> for ApiError {
    fn from(e: actlog_store::Error) -> Self {
        use actlog_store::Error as E;
        match e {
            E::Refused { code, message } => {
                let status = match code {
                    "key_not_found" | "token_not_found" => StatusCode::NOT_FOUND,
                    "key_exists" | "token_exists" | "key_revoked" | "token_revoked" => StatusCode::CONFLICT,
                    "tree_size_out_of_range" | "seq_out_of_range" => StatusCode::NOT_FOUND,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, code, message)
            }
            E::Busy => ApiError::overloaded("the commit queue is full; retry after the Retry-After delay"),
            E::Poisoned => ApiError {
                internal: Some(e.to_string()),
                ..ApiError::unavailable(
                    "store_unavailable",
                    "the store stopped after a failed write and nothing from this request was stored; \
                     actlog exits so that its supervisor restarts it; retry against the restarted server",
                )
            },
            E::ReadOnly => ApiError::unavailable("read_only", "this server is read-only"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let items: Vec<_> = self
            .items
            .iter()
            .map(|i| json!({"index": i.index, "code": i.code, "message": i.message, "path": i.path}))
            .collect();
        // `items` is always there (contract §4), empty when no item is at fault.
        let body = json!({"error": {"code": self.code, "message": self.message, "items": items}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(detail) = self.internal {
            // Picked up and logged by the request-id middleware.
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// The detail of a 5xx, for the log only.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

/// The error code of a refused request, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl From<actlog_core::body::BodyError> for ApiError {
    fn from(e: actlog_core::body::BodyError) -> ApiError {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.code, e.message)
    }
}
