use serde::{Deserialize, Serialize};

/// Seed 002's business error codes, plus the generic HTTP-like codes the
/// envelope uses for malformed requests.
///
/// One table maps each code to its HTTP status and default message, so the
/// REST sidecar and the gateway (`error` events) can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "u32")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the request could not be parsed or failed validation.
    BadRequest,
    /// 401: no credentials were presented.
    Unauthorized,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 404: no such route or resource outside the business codes.
    NotFound,
    /// 409: the resource already exists (outside the business codes).
    Conflict,
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 408: the request took longer than the server allows.
    RequestTimeout,
    /// 10001
    UserNotFound,
    /// 10002
    WrongPassword,
    /// 10003
    WrongCode,
    /// 10004
    UserDisabled,
    /// 10005
    PhoneExists,
    /// 10006
    UsernameExists,
    /// 10007
    TokenExpired,
    /// 10008
    TokenInvalid,
    /// 20001
    ChatNotFound,
    /// 20002
    NotChatMember,
    /// 20003
    MessageNotFound,
    /// 20004
    MessageForbidden,
    /// 20005: the recipient has blocked the sender (an engine addition in
    /// seed 002's chat range).
    BlockedByRecipient,
    /// 30001
    FileNotFound,
    /// 30002
    FileTypeUnsupported,
    /// 30003
    FileTooLarge,
    /// 40001
    TooManyRequests,
    /// 50001
    Internal,
    /// 503: a dependency (store, Redis) is unavailable right now.
    Unavailable,
}

impl ErrorCode {
    const TABLE: &'static [(ErrorCode, u32, u16, &'static str)] = &[
        (ErrorCode::BadRequest, 400, 400, "bad request"),
        (ErrorCode::Unauthorized, 401, 401, "unauthorized"),
        (ErrorCode::Forbidden, 403, 403, "forbidden"),
        (ErrorCode::NotFound, 404, 404, "not found"),
        (ErrorCode::Conflict, 409, 409, "conflict"),
        (ErrorCode::PayloadTooLarge, 413, 413, "payload too large"),
        (ErrorCode::RequestTimeout, 408, 408, "request timeout"),
        (ErrorCode::UserNotFound, 10001, 404, "user not found"),
        (ErrorCode::WrongPassword, 10002, 401, "wrong password"),
        (ErrorCode::WrongCode, 10003, 401, "wrong verification code"),
        (ErrorCode::UserDisabled, 10004, 403, "user is disabled"),
        (ErrorCode::PhoneExists, 10005, 409, "phone number already registered"),
        (ErrorCode::UsernameExists, 10006, 409, "username already taken"),
        (ErrorCode::TokenExpired, 10007, 401, "token expired"),
        (ErrorCode::TokenInvalid, 10008, 401, "token invalid"),
        (ErrorCode::ChatNotFound, 20001, 404, "chat not found"),
        (ErrorCode::NotChatMember, 20002, 403, "not a member of this chat"),
        (ErrorCode::MessageNotFound, 20003, 404, "message not found"),
        (ErrorCode::MessageForbidden, 20004, 403, "not allowed on this message"),
        (ErrorCode::BlockedByRecipient, 20005, 403, "the recipient does not accept your messages"),
        (ErrorCode::FileNotFound, 30001, 404, "file not found"),
        (ErrorCode::FileTypeUnsupported, 30002, 400, "file type not supported"),
        (ErrorCode::FileTooLarge, 30003, 413, "file too large"),
        (ErrorCode::TooManyRequests, 40001, 429, "too many requests"),
        (ErrorCode::Internal, 50001, 500, "internal server error"),
        (ErrorCode::Unavailable, 503, 503, "service unavailable"),
    ];

    fn row(self) -> &'static (ErrorCode, u32, u16, &'static str) {
        Self::TABLE.iter().find(|row| row.0 == self).expect("every ErrorCode variant has a row in TABLE")
    }

    /// The numeric code carried in the envelope's `code` field.
    pub fn code(self) -> u32 {
        self.row().1
    }

    /// The HTTP status a REST response with this code carries.
    pub fn http_status(self) -> u16 {
        self.row().2
    }

    /// A short default description, used as the envelope's `message`.
    pub fn message(self) -> &'static str {
        self.row().3
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::TABLE.iter().find(|row| row.1 == code).map(|row| row.0)
    }
}

impl From<ErrorCode> for u32 {
    fn from(code: ErrorCode) -> u32 {
        code.code()
    }
}

impl TryFrom<u32> for ErrorCode {
    type Error = String;

    fn try_from(code: u32) -> Result<Self, Self::Error> {
        Self::from_code(code).ok_or_else(|| format!("unknown error code {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for row in ErrorCode::TABLE {
            assert_eq!(ErrorCode::from_code(row.1), Some(row.0));
            assert_eq!(
                ErrorCode::TABLE.iter().filter(|other| other.1 == row.1).count(),
                1,
                "code {} listed twice",
                row.1
            );
        }
    }

    #[test]
    fn seed_002_statuses() {
        assert_eq!(ErrorCode::UserNotFound.http_status(), 404);
        assert_eq!(ErrorCode::WrongPassword.http_status(), 401);
        assert_eq!(ErrorCode::PhoneExists.http_status(), 409);
        assert_eq!(ErrorCode::NotChatMember.http_status(), 403);
        assert_eq!(ErrorCode::TooManyRequests.http_status(), 429);
        assert_eq!(ErrorCode::Internal.code(), 50001);
    }

    #[test]
    fn unknown_code_is_rejected() {
        assert!(ErrorCode::try_from(12345).is_err());
        let parsed: Result<ErrorCode, _> = serde_json::from_str("20002");
        assert_eq!(parsed.unwrap(), ErrorCode::NotChatMember);
        assert!(serde_json::from_str::<ErrorCode>("7").is_err());
    }
}
