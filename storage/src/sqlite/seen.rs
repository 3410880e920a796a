//! Every `client_message_id` a resend could name, as Bloom filters held by
//! the writer of a store alone on its file. A key they have never seen is
//! new, so its append skips the lookups for its original (`original_of` in
//! store.rs: the held keys, then a statement on `message_keys` and one on
//! `scheduled_messages`, on the writer, for every keyed message). A key
//! they may have seen is looked up as before: they answer "new" only for
//! a key that is in none of those places.
//!
//! Two parts:
//! - the keys in the file when it opened (after the open merged
//!   `recent_keys`, see `keys`), read by a thread of their own into one
//!   filter sized for them. Until it arrives every key is looked up, and
//!   should reading them fail, every key is looked up for good;
//! - every key the writer writes after that (into `recent_keys` or
//!   `scheduled_messages`, before the row is written, so whether it
//!   commits or not), in filters of its own, each twice the size of the
//!   one before once that one is full.
//!
//! Nothing is taken out: a key whose message is gone costs a lookup that
//! finds nothing, as before. A filter costs about 1.4 bytes per key.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use fastbloom::BloomFilter;

use crate::StoreError;
use crate::model::UserId;

/// False positives per filter: a key taken for seen is looked up, as
/// every key was before.
const FALSE_POSITIVES: f64 = 0.005;
/// Keys the writer's first filter takes (about 1.4 MiB); each next one
/// takes twice as many as the one before. Every lookup reads each filter,
/// so they start large enough to stay few.
const FIRST_FILTER: usize = 1 << 20;

/// One hash per key, which each filter derives its bits from.
type KeyHasher = foldhash::quality::RandomState;

/// The keys a file holds, in one statement each.
const KEYS_IN_FILE: [&str; 2] = [
    "SELECT sender_id, client_message_id FROM message_keys",
    "SELECT sender_id, client_message_id FROM scheduled_messages WHERE client_message_id IS NOT NULL",
];

