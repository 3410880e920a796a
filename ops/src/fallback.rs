use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use protocol::{ApiError, ErrorCode};

/// A path no route serves: 404 in seed 002's error envelope.
pub async fn not_found(uri: Uri) -> Response {
    let error = ApiError::new(ErrorCode::NotFound, format!("no route for {}", uri.path()));
    (StatusCode::NOT_FOUND, Json(error)).into_response()
}

/// A route that exists, called with a method it does not take: 405 in
/// seed 002's error envelope.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let error = ApiError::new(ErrorCode::BadRequest, format!("{method} is not allowed on {}", uri.path()));
    (StatusCode::METHOD_NOT_ALLOWED, Json(error)).into_response()
}
