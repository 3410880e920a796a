//! Deferred full-text indexing. Appends only queue their id in
//! `fts_pending`; the writer thread calls [`index_step`] when its queue is
//! empty, or after a batch when the backlog has grown past
//! [`BACKLOG_HIGH_WATER`], so that sustained load still makes progress.
//! Each step is its own short transaction, which keeps the stall a queued
//! write can see behind it small. For the same reason FTS5's automatic
//! merging is off (migration 009): each step merges [`MERGE_PAGES`] pages
//! of the index's segments, an even share of the work instead of a burst
//! every few dozen steps.

use rusqlite::{Connection, params};

use crate::StoreError;

/// Rows indexed per step: a few milliseconds of work.
pub(crate) const STEP_ROWS: i64 = 256;
/// Index pages merged per step. A step writes 3-4 leaf pages (about 75
/// short messages fit in one) and every page is rewritten once per level
/// of the index (5-7 levels for millions of rows), so this keeps up with
/// a margin; a level that still collects 16 segments is merged at once by
/// FTS5 itself (its crisis merge).
pub(crate) const MERGE_PAGES: i64 = 32;
/// Past this many queued rows, the writer indexes a step after every batch
/// even while writes keep arriving. Below it, a burst of writes runs at
/// full speed and the index catches up when the burst ends; search scans
/// at most this many unindexed rows with LIKE.
pub(crate) const BACKLOG_HIGH_WATER: i64 = 100_000;

/// Rows waiting to be indexed.
pub(crate) fn backlog(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        // Two separate subqueries: each MIN/MAX alone is one index seek,
        // together in one SELECT they would scan the table.
        .prepare_cached(
            "SELECT COALESCE((SELECT MAX(pos) FROM fts_pending) - (SELECT MIN(pos) FROM fts_pending) + 1, 0)",
        )?
        .query_row([], |row| row.get(0))?)
}

/// Indexes up to [`STEP_ROWS`] queued rows in one transaction; answers how
/// many rows are still queued.
pub(crate) fn index_step(conn: &Connection) -> Result<i64, StoreError> {
    // A write that arrives during a step waits for it: its length is a
    // latency any send can see.
    let started = std::time::Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let indexed = (|| {
        let last: Option<i64> = conn
            .prepare_cached("SELECT MAX(pos) FROM (SELECT pos FROM fts_pending ORDER BY pos LIMIT ?1)")?
            .query_row([STEP_ROWS], |row| row.get(0))?;
        let Some(last) = last else { return Ok(0) };
        conn.prepare_cached(
            "INSERT INTO messages_fts(rowid, content) SELECT m.id, m.content FROM messages m \
             WHERE m.id IN (SELECT message_id FROM fts_pending WHERE pos <= ?1) AND m.content != ''",
        )?
        .execute([last])?;
        let rows = conn.prepare_cached("DELETE FROM fts_pending WHERE pos <= ?1")?.execute(params![last])?;
        conn.prepare_cached("INSERT INTO messages_fts(messages_fts, rank) VALUES('merge', ?1)")?
            .execute([MERGE_PAGES])?;
        Ok::<_, StoreError>(rows)
    })();
    match indexed {
        Ok(rows) => {
            conn.execute_batch("COMMIT")?;
            metrics::histogram!("switchboard_store_fts_step_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("switchboard_store_fts_indexed_total").increment(rows as u64);
            let left = backlog(conn)?;
            metrics::gauge!("switchboard_store_fts_backlog").set(left as f64);
            Ok(left)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}
