//! Full-text search, in its own file and on its own thread. The index
//! (`search.db` beside the database, FTS5 with the trigram tokenizer) is
//! written by the indexer thread only, so an indexing step or one of FTS5's
//! segment merges never holds the database's write lock: no send waits
//! for the index, however large it grows.
//!
//! The queue is `fts_pending` in the database, filled in the writer's own
//! transactions (so in commit order: one writer hands out its `pos`): an
//! append queues its message, triggers queue edits and deletes. The
//! indexer reads what is past its mark, indexes it and moves the mark
//! (`indexed_upto`, in `search.db`) in the same transaction. The writer
//! trims the queue behind the mark. Search matches the index for
//! rows up to the mark and scans the few past it with LIKE, so results
//! never lag.
//!
//! The thread runs at a lower scheduling priority: when the CPU is busy
//! serving sends, the index waits and the scan covers the difference.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::stoppable::StoppableThread;
use crate::StoreError;

/// The index's file name inside the data dir.
pub const SEARCH_FILE: &str = "search.db";

/// Queued rows indexed per step at most (one transaction, one fsync of
/// the index)...
const STEP_ROWS: i64 = 4_096;
/// ...and their text at most (bytes; a step ends with the row that
/// reaches it): the rows are read before they are indexed.
const STEP_BYTES: usize = 4 << 20;
/// How often the indexer looks for new rows when it has caught up. Each
/// step writes a new FTS5 segment that later merges fold into larger ones:
/// a step per 250 ms instead of per 50 ms cut the indexer's CPU per
/// message by about 40% (BENCHMARKS.md, item 31), while search still sees
/// every message at once (what the index has not taken yet is matched
/// with LIKE: at most this long's worth of messages).
const POLL: Duration = Duration::from_millis(250);
/// After a failed step, how long before the next try.
const RETRY: Duration = Duration::from_secs(1);
/// The indexer's niceness (Linux; higher is lower priority).
const NICENESS: i32 = 10;

/// Queued rows the writer trims per statement.
const TRIM_ROWS: i64 = 4_096;
/// The writer trims only up to a mark it saw at least this long ago. A
/// search reads the mark (in `search.db`) and the queue (in the database)
/// in one statement, but as two snapshots: a trim that followed the mark
/// by microseconds could remove rows the search's older mark still counts
/// as queued.
const TRIM_LAG: Duration = Duration::from_secs(1);

/// Creates the index file if missing and checks that it belongs to this
/// database; when it is new or does not, every message is queued again
/// (through the writer's connection, before anything else writes).
pub(crate) fn prepare(writer: &Connection, search_path: &Path) -> Result<(), StoreError> {
    let search = open_index(search_path)?;
    search.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(\
             content, content = '', contentless_delete = 1, tokenize = 'trigram');\
         CREATE TABLE IF NOT EXISTS indexed_upto (\
             only INTEGER PRIMARY KEY CHECK (only = 0), pos INTEGER NOT NULL, message_id INTEGER NOT NULL);",
    )?;
    let mark: Option<(i64, i64)> = search
        .query_row("SELECT pos, message_id FROM indexed_upto", [], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    // The queue keeps the row at the mark (the writer trims only below
    // it): the same message there means the same database.
    let matches = match mark {
        Some((pos, message_id)) if pos > 0 => writer
            .query_row("SELECT message_id FROM fts_pending WHERE pos = ?1", [pos], |row| row.get::<_, i64>(0))
            .optional()?
            .is_some_and(|queued| queued == message_id),
        _ => false,
    };
    if matches {
        return Ok(());
    }
    if mark.is_some() {
        tracing::warn!(path = %search_path.display(), "the search index is not this database's: building it anew");
    }
    // The index is emptied first: the queue's positions start again from
    // 1, so a stop between the two must not leave the old mark beside the
    // new queue, where it could name the same message by chance.
    search.execute_batch(
        "BEGIN IMMEDIATE;\
         INSERT INTO messages_fts(messages_fts) VALUES('delete-all');\
         INSERT OR REPLACE INTO indexed_upto VALUES (0, 0, 0);\
         COMMIT;",
    )?;
    writer.execute_batch(
        "BEGIN IMMEDIATE;\
         DELETE FROM fts_pending;\
         INSERT INTO fts_pending(message_id) SELECT id FROM messages WHERE content != '' ORDER BY id;\
         COMMIT;",
    )?;
    let queued: i64 = writer.query_row("SELECT COUNT(*) FROM fts_pending", [], |row| row.get(0))?;
    if queued > 0 {
        tracing::info!(messages = queued, "search index queued for a full build");
    }
    Ok(())
}

