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

/// Declares [`ErrorCode`], its names and [`ErrorCode::ALL`] from one list,
/// so a code cannot be missing from any of them.
macro_rules! error_codes {
    ($($variant:ident = $name:literal,)*) => {
        /// Every error code the HTTP API answers with (the `code` of the
        /// error body). Each has one status, in one exhaustive match
        /// ([`ErrorCode::status`]): a new code does not compile until it is
        /// given one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = concat!("`", $name, "`")] $variant,)*
        }

        impl ErrorCode {
            /// Every code, for lookups by name and for tests.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as the body spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson = "malformed_json",
    MalformedGzip = "malformed_gzip",
    MalformedProtobuf = "malformed_protobuf",
    EmptyBody = "empty_body",
    EmptyBatch = "empty_batch",
    InvalidParameter = "invalid_parameter",
    SqlRefused = "sql_refused",
    SqlInvalid = "sql_invalid",
    Unauthenticated = "unauthenticated",
    Forbidden = "forbidden",
    NotFound = "not_found",
    KeyNotFound = "key_not_found",
    TokenNotFound = "token_not_found",
    TreeSizeOutOfRange = "tree_size_out_of_range",
    SeqOutOfRange = "seq_out_of_range",
    MethodNotAllowed = "method_not_allowed",
    BodyTimeout = "body_timeout",
    Conflict = "conflict",
    KeyExists = "key_exists",
    TokenExists = "token_exists",
    KeyRevoked = "key_revoked",
    TokenRevoked = "token_revoked",
    BodyTooLarge = "body_too_large",
    DecompressedTooLarge = "decompressed_too_large",
    BatchTooLarge = "batch_too_large",
    SqlTooLarge = "sql_too_large",
    UnsupportedEncoding = "unsupported_encoding",
    UnsupportedMediaType = "unsupported_media_type",
    InvalidRequest = "invalid_request",
    InvalidBatch = "invalid_batch",
    InvalidPublicKey = "invalid_public_key",
    InvalidName = "invalid_name",
    InvalidPdpId = "invalid_pdp_id",
    InvalidRole = "invalid_role",
    BadOrigin = "bad_origin",
    CheckpointNotFound = "checkpoint_not_found",
    TileOutOfRange = "tile_out_of_range",
    JsonTooDeep = "json_too_deep",
    SqlTooDeep = "sql_too_deep",
    SqlTooComplex = "sql_too_complex",
    SqlTimeLimit = "sql_time_limit",
    SqlMemoryLimit = "sql_memory_limit",
    SqlResultTooLarge = "sql_result_too_large",
    Overloaded = "overloaded",
    TooManyAuthFailures = "too_many_auth_failures",
    Internal = "internal",
    ReadOnly = "read_only",
    ShuttingDown = "shutting_down",
    StoreUnavailable = "store_unavailable",
    Timeout = "timeout",
    CheckpointTimeout = "checkpoint_timeout",
    WitnessQuorumTimeout = "witness_quorum_timeout",
    StorageFull = "storage_full",
}

impl ErrorCode {
    /// The HTTP status of a refusal with this code.
    pub fn status(self) -> StatusCode {
        use ErrorCode as C;
        match self {
            C::MalformedJson
            | C::MalformedGzip
            | C::MalformedProtobuf
            | C::EmptyBody
            | C::EmptyBatch
            | C::InvalidParameter
            | C::SqlRefused
            | C::SqlInvalid => StatusCode::BAD_REQUEST,
            C::Unauthenticated => StatusCode::UNAUTHORIZED,
            C::Forbidden => StatusCode::FORBIDDEN,
            C::NotFound | C::KeyNotFound | C::TokenNotFound | C::TreeSizeOutOfRange | C::SeqOutOfRange => {
                StatusCode::NOT_FOUND
            }
            C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            C::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            C::Conflict | C::KeyExists | C::TokenExists | C::KeyRevoked | C::TokenRevoked => StatusCode::CONFLICT,
            C::BodyTooLarge | C::DecompressedTooLarge | C::BatchTooLarge | C::SqlTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            C::UnsupportedEncoding | C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            C::InvalidRequest
            | C::InvalidBatch
            | C::InvalidPublicKey
            | C::InvalidName
            | C::InvalidPdpId
            | C::InvalidRole
            | C::BadOrigin
            | C::CheckpointNotFound
            | C::TileOutOfRange
            | C::JsonTooDeep
            | C::SqlTooDeep
            | C::SqlTooComplex
            | C::SqlTimeLimit
            | C::SqlMemoryLimit
            | C::SqlResultTooLarge => StatusCode::UNPROCESSABLE_ENTITY,
            C::Overloaded | C::TooManyAuthFailures => StatusCode::TOO_MANY_REQUESTS,
            C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            C::ReadOnly
            | C::ShuttingDown
            | C::StoreUnavailable
            | C::Timeout
            | C::CheckpointTimeout
            | C::WitnessQuorumTimeout => StatusCode::SERVICE_UNAVAILABLE,
            C::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The code of this name: how codes made below the HTTP edge (the
    /// store's refusals, body and SQL checks) are typed.
    pub fn of(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub code: ErrorCode,
    pub message: String,
    pub items: Vec<Item>,
    pub retry_after_s: Option<u32>,
    /// Logged, never sent.
    pub internal: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), items: Vec::new(), retry_after_s: None, internal: None }
    }
    /// A refusal whose code was made below the HTTP edge, by name. A name
    /// with no [`ErrorCode`] is a bug: a 500 whose detail names it.
    pub fn named(code: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        match ErrorCode::of(code) {
            Some(c) => ApiError::new(c, message),
            None => ApiError::internal(format!("no HTTP status for the error code `{code}`: {message}")),
        }
    }
    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(ErrorCode::Overloaded, message) }
    }
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(code, message) }
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            internal: Some(detail.into()),
            ..ApiError::new(ErrorCode::Internal, "internal error; the server log has the details under this request id")
        }
    }
}

