//! Each sender's `client_message_id`s, kept for good so that a resend finds
//! its original (migration 013): the full index `message_keys`, and
//! `recent_keys`, what was appended since its last merge.
//!
//! The writer of a store alone on its file appends each new key to
//! `recent_keys`, whose last page is all a commit writes of it, and holds
//! those keys in memory to look them up. Once [`MERGE_AT`] have gathered,
//! they are merged into `message_keys` in key order, a slice by each of the
//! writer's next commits, so that each leaf of the index is written about
//! once a merge rather than once a message, and no merge holds the writer
//! or costs a commit of its own. A writer of a shared file holds nothing
//! and writes `message_keys` directly; every open merges what a store
//! stopped before merging left, so `recent_keys` is only read at open.
//!
//! What is held is a hint, never the answer: a key whose message was rolled
//! back (or whose row is gone) stays until its merge, so a lookup
//! (`message_by_client` in store.rs) checks that the message a key names
//! is there and is that key's.

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreResult;
use crate::model::{MessageId, UserId};

/// Keys gathered before they are merged. Merged in key order, the keys of
/// two thousand senders (chat's load in `bench compare`) take a leaf of
/// `message_keys` per eight of them, against a leaf each when written one
/// by one; about 1 MiB of memory.
const MERGE_AT: usize = 16_384;

/// Keys merged by a commit at least, beside twice as many as its batch
/// appended: a merge ends well before the next one is due.
const MERGE_STEP: usize = 64;

/// A key and the message it names.
type Key = (UserId, Box<str>, MessageId);

/// Writes a key into the full index, over one whose message is gone.
const MERGED_INSERT: &str =
    "INSERT OR REPLACE INTO message_keys (sender_id, client_message_id, message_id) VALUES (?1, ?2, ?3)";

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

#[derive(Debug, Default)]
struct Held {
    /// Sender → key → message, for the keys appended since the running
    /// merge began (or since the writer started).
    keys: HashMap<UserId, HashMap<Box<str>, MessageId>>,
    /// How many keys `keys` holds.
    count: usize,
    /// The last row of `recent_keys` the open transaction wrote.
    written_row: Option<i64>,
    /// How many keys the open transaction wrote.
    written_keys: usize,
    /// The last committed row of `recent_keys`.
    last_row: i64,
    merging: Option<Merging>,
}

/// A merge under way: the keys held when it began, in key order, a slice
/// of them written by each commit.
#[derive(Debug)]
struct Merging {
    sorted: Vec<Key>,
    /// Where the next commit's slice begins.
    next: usize,
    /// The last row of `recent_keys` it covers.
    upto_row: i64,
    /// Where the open transaction's slice ended. Counted once it commits.
    written: Option<usize>,
}

impl Held {
    /// The message `key` of `sender` named when held, newest first.
    fn get(&self, sender: UserId, key: &str) -> Option<MessageId> {
        if let Some(id) = self.keys.get(&sender).and_then(|keys| keys.get(key)) {
            return Some(*id);
        }
        let sorted = &self.merging.as_ref()?.sorted;
        let at = sorted.binary_search_by(|(by, with, _)| (*by, &**with).cmp(&(sender, key))).ok()?;
        Some(sorted[at].2)
    }
}

/// Makes the calling thread (the writer of a store alone on its file) keep
/// new keys in `recent_keys` and in memory from now on.
pub(crate) fn hold() {
    HELD.with_borrow_mut(|held| *held = Some(Held::default()));
}

/// The message `key` of `sender` names among the held keys: a hint, which
/// the caller checks against the message (see the module's comment).
pub(crate) fn held(sender: UserId, key: &str) -> Option<MessageId> {
    HELD.with_borrow(|held| held.as_ref()?.get(sender, key))
}

/// The message `key` of `sender` names in the full index: a hint too.
pub(crate) fn merged(conn: &Connection, sender: UserId, key: &str) -> StoreResult<Option<MessageId>> {
    Ok(conn
        .prepare_cached("SELECT message_id FROM message_keys WHERE sender_id = ?1 AND client_message_id = ?2")?
        .query_row(params![sender, key], |row| row.get(0))
        .optional()?)
}

