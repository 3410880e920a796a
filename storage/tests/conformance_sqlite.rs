//! The conformance suite on the embedded SQLite backend, each case on a
//! fresh database in its own temporary folder: once as the only process
//! on its file (what sends read is kept in memory), once shared with a
//! cluster (every send reads the file).

use storage::{SqliteConfig, SqliteStore};

fn fresh(shared: bool) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::open(&SqliteConfig { shared, ..SqliteConfig::new(dir.path()) }).expect("open store");
    (store, dir)
}

mod single_process {
    storage::conformance_suite!(async { super::fresh(false) });
}

mod shared {
    storage::conformance_suite!(async { super::fresh(true) });
}
