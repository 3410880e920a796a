//! Switchboard's storage layer: the domain model, the async [`Store`]
//! trait every backend implements, and [`SqliteStore`], the embedded
//! default.
//!
//! Every backend must pass the suite in [`conformance`]; the SQLite
//! backend runs it in `tests/conformance_sqlite.rs`.

pub mod buckets;
pub mod conformance;
mod error;
mod ids;
pub mod model;
pub mod scylla;
pub mod sqlite;
mod store;

pub use error::StoreError;
pub use ids::{IdGenerator, MAX_NODE_ID};
pub use scylla::{ScyllaConfig, ScyllaStore};
pub use sqlite::{SqliteConfig, SqliteStore};
pub use store::{Store, StoreResult};