/// Records, in the open transaction, that message `id` was sent by
/// `sender` with `key` (which no lookup found a message for). A key whose
/// message is gone is taken over.
pub(crate) fn wrote(conn: &Connection, sender: UserId, key: &str, id: MessageId) -> rusqlite::Result<()> {
    if HELD.with_borrow(Option::is_none) {
        return conn.prepare_cached(MERGED_INSERT)?.execute(params![sender, key, id]).map(drop);
    }
    conn.prepare_cached("INSERT INTO recent_keys (sender_id, client_message_id, message_id) VALUES (?1, ?2, ?3)")?
        .execute(params![sender, key, id])?;
    let row = conn.last_insert_rowid();
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held {
            if held.keys.entry(sender).or_default().insert(key.into(), id).is_none() {
                held.count += 1;
            }
            held.written_row = Some(row);
            held.written_keys += 1;
        }
    });
    Ok(())
}

/// Writes the open transaction's slice of the running merge, before it
/// commits: twice as many keys as it appended and at least
/// [`MERGE_STEP`]. The last slice also takes the merge's rows out of
/// `recent_keys`. A failed write leaves the slice to the next
/// transaction: a key written twice is written the same.
pub(crate) fn merge_some(conn: &Connection) {
    let outcome = HELD.with_borrow_mut(|held| {
        let held = held.as_mut()?;
        let step = MERGE_STEP.max(2 * held.written_keys);
        let merging = held.merging.as_mut()?;
        let end = merging.sorted.len().min(merging.next + step);
        let last = (end == merging.sorted.len()).then_some(merging.upto_row);
        let written = write_slice(conn, &merging.sorted[merging.next..end], last);
        if written.is_ok() {
            merging.written = Some(end);
        }
        Some(written.map(|()| end - merging.next))
    });
    match outcome {
        Some(Ok(keys)) => metrics::counter!("switchboard_store_keys_merged_total").increment(keys as u64),
        Some(Err(error)) => tracing::warn!(%error, "merging recent message keys failed; the next commit tries again"),
        None => {}
    }
}

/// Writes `keys` into `message_keys` and, when `last` names the merge's
/// last row, takes the merge's rows out of `recent_keys`.
fn write_slice(conn: &Connection, keys: &[Key], last: Option<i64>) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(MERGED_INSERT)?;
    for (sender, key, id) in keys {
        insert.execute(params![sender, &**key, id])?;
    }
    if let Some(last) = last {
        conn.prepare_cached("DELETE FROM recent_keys WHERE rowid <= ?1")?.execute([last])?;
    }
    Ok(())
}

/// The open transaction ended: what it appended and merged counts once
/// `committed`. A merge that ended lets go of its keys; once [`MERGE_AT`]
/// are held again (and all of them are committed), the next one begins.
pub(crate) fn transaction_ended(committed: bool) {
    HELD.with_borrow_mut(|held| {
        let Some(held) = held.as_mut() else { return };
        let written_row = held.written_row.take();
        held.written_keys = 0;
        let merged_upto = held.merging.as_mut().and_then(|merging| merging.written.take());
        if !committed {
            return;
        }
        if let Some(row) = written_row {
            held.last_row = row;
        }
        if let Some(merging) = &mut held.merging
            && let Some(end) = merged_upto
        {
            merging.next = end;
            if end == merging.sorted.len() {
                held.merging = None;
            }
        }
        if held.merging.is_none() && held.count >= MERGE_AT {
            // Every row up to `last_row` is committed and every later
            // one is to come, so the merge's last slice deletes exactly
            // the rows of these keys (and of any rolled back since).
            let mut sorted: Vec<Key> = held
                .keys
                .drain()
                .flat_map(|(sender, keys)| keys.into_iter().map(move |(key, id)| (sender, key, id)))
                .collect();
            sorted.sort_unstable();
            held.count = 0;
            held.merging = Some(Merging { sorted, next: 0, upto_row: held.last_row, written: None });
            metrics::counter!("switchboard_store_key_merges_total").increment(1);
        }
    });
}

/// Moves every row of `recent_keys` into `message_keys`, in key order, in
/// one transaction (at open, before the writer starts); answers how many
/// moved. Later rows win over earlier ones and over merged ones: a key is
/// only written again once its message is gone.
pub(crate) fn merge(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let moved = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO message_keys (sender_id, client_message_id, message_id) \
             SELECT sender_id, client_message_id, message_id FROM recent_keys \
             ORDER BY sender_id, client_message_id, rowid",
        )
        .and_then(|mut statement| statement.execute([]))
        .and_then(|moved| conn.prepare_cached("DELETE FROM recent_keys")?.execute([]).map(|_| moved))
        .and_then(|moved| conn.execute_batch("COMMIT").map(|()| moved));
    if moved.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    moved
}
