//! The conformance suite on the embedded SQLite backend, each case on a
//! fresh database in its own temporary folder.

use storage::{SqliteConfig, SqliteStore};

fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).expect("open store");
    (store, dir)
}

storage::conformance_suite!(async { fresh() });
