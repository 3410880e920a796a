//! Switchboard's storage layer: the domain model, the async [`Store`]
//! every backend implements (one trait per domain: [`AccountStore`],
//! [`ContactStore`], [`ChatStore`], [`MessageStore`], [`FileStore`],
//! [`NotificationStore`]), [`SqliteStore`], the embedded default, and
//! [`ScyllaStore`] for clusters.
//!
//! Callers bring the domain traits into scope with `use storage::prelude::*`.
//!
//! Every backend must pass the conformance suite (`conformance_suite!`,
//! behind the `conformance` feature, which only this crate's tests turn
//! on); the SQLite backend runs it in `tests/conformance_sqlite.rs`.

pub mod buckets;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod ids;
pub mod model;
pub mod scylla;
mod seq;
pub mod sqlite;
mod store;

/// The store traits, for callers of their methods.
pub mod prelude {
    pub use crate::store::{
        AccountStore, ChatStore, ContactStore, FileStore, MessageStore, NotificationStore, PairStore, Store,
        StoreResult,
    };
}

pub use error::StoreError;
pub use ids::{IdGenerator, MAX_NODE_ID};
pub use scylla::{ScyllaConfig, ScyllaStore};
pub use seq::SeqCounter;
pub use sqlite::{SqliteConfig, SqliteStore};
pub use store::{
    AccountStore, ChatStore, ContactStore, FileStore, MessageStore, NotificationStore, PairStore, QueuedAppend, Store,
    StoreResult, Written,
};
