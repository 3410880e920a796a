//! The embedded default backend: one SQLite file in the data dir, WAL,
//! versioned migrations, one writer thread doing group commit, reads on a
//! small pool off the async runtime.

/// A chat's last seq as SQL, for the chat id `$chat` (a parameter or a
/// column): its messages' highest seq, the last entry of their `(chat_id,
/// seq)` index (migration 012), 0 before its first message. One rule for
/// appends, chat rows and read markers.
macro_rules! last_seq_of {
    ($chat:literal) => {
        concat!("(SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ", $chat, ")")
    };
}

mod checkpoint;
mod context_cache;
mod expiry;
mod keys;
mod last_seqs;
mod readers;
mod rows;
mod search_index;
mod seen;
mod stoppable;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use crate::{IdGenerator, StoreError};
use checkpoint::Checkpointer;
use context_cache::ContextCache;
use readers::Readers;
use search_index::{Indexer, Trimmer};
use writer::Writer;

pub use search_index::SEARCH_FILE;

/// The database file's name inside the data dir.
pub const DATABASE_FILE: &str = "switchboard.db";

/// How long a connection waits for another process's write lock (several
/// processes may share one data dir) before failing.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Held while a process opens and migrates the database.
const OPEN_LOCK_FILE: &str = "switchboard.db.open-lock";

/// Held for as long as a store is open: exclusively by a store that is the
/// only process on the file, shared by a cluster's processes.
const PROCESS_LOCK_FILE: &str = "switchboard.db.process-lock";

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/001_initial.sql")),
        M::up(include_str!("migrations/002_media.sql")),
        M::up(include_str!("migrations/003_email.sql")),
        M::up(include_str!("migrations/004_devices.sql")),
        M::up(include_str!("migrations/005_receipts.sql")),
        M::up(include_str!("migrations/006_server_api.sql")),
        M::up(include_str!("migrations/007_pairs.sql")),
        M::up(include_str!("migrations/008_group_invites.sql")),
        M::up(include_str!("migrations/009_fts_merge_steps.sql")),
        M::up(include_str!("migrations/010_search_file.sql")),
        M::up(include_str!("migrations/011_search_queue_from_append.sql")),
        M::up(include_str!("migrations/012_seq_from_index.sql")),
        M::up(include_str!("migrations/013_message_keys.sql")),
    ])
});

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The folder holding the database (created if missing).
    pub data_dir: PathBuf,
    /// This process's node id for message ids (0..=15); processes sharing
    /// one data dir must use different ones.
    pub node_id: u16,
    /// How many read connections (and so concurrent reads) to keep.
    pub readers: usize,
    /// Other processes (a cluster's nodes) open this data dir too. When
    /// `false`, the store holds the dir for itself (another process
    /// opening it is refused) and keeps what sends read in memory, since
    /// it sees every write. When `true`, every send reads the file.
    pub shared: bool,
    /// The WAL length, in 4 KiB pages, from which the WAL is made to start
    /// over from its beginning (see the `checkpoint` module). Smaller
    /// keeps the WAL file smaller at the cost of a brief hold on writes
    /// more often.
    pub wal_restart_pages: i64,
}

impl SqliteConfig {
    /// Defaults for a single-process server in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            node_id: 0,
            readers: 4,
            shared: false,
            wal_restart_pages: checkpoint::RESTART_PAGES,
        }
    }
}