thread_local! {
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

struct Seen {
    hasher: KeyHasher,
    /// The keys in the file when it opened, once read...
    opened: Option<BloomFilter>,
    /// ...from the thread reading them (`None` once it answered or failed).
    arriving: Option<Receiver<BloomFilter>>,
    /// The keys written since, the newest filter last.
    written: Vec<BloomFilter>,
    /// Keys the newest filter still takes, and how many it took in all.
    room: usize,
    capacity: usize,
}

impl Seen {
    /// Filters waiting for the file's keys from `arriving`, the writer's
    /// first one taking `first` keys.
    fn new(hasher: KeyHasher, arriving: Receiver<BloomFilter>, first: usize) -> Self {
        Self {
            hasher,
            opened: None,
            arriving: Some(arriving),
            written: vec![filter_for(first)],
            room: first,
            capacity: first,
        }
    }

    fn hash(&self, sender: UserId, key: &str) -> u64 {
        self.hasher.hash_one((sender, key))
    }

    /// Whether the filters may have seen `hash`: always, until the keys
    /// in the file have arrived.
    fn may_have(&mut self, hash: u64) -> bool {
        if self.opened.is_none() {
            self.receive();
        }
        let Some(opened) = &self.opened else { return true };
        opened.contains_hash(hash) || self.written.iter().any(|filter| filter.contains_hash(hash))
    }

    fn receive(&mut self) {
        let Some(arriving) = &self.arriving else { return };
        match arriving.try_recv() {
            Ok(filter) => {
                self.opened = Some(filter);
                self.arriving = None;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.arriving = None,
        }
    }

    fn add(&mut self, hash: u64) {
        if self.room == 0 {
            self.capacity *= 2;
            self.room = self.capacity;
            self.written.push(filter_for(self.capacity));
        }
        self.room -= 1;
        if let Some(newest) = self.written.last_mut() {
            newest.insert_hash(hash);
        }
    }
}

fn filter_for(keys: usize) -> BloomFilter {
    BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(keys.max(1))
}

/// Makes the calling thread (the writer of a store alone on the file at
/// `path`) keep the filters from now on, and starts reading the keys in
/// the file into them.
pub(crate) fn hold(path: &Path) {
    let hasher = KeyHasher::default();
    let (answer, arriving) = std::sync::mpsc::sync_channel(1);
    let reading = hasher.clone();
    let path = path.to_owned();
    let spawned = std::thread::Builder::new().name("keys-filter".into()).spawn(move || {
        let started = Instant::now();
        match keys_in_file(&path, &reading) {
            Ok((filter, keys)) => {
                tracing::info!(
                    keys,
                    bytes = filter.num_bits() / 8,
                    ms = started.elapsed().as_millis() as u64,
                    "message keys read into the writer's filter"
                );
                // The writer may have stopped meanwhile.
                let _ = answer.send(filter);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the message keys failed; every keyed send looks for its original");
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no thread to read the message keys; every keyed send looks for its original");
    }
    SEEN.with_borrow_mut(|seen| *seen = Some(Seen::new(hasher, arriving, FIRST_FILTER)));
}

/// A filter of the keys in the file at `path`, and how many it read.
fn keys_in_file(path: &Path, hasher: &KeyHasher) -> Result<(BloomFilter, usize), StoreError> {
    let conn = super::open_reader(path)?;
    // One snapshot for the count and the keys.
    let tx = conn.unchecked_transaction()?;
    let count: i64 = tx.query_row(
        &format!("SELECT (SELECT COUNT(*) FROM ({})) + (SELECT COUNT(*) FROM ({}))", KEYS_IN_FILE[0], KEYS_IN_FILE[1]),
        [],
        |row| row.get(0),
    )?;
    let mut filter = filter_for(usize::try_from(count).unwrap_or(0));
    let mut keys = 0;
    for sql in KEYS_IN_FILE {
        let mut statement = tx.prepare(sql)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let sender: UserId = row.get(0)?;
            let key = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            filter.insert_hash(hasher.hash_one((sender, key)));
            keys += 1;
        }
    }
    Ok((filter, keys))
}

/// Whether `key` of `sender` may have been written before: false only
/// when this thread holds the filters, has the keys the file held at
/// open, and none of them has seen it.
pub(crate) fn may_have_seen(sender: UserId, key: &str) -> bool {
    SEEN.with_borrow_mut(|seen| match seen {
        Some(seen) => {
            let hash = seen.hash(sender, key);
            seen.may_have(hash)
        }
        None => true,
    })
}

/// Notes, before it is written, that `key` of `sender` is about to be
/// written (a message's key or a scheduled message's).
pub(crate) fn writing(sender: UserId, key: &str) {
    SEEN.with_borrow_mut(|seen| {
        if let Some(seen) = seen {
            let hash = seen.hash(sender, key);
            seen.add(hash);
        }
    });
}

/// Whether this thread's filters have the keys the file held at open (for
/// tests: until then every key is looked up).
#[cfg(test)]
fn complete() -> bool {
    SEEN.with_borrow_mut(|seen| {
        seen.as_mut().is_some_and(|seen| {
            seen.receive();
            seen.opened.is_some()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Appended, NewChat, NewMessage, NewUser};
    use crate::prelude::*;
    use crate::sqlite::{SqliteConfig, SqliteStore};
    use protocol::time::now_millis;

    /// Whether the store's writer has the keys its file held at open.
    async fn filters_complete(store: &SqliteStore) -> bool {
        store.inner.writer.write(|_| Ok(complete())).await.unwrap()
    }

    /// Keys written before a restart (a message's, merged at the open, and
    /// a scheduled message's) are in the filter read at open, so their
    /// resends still find their originals; so do keys written since.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resends_find_their_originals_once_the_filters_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig::new(dir.path());
        let store = SqliteStore::open(&config).unwrap();
        let user = NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() };
        let user = store.create_user(user).await.unwrap().id;
        let chat = store.create_chat(NewChat::group(user, "g", vec![], now_millis())).await.unwrap().0.id;
        let keyed = |key: &str, content: &str| {
            let mut message = NewMessage::text(chat, user, content, now_millis());
            message.client_message_id = Some(key.into());
            message
        };
        let sent = store.append_message(keyed("before", "sent")).await.unwrap().into_message();
        let mut later = keyed("later", "scheduled");
        later.send_at = Some(now_millis() + 3_600_000);
        let scheduled = store.schedule_message(later.clone()).await.unwrap().into_message();
        store.shutdown().await.unwrap();

        let store = SqliteStore::open(&config).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !filters_complete(&store).await {
            assert!(Instant::now() < deadline, "the keys in the file never arrived");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let again = store.append_message(keyed("before", "again")).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref m) if m.id == sent.id), "{again:?}");
        let again = store.append_message(later).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref m) if m.id == scheduled.id), "{again:?}");
        let fresh = store.append_message(keyed("after", "new")).await.unwrap();
        assert!(matches!(fresh, Appended::New(ref m) if m.content == "new"), "{fresh:?}");
        let again = store.append_message(keyed("after", "again")).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref m) if m.id == fresh.message().id), "{again:?}");
        store.shutdown().await.unwrap();
    }

    /// A store shared with other processes holds no filters: every key is
    /// looked up, as another process may have written it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_store_holds_no_filters() {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig { shared: true, ..SqliteConfig::new(dir.path()) };
        let store = SqliteStore::open(&config).unwrap();
        assert!(!filters_complete(&store).await);
        assert!(store.inner.writer.write(|_| Ok(may_have_seen(1, "anything"))).await.unwrap());
        store.shutdown().await.unwrap();
    }

    /// Until the file's keys arrive, and for good when reading them
    /// failed, every key may have been seen: each is looked up.
    #[test]
    fn without_the_files_keys_every_key_is_looked_up() {
        let (answer, arriving) = std::sync::mpsc::sync_channel(1);
        let mut seen = Seen::new(KeyHasher::default(), arriving, 16);
        let new = seen.hash(1, "new");
        assert!(seen.may_have(new), "the file's keys have not arrived");
        answer.send(filter_for(0)).unwrap();
        assert!(!seen.may_have(new), "they arrived without it");

        let (answer, arriving) = std::sync::mpsc::sync_channel::<BloomFilter>(1);
        seen.opened = None;
        seen.arriving = Some(arriving);
        drop(answer);
        assert!(seen.may_have(new), "the reading thread failed");
        assert!(seen.may_have(new) && seen.arriving.is_none(), "and stays failed");
    }

    #[test]
    fn the_written_filters_grow_and_forget_nothing() {
        const FIRST: usize = 1 << 12;
        let (_answer, arriving) = std::sync::mpsc::sync_channel(1);
        let mut seen = Seen::new(KeyHasher::default(), arriving, FIRST);
        seen.opened = Some(filter_for(0));
        let keys = 4 * FIRST;
        for n in 0..keys {
            let hash = seen.hash(n as i64 % 97, &format!("key-{n}"));
            seen.add(hash);
        }
        assert_eq!(seen.written.len(), 3, "a filter, then one twice its size, then one four times");
        for n in 0..keys {
            let hash = seen.hash(n as i64 % 97, &format!("key-{n}"));
            assert!(seen.may_have(hash), "key-{n} was written");
        }
        let unseen = (keys..2 * keys)
            .filter(|n| {
                let hash = seen.hash(*n as i64 % 97, &format!("key-{n}"));
                seen.may_have(hash)
            })
            .count();
        // Three filters at 0.5% each, and the empty one of the file.
        assert!(unseen < keys / 50, "{unseen} of {keys} new keys taken for seen");
    }
}
