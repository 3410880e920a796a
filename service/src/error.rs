use protocol::ErrorCode;
use storage::StoreError;
use storage::model::{ChatId, MessageId, UserId};

/// Why a use case refused or failed. The one error of the service layer:
/// every transport maps it in exactly one place (REST to a status and a
/// seed 002 body, the gateway to an `error` event, each dialect to its own
/// code table), so a failure reads the same wherever it happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request broke a rule of its shape (a field too long, a missing
    /// field, an unknown value).
    #[error("{0}")]
    Invalid(String),
    /// Allowed to nobody in the caller's position (not a business code of
    /// its own in seed 002).
    #[error("{0}")]
    Forbidden(String),
    /// A resource outside the business codes does not exist (a contact).
    #[error("{0}")]
    NotFound(String),
    /// The resource exists already, or is in a state that excludes this.
    #[error("{0}")]
    Conflict(String),
    /// No such user (the detail says which).
    #[error("{0}")]
    UserNotFound(String),
    #[error("phone number already registered")]
    PhoneTaken,
    #[error("username already taken")]
    UsernameTaken,
    #[error("chat {0} not found")]
    ChatNotFound(ChatId),
    /// The caller (or the user named) is not a member of the chat.
    #[error("{0}")]
    NotMember(String),
    /// No such message, or one in a chat the caller is not in (the two
    /// read the same, so nothing leaks).
    #[error("message {0} not found")]
    MessageNotFound(MessageId),
    /// The message exists but the caller may not do this to it.
    #[error("{0}")]
    MessageForbidden(String),
    /// No such uploaded file, or one the caller may not read (the two
    /// read the same, so nothing leaks).
    #[error("file {0} not found")]
    FileNotFound(i64),
    /// The other party has blocked the caller.
    #[error("the recipient does not accept your messages")]
    Blocked,
    /// Someone does not accept being put in a group by the caller (a
    /// block, or their group-invite setting): 20005 as well.
    #[error("{0}")]
    NotAccepted(String),
    /// A dependency (Redis, a closed store) cannot serve right now; nothing
    /// was written and the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed. The detail is logged, never shown.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ServiceError {
    /// The caller is not a member of `chat_id`.
    pub fn not_member() -> Self {
        Self::NotMember("you are not a member of this chat".into())
    }

    /// There is no user `id`.
    pub fn user_not_found(id: UserId) -> Self {
        Self::UserNotFound(format!("user {id} not found"))
    }

    /// Seed 002's business code for this error: the canonical surfaces
    /// (REST `/api` and the `/ws` gateway) both answer it, which is what
    /// keeps their codes equal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::BadRequest,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::UserNotFound(_) => ErrorCode::UserNotFound,
            Self::PhoneTaken => ErrorCode::PhoneExists,
            Self::UsernameTaken => ErrorCode::UsernameExists,
            Self::ChatNotFound(_) => ErrorCode::ChatNotFound,
            Self::NotMember(_) => ErrorCode::NotChatMember,
            Self::MessageNotFound(_) => ErrorCode::MessageNotFound,
            Self::MessageForbidden(_) => ErrorCode::MessageForbidden,
            Self::FileNotFound(_) => ErrorCode::FileNotFound,
            Self::Blocked | Self::NotAccepted(_) => ErrorCode::BlockedByRecipient,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What a client is told: the detail, except for internal failures,
    /// whose detail stays in the log.
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::PhoneTaken => Self::PhoneTaken,
            StoreError::UsernameTaken => Self::UsernameTaken,
            StoreError::EmailTaken => Self::Conflict("email already registered".into()),
            StoreError::ExternalIdTaken => Self::Conflict("external id already linked to another user".into()),
            StoreError::AlreadyPaired(id) => Self::Conflict(format!("user {id} already has a partner")),
            StoreError::UserNotFound(id) => Self::user_not_found(id),
            StoreError::ChatNotFound(id) => Self::ChatNotFound(id),
            StoreError::MessageNotFound(id) => Self::MessageNotFound(id),
            StoreError::MessageDeleted(id) => Self::MessageForbidden(format!("message {id} is deleted")),
            StoreError::NotMember { user_id, .. } => Self::NotMember(format!("user {user_id} is not a member")),
            StoreError::ContactExists => Self::Conflict("already a contact".into()),
            StoreError::Invalid(detail) => Self::Invalid(detail),
            StoreError::NotAccepted(id) => {
                Self::NotAccepted(format!("user {id} does not accept being added to a group by you"))
            }
            StoreError::ChatFull(max) => Self::Invalid(format!("a group has at most {max} members")),
            StoreError::Closed => Self::Unavailable("the store is shutting down; retry".into()),
            StoreError::Unavailable(detail) => Self::Unavailable(format!("not written: {detail}")),
            StoreError::Unanswered(detail) => {
                tracing::warn!(%detail, "the store did not answer in time");
                metrics::counter!("switchboard_store_unanswered_total").increment(1);
                Self::Unavailable(
                    "the store did not answer in time; send again (with the same client_message_id)".into(),
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                metrics::counter!("switchboard_store_failures_total").increment(1);
                Self::Internal(other)
            }
        }
    }
}

/// The result of every use case.
pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use protocol::ErrorCode;
    use storage::StoreError;

    use super::ServiceError;

    #[test]
    fn store_errors_keep_their_meaning_and_hide_their_detail() {
        assert_eq!(ServiceError::from(StoreError::PhoneTaken).code(), ErrorCode::PhoneExists);
        assert_eq!(ServiceError::from(StoreError::ChatNotFound(3)).code(), ErrorCode::ChatNotFound);
        assert_eq!(ServiceError::from(StoreError::Closed).code(), ErrorCode::Unavailable);
        let unanswered = ServiceError::from(StoreError::Unanswered("insert_message: timed out at 10.0.0.7".into()));
        assert_eq!(unanswered.code(), ErrorCode::Unavailable, "a timeout asks the client to send again");
        assert!(!unanswered.detail().contains("10.0.0.7"), "no store detail reaches a client");
        assert_eq!(ServiceError::from(StoreError::MessageDeleted(4)).code(), ErrorCode::MessageForbidden);
        let internal = ServiceError::from(StoreError::Worker("disk on fire at /var/x".into()));
        assert_eq!(internal.code(), ErrorCode::Internal);
        assert_eq!(internal.detail(), "internal error", "no store detail reaches a client");
    }
}