/// The SQLite [`Store`](crate::Store). Cheap to clone: clones share the
/// writer thread and the read pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    checkpointer: Checkpointer,
    indexer: Indexer,
    readers: Readers,
    ids: Arc<IdGenerator>,
    path: PathBuf,
    /// What sends read, when this process is the only one on the file.
    cache: Option<Arc<ContextCache>>,
    /// The data dir's process lock, released at shutdown (or when the
    /// store is dropped).
    process_lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the database in
    /// `config.data_dir`. Blocking: call it at start-up, or from
    /// `spawn_blocking`.
    pub fn open(config: &SqliteConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let path = config.data_dir.join(DATABASE_FILE);
        // Processes of a cluster may share the data dir and start together:
        // one at a time switches the file to WAL and migrates it (the others
        // then find it done). The lock is released when `guard` drops.
        let guard = std::fs::File::create(config.data_dir.join(OPEN_LOCK_FILE))?;
        guard.lock()?;
        let process_lock = hold_data_dir(&config.data_dir, config.shared)?;
        // Only the writer thread ever uses this connection: no mutex per call.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let mut conn = open_writer(&path, flags)?;
        // WAL is a property of the file: set once, by the writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::WRITER_AUTOCHECKPOINT_PAGES)?;
        MIGRATIONS.to_latest(&mut conn)?;
        // What a store stopped before merging left (see `keys`).
        keys::merge(&conn)?;
        let search_path = config.data_dir.join(SEARCH_FILE);
        search_index::prepare(&conn, &search_path)?;
        let cache = if config.shared { None } else { Some(Arc::new(ContextCache::new())) };
        if let Some(cache) = &cache {
            cache.watch(&conn)?;
        }
        drop(guard);
        let readers = Readers::new(path.clone(), config.readers);
        let ended: writer::Ended = match cache.clone() {
            Some(cache) => Box::new(move || cache.transaction_ended()),
            None => Box::new(|| {}),
        };
        let indexer = Indexer::spawn(&path, &search_path)?;
        let mut trimmer = Trimmer::new(indexer.progress());
        let writer = Writer::spawn(
            conn,
            Box::new(move |conn, idle| background_work(conn, idle, &mut trimmer)),
            ended,
            !config.shared,
        )?;
        let checkpointer = Checkpointer::spawn(&path, writer.nudger(), config.wal_restart_pages)?;
        tracing::info!(
            path = %path.display(),
            node_id = config.node_id,
            shared = config.shared,
            page_cache = if wal_gather::page_cache::installed() { "switchboard" } else { "sqlite default" },
            "sqlite store open"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                checkpointer,
                indexer,
                readers,
                ids: Arc::new(IdGenerator::new(config.node_id)),
                path,
                cache,
                process_lock: std::sync::Mutex::new(Some(process_lock)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the background threads and drains the writer (the
    /// [`Store::shutdown`](crate::Store::shutdown) of this backend).
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.indexer.stop();
            inner.checkpointer.stop();
        })
        .await
        .map_err(|error| StoreError::Worker(error.to_string()))?;
        self.inner.writer.shutdown().await?;
        // Nothing more is written: another process may have the dir now.
        if let Ok(mut lock) = self.inner.process_lock.lock() {
            lock.take();
        }
        Ok(())
    }

    /// Messages whose text is not in the full-text index yet (search still
    /// finds them, by a slower scan).
    pub async fn search_backlog(&self) -> Result<u64, StoreError> {
        self.inner.readers.read(|conn| Ok(search_index::backlog(conn)? as u64)).await
    }

    /// Writes waiting for the writer thread right now.
    pub fn queued_writes(&self) -> usize {
        self.inner.writer.queued()
    }
}

/// Takes the data dir for this store: exclusively, or `shared` with the
/// other processes of a cluster. Refuses a dir another process holds in
/// the other way: a store that keeps sends' reads in memory must see every
/// write, so it cannot share the file.
fn hold_data_dir(data_dir: &Path, shared: bool) -> Result<std::fs::File, StoreError> {
    let lock = std::fs::File::create(data_dir.join(PROCESS_LOCK_FILE))?;
    let held = if shared { lock.try_lock_shared() } else { lock.try_lock() };
    match held {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(if shared {
            format!(
                "{} is held by a single-process server; stop it, or start it as part of the cluster (with Redis)",
                data_dir.display()
            )
        } else {
            format!(
                "{} is open in another process; a single process needs it to itself (a cluster's nodes share it through Redis)",
                data_dir.display()
            )
        })),
        Err(std::fs::TryLockError::Error(error)) => Err(error.into()),
    }
}

/// The writer's background work, in small steps: erasing expired messages
/// and trimming the search queue behind the index. When the writer is idle
/// it does both; between batches only the trimming, which keeps the queue
/// short under sustained load. Answers whether work is left.
fn background_work(conn: &Connection, idle: bool, trimmer: &mut Trimmer) -> bool {
    let purge = if idle { expiry::purge_step(conn, protocol::time::now_millis()) } else { Ok(false) };
    // A failed step is retried after the next batch rather than spun on.
    let purge_left = purge.unwrap_or_else(|error| {
        tracing::warn!(%error, "expiry purge step failed");
        false
    });
    let trim_left = trimmer.step(conn).unwrap_or_else(|error| {
        tracing::warn!(%error, "search queue trim failed");
        false
    });
    purge_left || trim_left
}

/// Per-connection settings. `synchronous = FULL` makes every commit fsync
/// the WAL: a write reported done survives power loss, not just a crash.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 32 MiB of page cache per connection: the hot tail of every chat stays
    // in memory. (No mmap: with a growing file every reader re-maps it, and
    // the TLB shootdowns cost more than the copies they save.)
    conn.pragma_update(None, "cache_size", -32_768)?;
    // Savepoints (one per write job, one per message of a batch) keep a
    // statement journal of the pages they touch; in a temporary file that
    // was a write(2) per page. It only ever serves a rollback inside the
    // open transaction, so memory is enough: durability is the WAL's.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// A connection that writes its file: each commit's WAL frames leave in
/// one call instead of two per frame (`wal_gather`). The gathering VFS holds
/// frames until the commit's sync; only a sync on every commit keeps
/// readers from looking for them first, so anything less is refused.
fn open_writer(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags_and_vfs(path, flags, wal_gather::register()?)?;
    configure(&conn)?;
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
    if synchronous < 2 {
        return Err(StoreError::Invalid(format!("a writer needs synchronous = FULL, found {synchronous}")));
    }
    Ok(conn)
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn)?;
    // Search reads the index beside the database (read-only too: an
    // attached file takes the connection's open flags).
    conn.execute("ATTACH DATABASE ?1 AS search", [path.with_file_name(SEARCH_FILE).to_string_lossy()])?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }
}
