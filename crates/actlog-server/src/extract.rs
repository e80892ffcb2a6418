//! Extractors whose rejection is the contract's error body: a path or a
//! query string that does not parse is `400 invalid_parameter` with the
//! usual `{"error": ...}`, never axum's plain-text rejection.
//!
//! Handlers take them as `Result<ApiPath<T>, ApiError>` and apply `?` after
//! `authorize`, so a request without a valid token is told so first,
//! whatever its path.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode};

/// `axum::extract::Path` with the contract's rejection.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(_) => Err(ApiError::new(ErrorCode::InvalidParameter, "the path is not valid")),
        }
    }
}

/// `axum::extract::Query` with the contract's rejection.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(ApiQuery(t)),
            Err(_) => Err(ApiError::new(ErrorCode::InvalidParameter, "the query string is not valid")),
        }
    }
}
