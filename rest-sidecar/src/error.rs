use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ApiError, ErrorCode};
use service::ServiceError;
use storage::StoreError;

/// A failed request: becomes seed 002's error envelope with the HTTP
/// status its code maps to. The one place codes become statuses.
#[derive(Debug)]
pub struct ApiFailure {
    pub error: ApiError,
    /// Seconds, sent as `Retry-After` (429s).
    pub retry_after: Option<u64>,
}

impl ApiFailure {
    /// A failure with `code` and a request-specific detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { error: ApiError::new(code, detail), retry_after: None }
    }

    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    /// 429 (business code 40001) with `Retry-After`.
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self { retry_after: Some(retry_after_secs.max(1)), ..Self::new(ErrorCode::TooManyRequests, detail) }
    }

    /// The business code.
    pub fn code(&self) -> ErrorCode {
        self.error.code
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.error)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The one mapping of the service layer's error to seed 002's envelope:
/// its code (the same one the gateway's `error` event carries) and the
/// status that code maps to.
impl From<ServiceError> for ApiFailure {
    fn from(error: ServiceError) -> Self {
        Self::new(error.code(), error.detail())
    }
}

/// What handlers that reach the store themselves (auth, files) meet: the
/// service layer's reading of it.
impl From<StoreError> for ApiFailure {
    fn from(error: StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<JsonRejection> for ApiFailure {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(ErrorCode::PayloadTooLarge, "request body is too large");
        }
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiFailure {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiFailure {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}