impl From<actlog_store::Error> for ApiError {
    fn from(e: actlog_store::Error) -> Self {
        use actlog_store::Error as E;
        match e {
            E::Refused { code, message } => ApiError::named(code, message),
            E::Busy => ApiError::overloaded("the commit queue is full; retry after the Retry-After delay"),
            E::Poisoned => ApiError {
                internal: Some(e.to_string()),
                ..ApiError::unavailable(
                    ErrorCode::StoreUnavailable,
                    "the store stopped after a failed write and nothing from this request was stored; \
                     actlog exits so that its supervisor restarts it; retry against the restarted server",
                )
            },
            E::ReadOnly => ApiError::unavailable(ErrorCode::ReadOnly, "this server is read-only"),
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
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message, "items": items}});
        let mut resp = (self.code.status(), Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(detail) = self.internal {
            // Picked up and logged by the request-id middleware.
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp.extensions_mut().insert(self.code);
        resp
    }
}

/// The detail of a 5xx, for the log only.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

impl From<actlog_core::body::BodyError> for ApiError {
    fn from(e: actlog_core::body::BodyError) -> ApiError {
        debug_assert_eq!(ErrorCode::of(e.code).map(|c| c.status().as_u16()), Some(e.status), "{}", e.code);
        ApiError::named(e.code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_name_and_round_trips() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::of(c.as_str()), Some(*c));
        }
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "no two codes share a name");
        assert_eq!(ErrorCode::of("no_such_code"), None);
    }

    /// The codes made below the HTTP edge (the store's refusals, body and
    /// SQL checks) keep the statuses they were answered with before the
    /// codes were typed.
    #[test]
    fn codes_from_below_keep_their_statuses() {
        let want: &[(&str, u16)] = &[
            ("key_not_found", 404),
            ("token_not_found", 404),
            ("tree_size_out_of_range", 404),
            ("seq_out_of_range", 404),
            ("key_exists", 409),
            ("token_exists", 409),
            ("key_revoked", 409),
            ("token_revoked", 409),
            ("invalid_name", 422),
            ("invalid_pdp_id", 422),
            ("invalid_public_key", 422),
            ("invalid_role", 422),
            ("bad_origin", 422),
            ("checkpoint_not_found", 422),
            ("tile_out_of_range", 422),
            ("malformed_gzip", 400),
            ("empty_body", 400),
            ("malformed_json", 400),
            ("empty_batch", 400),
            ("json_too_deep", 422),
            ("decompressed_too_large", 413),
            ("batch_too_large", 413),
            ("sql_time_limit", 422),
            ("sql_memory_limit", 422),
            ("sql_too_deep", 422),
            ("sql_too_complex", 422),
            ("sql_result_too_large", 422),
            ("sql_too_large", 413),
            ("sql_refused", 400),
            ("sql_invalid", 400),
        ];
        for (name, status) in want {
            let e = ApiError::named(name, "m");
            assert_eq!((e.code.as_str(), e.status().as_u16()), (*name, *status), "{name}");
        }
        let unknown = ApiError::named("made_up", "m");
        assert_eq!(unknown.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(unknown.internal.unwrap().contains("made_up"), "the log names the unmapped code");
    }
}
