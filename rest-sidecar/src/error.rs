use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::{ApiError, ErrorCode};
use storage::StoreError;

/// A failed request: becomes seed 002's error envelope with the HTTP
/// status its code maps to. The one place codes become statuses.
#[derive(Debug)]
pub struct ApiFailure(pub ApiError);

impl ApiFailure {
    /// A failure with `code` and a request-specific detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self(ApiError::new(code, detail))
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}

impl From<StoreError> for ApiFailure {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::PhoneTaken => ErrorCode::PhoneExists,
            StoreError::UsernameTaken => ErrorCode::UsernameExists,
            StoreError::UserNotFound(_) => ErrorCode::UserNotFound,
            StoreError::ChatNotFound(_) => ErrorCode::ChatNotFound,
            StoreError::MessageNotFound(_) => ErrorCode::MessageNotFound,
            StoreError::NotMember { .. } => ErrorCode::NotChatMember,
            StoreError::ContactExists | StoreError::Invalid(_) | StoreError::SeqTaken { .. } => ErrorCode::BadRequest,
            StoreError::Closed => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal {
            // The detail stays in the log; the client learns only that it failed.
            tracing::error!(%error, "store failure");
            return Self::new(code, "internal error");
        }
        Self::new(code, error.to_string())
    }
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiFailure {
    ApiFailure::new(ErrorCode::NotFound, format!("no route for {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let mut response =
        ApiFailure::new(ErrorCode::BadRequest, format!("{method} is not allowed on {}", uri.path())).into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
