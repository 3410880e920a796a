use serde::{Deserialize, Serialize};

use crate::{ErrorCode, time};

/// Seed 002's success envelope: `{code: 200, message, data, timestamp}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiResponse<T> {
    /// Always 200 for a success.
    pub code: u32,
    /// Human-readable summary.
    pub message: String,
    /// The payload.
    pub data: T,
    /// When the response was made, ISO 8601 UTC.
    pub timestamp: String,
}

impl<T> ApiResponse<T> {
    /// Wraps `data` in a success envelope stamped with the current time.
    pub fn ok(message: impl Into<String>, data: T) -> Self {
        Self { code: 200, message: message.into(), data, timestamp: time::to_iso(time::now_millis()) }
    }
}

/// Seed 002's error envelope: `{code, message, error, timestamp}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// The business code (seed 002) or HTTP-like code for generic failures.
    pub code: ErrorCode,
    /// The code's short description.
    pub message: String,
    /// What exactly went wrong with this request.
    pub error: String,
    /// When the response was made, ISO 8601 UTC.
    pub timestamp: String,
}

impl ApiError {
    /// An error envelope for `code` with a request-specific detail.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            code,
            message: code.message().to_owned(),
            error: error.into(),
            timestamp: time::to_iso(time::now_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, ApiResponse};
    use crate::ErrorCode;

    #[test]
    fn envelopes_have_seed_shape() {
        let ok = serde_json::to_value(ApiResponse::ok("success", serde_json::json!({}))).unwrap();
        assert_eq!(ok["code"], 200);
        assert_eq!(ok["message"], "success");
        assert!(ok["timestamp"].as_str().unwrap().ends_with('Z'));

        let err = serde_json::to_value(ApiError::new(ErrorCode::TooManyRequests, "slow down")).unwrap();
        assert_eq!(err["code"], 40001);
        assert_eq!(err["error"], "slow down");
        assert_eq!(err["message"], "too many requests");
    }
}