fn open_index(path: &Path) -> Result<Connection, StoreError> {
    let conn = super::open_writer(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
}

/// Rows waiting to be indexed, seen from a reader (which has the index
/// attached as `search`).
pub(crate) fn backlog(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE((SELECT MAX(pos) FROM fts_pending), 0) - (SELECT pos FROM search.indexed_upto)",
        )?
        .query_row([], |row| row.get(0))?)
}

/// The indexer thread.
pub(crate) struct Indexer {
    thread: StoppableThread,
    /// The mark of its last committed step.
    indexed_upto: Arc<AtomicI64>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer").finish_non_exhaustive()
    }
}

impl Indexer {
    pub(crate) fn spawn(path: &Path, search_path: &Path) -> Result<Self, StoreError> {
        let queue =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        super::configure(&queue)?;
        let index = open_index(search_path)?;
        let indexed_upto =
            Arc::new(AtomicI64::new(index.query_row("SELECT pos FROM indexed_upto", [], |row| row.get(0))?));
        let mark = indexed_upto.clone();
        let thread = StoppableThread::spawn("search-index", move |stopped| {
            lower_priority();
            let mut wait = Duration::ZERO;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                wait = match index_step(&queue, &index, &mark) {
                    Ok(true) => Duration::ZERO,
                    Ok(false) => POLL,
                    Err(error) => {
                        tracing::warn!(%error, "full-text indexing step failed");
                        RETRY
                    }
                };
            }
            // Leaves the index whole in its file.
            if let Err(error) = index.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::warn!(%error, "final search index checkpoint failed");
            }
        })?;
        Ok(Self { thread, indexed_upto })
    }

    /// The mark the writer trims the queue behind.
    pub(crate) fn progress(&self) -> Arc<AtomicI64> {
        self.indexed_upto.clone()
    }

    /// Stops the thread after its current step.
    pub(crate) fn stop(&self) {
        self.thread.stop();
    }
}

/// Lets the threads serving sends go first when the CPU is contended.
/// (Linux applies a niceness given for a thread id to that thread only.)
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), NICENESS) {
        tracing::debug!(%error, "could not lower the indexer's priority");
    }
}

/// One queued row, as the indexer reads it.
struct Queued {
    pos: i64,
    message_id: i64,
    reindex: bool,
    /// `None` when the message is gone.
    content: Option<String>,
}

