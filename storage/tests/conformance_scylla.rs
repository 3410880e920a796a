//! The conformance suite on ScyllaDB, each case in a fresh keyspace of the
//! cluster named by `SCYLLA_URI` (`host:port[,host:port...]`), dropped
//! when the case ends. The cases are ignored unless asked for: the default
//! test command has no CQL node to give them (see `storage/docs/scylla.md`,
//! "Verified where"). Asked for without `SCYLLA_URI`, each fails.
//!
//! ```text
//! SCYLLA_URI=127.0.0.1:9042 cargo test -p storage --test conformance_scylla -- --ignored
//! ```
//!
//! `SCYLLA_REPLICATION` overrides the test keyspaces' replication map
//! (default: `SimpleStrategy`, one replica, for a single test node).

use std::sync::atomic::{AtomicU32, Ordering};

use storage::scylla::connect;
use storage::{ScyllaConfig, ScyllaStore};

/// Drops its keyspace when the case ends, on a thread of its own (the
/// case's runtime is going away).
struct Keyspace(ScyllaConfig);

impl Drop for Keyspace {
    fn drop(&mut self) {
        let config = self.0.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let session = connect(&config).await.ok()?;
                let drop = format!("DROP KEYSPACE IF EXISTS {}", config.keyspace);
                session.query_unpaged(drop, &[]).await.ok()
            })
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("could not drop test keyspace {}; drop it by hand", self.0.keyspace);
        }
    }
}

async fn fresh() -> Option<(ScyllaStore, Keyspace)> {
    static CASES: AtomicU32 = AtomicU32::new(0);
    let Ok(uri) = std::env::var("SCYLLA_URI") else {
        eprintln!("SCYLLA_URI is not set: these cases need a CQL node (see this file's header)");
        return None;
    };
    let nodes = uri.split(',').map(str::trim).filter(|node| !node.is_empty()).map(str::to_owned).collect();
    let config = ScyllaConfig {
        keyspace: format!("sbconf_{}_{}", std::process::id(), CASES.fetch_add(1, Ordering::Relaxed)),
        replication: std::env::var("SCYLLA_REPLICATION")
            .unwrap_or_else(|_| "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()),
        ..ScyllaConfig::new(nodes)
    };
    let store = ScyllaStore::open(&config).await.unwrap_or_else(|error| panic!("opening {uri}: {error}"));
    Some((store, Keyspace(config)))
}

storage::conformance_suite!(optional fresh());
