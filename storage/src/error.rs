/// Why a store operation failed. Callers match on the domain variants
/// (`PhoneTaken`, `ChatNotFound`, ...) to pick a seed 002 error code; the
/// rest are infrastructure failures that map to 50001.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A user with this phone number already exists.
    #[error("phone number already registered")]
    PhoneTaken,
    /// A user with this email already exists.
    #[error("email already registered")]
    EmailTaken,
    /// Another user already has this external id.
    #[error("external id already linked to another user")]
    ExternalIdTaken,
    /// Another live invitation has this code.
    #[error("invitation code already in use")]
    CodeTaken,
    /// The user already has a partner (or the code's invitation is already used).
    #[error("user {0} is already paired")]
    AlreadyPaired(i64),
    /// A user with this username already exists.
    #[error("username already taken")]
    UsernameTaken,
    /// The referenced user does not exist.
    #[error("user {0} not found")]
    UserNotFound(i64),
    /// The referenced chat does not exist.
    #[error("chat {0} not found")]
    ChatNotFound(i64),
    /// The referenced message does not exist.
    #[error("message {0} not found")]
    MessageNotFound(i64),
    /// The message is deleted: it can't be edited or pinned.
    #[error("message {0} is deleted")]
    MessageDeleted(i64),
    /// The user is not a member of the chat.
    #[error("user {user_id} is not a member of chat {chat_id}")]
    NotMember {
        /// The chat.
        chat_id: i64,
        /// The user.
        user_id: i64,
    },
    /// The user does not accept being put in a group by whoever asked
    /// (they blocked them, or their group-invite setting says no).
    #[error("user {0} does not accept being added by this user")]
    NotAccepted(i64),
    /// The chat would pass its member cap.
    #[error("a group has at most {0} members")]
    ChatFull(u32),
    /// The contact is already in the user's list.
    #[error("contact already exists")]
    ContactExists,
    /// A seq taken from a [`crate::SeqCounter`] is already used in the
    /// chat; nothing was overwritten.
    #[error("seq {seq} of chat {chat_id} is already taken")]
    SeqTaken {
        /// The chat.
        chat_id: i64,
        /// The seq that was offered.
        seq: u64,
    },
    /// The input broke a rule of the model (e.g. a private chat needs
    /// exactly two distinct members).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store has been shut down and takes no more work.
    #[error("store is closed")]
    Closed,
    /// A service the store depends on (the seq counter) cannot be
    /// reached; nothing was written, and a retry may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write was applied inside a batch whose commit failed; it is not
    /// durable and must be retried.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The backend itself failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// Opening or migrating the database failed.
    #[error("migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// File-system work around the database failed.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    /// The database did not answer in time, or too few of its replicas
    /// were up: nothing is wrong with the request, and a write may have
    /// been applied. Sending it again (with the same `client_message_id`)
    /// is safe.
    #[error("not answered: {0}")]
    Unanswered(String),
    /// ScyllaDB refused or failed a request (connecting, migrating, a query).
    #[error("scylla: {0}")]
    Scylla(String),
    /// The data dir is held by another process in a way this store
    /// cannot share.
    #[error("data dir in use: {0}")]
    InUse(String),
    /// A worker thread panicked while running this operation.
    #[error("storage worker failed: {0}")]
    Worker(String),
}