/// Indexes up to [`STEP_ROWS`] queued rows (and [`STEP_BYTES`] of text)
/// past the mark in one transaction of the index; answers whether it
/// stopped at one of those budgets (more may be waiting). Rows queued
/// while a step ran wait for the next poll: a step right after would take
/// only the few that came meanwhile, at a step's whole fixed cost.
fn index_step(queue: &Connection, index: &Connection, mark: &AtomicI64) -> Result<bool, StoreError> {
    let started = Instant::now();
    // The mark is read inside the index's write transaction: several
    // processes sharing a data dir each run an indexer, one at a time.
    index.execute_batch("BEGIN IMMEDIATE")?;
    let indexed = (|| {
        let upto: i64 = index.prepare_cached("SELECT pos FROM indexed_upto")?.query_row([], |row| row.get(0))?;
        // Read first, then index: the read transaction on the database
        // stays short (a reader holds back the checkpointer).
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut select = queue.prepare_cached(
            "SELECT p.pos, p.message_id, p.reindex, m.content FROM fts_pending p \
             LEFT JOIN messages m ON m.id = p.message_id WHERE p.pos > ?1 ORDER BY p.pos LIMIT ?2",
        )?;
        for row in select.query_map(params![upto, STEP_ROWS], |row| {
            Ok(Queued { pos: row.get(0)?, message_id: row.get(1)?, reindex: row.get(2)?, content: row.get(3)? })
        })? {
            let row = row?;
            bytes += row.content.as_ref().map_or(0, String::len);
            rows.push(row);
            if bytes >= STEP_BYTES {
                break;
            }
        }
        drop(select);
        let Some(last) = rows.last() else { return Ok(None) };
        let (pos, message_id, taken) = (last.pos, last.message_id, rows.len() as i64);
        let full = taken == STEP_ROWS || bytes >= STEP_BYTES;
        let mut remove = index.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?1")?;
        let mut insert = index.prepare_cached("INSERT INTO messages_fts(rowid, content) VALUES (?1, ?2)")?;
        for row in rows {
            if row.reindex {
                remove.execute([row.message_id])?;
            }
            if let Some(content) = row.content.filter(|content| !content.is_empty()) {
                insert.execute(params![row.message_id, content])?;
            }
        }
        index.prepare_cached("UPDATE indexed_upto SET pos = ?1, message_id = ?2")?.execute(params![pos, message_id])?;
        Ok::<_, StoreError>(Some((pos, taken, full)))
    })();
    match indexed {
        Ok(None) => {
            index.execute_batch("ROLLBACK")?;
            Ok(false)
        }
        Ok(Some((upto, rows, full))) => {
            index.execute_batch("COMMIT")?;
            mark.store(upto, Ordering::Release);
            metrics::histogram!("switchboard_store_fts_step_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("switchboard_store_fts_indexed_total").increment(rows as u64);
            let last: i64 = queue
                .prepare_cached("SELECT COALESCE(MAX(pos), 0) FROM fts_pending")?
                .query_row([], |row| row.get(0))?;
            metrics::gauge!("switchboard_store_fts_backlog").set((last - upto) as f64);
            Ok(full)
        }
        Err(error) => {
            let _ = index.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// The writer's side: removes indexed rows from the queue, a bounded
/// number per call, behind a mark seen at least [`TRIM_LAG`] ago.
#[derive(Debug)]
pub(crate) struct Trimmer {
    indexed_upto: Arc<AtomicI64>,
    /// A mark and when it was seen.
    seen: (i64, Instant),
    /// What may be trimmed: rows below this.
    safe: i64,
    /// Rows below this are gone.
    trimmed: i64,
}

impl Trimmer {
    pub(crate) fn new(indexed_upto: Arc<AtomicI64>) -> Self {
        Self { indexed_upto, seen: (0, Instant::now()), safe: 0, trimmed: 0 }
    }

    /// Trims one bounded range if any is due; answers whether more is.
    pub(crate) fn step(&mut self, conn: &Connection) -> Result<bool, StoreError> {
        if self.seen.1.elapsed() >= TRIM_LAG {
            self.safe = self.seen.0;
            self.seen = (self.indexed_upto.load(Ordering::Acquire), Instant::now());
        }
        if self.safe <= self.trimmed {
            return Ok(false);
        }
        let upto = self.safe.min(self.trimmed.max(Self::first(conn)?) + TRIM_ROWS);
        conn.prepare_cached("DELETE FROM fts_pending WHERE pos < ?1")?.execute([upto])?;
        self.trimmed = upto;
        Ok(self.safe > self.trimmed)
    }

    /// The first queued row (the queue may start anywhere after a reopen).
    fn first(conn: &Connection) -> Result<i64, StoreError> {
        Ok(conn.prepare_cached("SELECT COALESCE(MIN(pos), 0) FROM fts_pending")?.query_row([], |row| row.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index's steps write many FTS5 pages a commit: they leave
    /// through the gathering VFS, and a reader still finds what they wrote.
    #[test]
    fn the_index_writes_a_commit_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEARCH_FILE);
        let index = open_index(&path).unwrap();
        index.execute_batch("CREATE VIRTUAL TABLE messages_fts USING fts5(content, tokenize = 'trigram')").unwrap();
        let before = wal_gather::wal_stats(&index).expect("the index's WAL is open through the gathering VFS");
        let tx = index.unchecked_transaction().unwrap();
        for id in 0..500 {
            tx.execute("INSERT INTO messages_fts(rowid, content) VALUES (?1, ?2)", params![id, format!("needle {id}")])
                .unwrap();
        }
        tx.commit().unwrap();
        let after = wal_gather::wal_stats(&index).unwrap();
        let asked = after.writes_asked - before.writes_asked;
        let made = after.writes_made - before.writes_made;
        assert!(asked > 2 * made, "SQLite asked for {asked} writes, {made} were made");
        let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let found: i64 = reader
            .query_row("SELECT COUNT(*) FROM messages_fts WHERE content LIKE '%needle 49%'", [], |row| row.get(0))
            .unwrap();
        assert_eq!(found, 11);
    }
}
