//! Erasing expired (ttl) messages. Queries hide a message from the moment
//! it expires; this makes it gone from disk too: content and file fields
//! are blanked in place (the seq slot stays, so clients see no gap), which
//! also takes the text out of the search index.

use rusqlite::{Connection, params};

use crate::StoreError;

/// Messages erased per step: a few milliseconds of work.
const STEP_ROWS: i64 = 256;

/// Erases up to [`STEP_ROWS`] messages that expired by `now`, in one
/// transaction; answers whether more are waiting.
pub(crate) fn purge_step(conn: &Connection, now: i64) -> Result<bool, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let erased = conn
        .prepare_cached(
            "UPDATE messages SET content = '', file_name = '', file_size = 0, file_url = '', thumbnail = '' \
             WHERE id IN (SELECT id FROM messages WHERE expires_at IS NOT NULL AND content != '' \
             AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
        )
        .and_then(|mut statement| statement.execute(params![now, STEP_ROWS]));
    match erased {
        Ok(rows) => {
            conn.execute_batch("COMMIT")?;
            if rows > 0 {
                metrics::counter!("switchboard_store_expired_erased_total").increment(rows as u64);
            }
            Ok(rows as i64 == STEP_ROWS)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error.into())
        }
    }
}
