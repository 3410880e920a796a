//! What a send reads before its append (the chat, its members, the sender
//! and who blocks them), kept in memory by a store that is the only
//! process on its file.
//!
//! Only the writer connection changes the file, so it knows every change:
//! temporary triggers on it name each chat and user a write touches
//! ([`TRIGGERS`]), and once the transaction has committed (or rolled
//! back) the writer drops their entries, before it answers any caller.
//! A caller told its write is done therefore never sees the old entry.
//!
//! A read that began before such a commit may still hold the old rows: it
//! stores what it read only if no commit dropped entries since it began
//! (the epoch), checked under the same lock the drop takes.
//!
//! Left out on purpose, because they change with every message or read
//! receipt and no send decision needs them: a chat's `last_seq` and
//! `updated_at`, and a member's `last_read_seq`, `is_pinned` and
//! `is_muted`. Cached entries may show them behind.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use metrics::Counter;
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;

use crate::StoreError;
use crate::model::{Chat, ChatId, Member, User, UserId};

/// A chat as sends see it.
#[derive(Debug)]
pub(crate) struct ChatEntry {
    pub(crate) chat: Arc<Chat>,
    pub(crate) members: Arc<[Member]>,
}

/// A sender as sends see them.
#[derive(Debug)]
pub(crate) struct SenderEntry {
    pub(crate) user: Option<Arc<User>>,
    /// Everyone who blocks this user, in any chat.
    pub(crate) blocked_by: Vec<UserId>,
}

/// Most member rows held across all cached chats (about 40 bytes each).
const MAX_MEMBER_ROWS: usize = 1 << 20;
/// Most senders held.
const MAX_SENDERS: usize = 1 << 17;

/// What a trigger reports changed.
#[derive(Debug, Clone, Copy)]
enum Change {
    Chat(ChatId),
    Sender(UserId),
    Everything,
}

/// The temporary triggers on the writer connection; each calls
/// `switchboard_changed(kind, id)`, kind 0 for a chat, 1 for a sender, 2
/// for everything. Updates of the columns that move with every message or
/// receipt do not fire them.
const TRIGGERS: &str = "
CREATE TEMP TRIGGER cache_chat_update AFTER UPDATE OF id, kind, name, description, avatar, created_by, is_active
    ON main.chats BEGIN SELECT switchboard_changed(0, OLD.id); SELECT switchboard_changed(0, NEW.id); END;
CREATE TEMP TRIGGER cache_chat_delete AFTER DELETE ON main.chats BEGIN SELECT switchboard_changed(0, OLD.id); END;
CREATE TEMP TRIGGER cache_member_insert AFTER INSERT ON main.members
    BEGIN SELECT switchboard_changed(0, NEW.chat_id); END;
CREATE TEMP TRIGGER cache_member_update AFTER UPDATE OF chat_id, user_id, role, joined_at ON main.members
    BEGIN SELECT switchboard_changed(0, OLD.chat_id); SELECT switchboard_changed(0, NEW.chat_id); END;
CREATE TEMP TRIGGER cache_member_delete AFTER DELETE ON main.members
    BEGIN SELECT switchboard_changed(0, OLD.chat_id); END;
CREATE TEMP TRIGGER cache_user_update AFTER UPDATE ON main.users
    BEGIN SELECT switchboard_changed(1, OLD.id); SELECT switchboard_changed(1, NEW.id); END;
CREATE TEMP TRIGGER cache_user_delete AFTER DELETE ON main.users BEGIN SELECT switchboard_changed(2, OLD.id); END;
CREATE TEMP TRIGGER cache_contact_insert AFTER INSERT ON main.contacts
    BEGIN SELECT switchboard_changed(1, NEW.contact_id); END;
CREATE TEMP TRIGGER cache_contact_update AFTER UPDATE ON main.contacts
    BEGIN SELECT switchboard_changed(1, OLD.contact_id); SELECT switchboard_changed(1, NEW.contact_id); END;
CREATE TEMP TRIGGER cache_contact_delete AFTER DELETE ON main.contacts
    BEGIN SELECT switchboard_changed(1, OLD.contact_id); END;
";

/// `switchboard_store_context_cache_total`, registered once: each send
/// looks up twice.
#[derive(Debug)]
struct Lookups {
    chat: [Counter; 2],
    sender: [Counter; 2],
}

impl Lookups {
    fn register() -> Self {
        let counter = |part: &'static str, outcome: &'static str| metrics::counter!("switchboard_store_context_cache_total", "part" => part, "outcome" => outcome);
        Self {
            chat: [counter("chat", "miss"), counter("chat", "hit")],
            sender: [counter("sender", "miss"), counter("sender", "hit")],
        }
    }
}

#[derive(Debug)]
pub(crate) struct ContextCache {
    chats: DashMap<ChatId, Arc<ChatEntry>>,
    senders: DashMap<UserId, Arc<SenderEntry>>,
    lookups: Lookups,
    /// Member rows held in `chats`, for the bound.
    member_rows: AtomicUsize,
    /// Moves after every commit that dropped entries.
    epoch: AtomicU64,
    /// What the open transaction changed, as its triggers said.
    pending: Mutex<Vec<Change>>,
}

impl ContextCache {
    /// An empty cache; its counters go to the metrics recorder installed now.
    pub(crate) fn new() -> Self {
        Self {
            chats: DashMap::new(),
            senders: DashMap::new(),
            lookups: Lookups::register(),
            member_rows: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Installs the triggers on the writer's connection, reporting to `self`.
    pub(crate) fn watch(self: &Arc<Self>, conn: &Connection) -> Result<(), StoreError> {
        let cache = Arc::clone(self);
        conn.create_scalar_function("switchboard_changed", 2, FunctionFlags::SQLITE_UTF8, move |context| {
            let (kind, id): (i64, i64) = (context.get(0)?, context.get(1)?);
            let change = match kind {
                0 => Change::Chat(id),
                1 => Change::Sender(id),
                _ => Change::Everything,
            };
            if let Ok(mut pending) = cache.pending.lock() {
                pending.push(change);
            }
            Ok(None::<i64>)
        })?;
        conn.execute_batch(TRIGGERS)?;
        Ok(())
    }

    /// Called by the writer after each transaction ends, committed or
    /// not, and before it answers anyone: drops what it changed.
    pub(crate) fn transaction_ended(&self) {
        let changes = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        // First the epoch, so that a read that began before cannot store.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for change in changes {
            match change {
                Change::Chat(id) => self.drop_chat(id),
                Change::Sender(id) => {
                    self.senders.remove(&id);
                }
                Change::Everything => {
                    self.chats.clear();
                    self.senders.clear();
                    self.member_rows.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    fn drop_chat(&self, id: ChatId) {
        if let Some((_, entry)) = self.chats.remove(&id) {
            self.release_rows(entry.members.len());
        }
    }

    /// The count is a bound, not a ledger: a start-over racing an insert
    /// may leave it short, so it never goes below zero.
    fn release_rows(&self, rows: usize) {
        let _ =
            self.member_rows.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| Some(held.saturating_sub(rows)));
    }

    /// Taken before reading what will be stored.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn chat(&self, id: ChatId) -> Option<Arc<ChatEntry>> {
        let entry = self.chats.get(&id).map(|entry| Arc::clone(&entry));
        self.lookups.chat[usize::from(entry.is_some())].increment(1);
        entry
    }

    pub(crate) fn sender(&self, id: UserId) -> Option<Arc<SenderEntry>> {
        let entry = self.senders.get(&id).map(|entry| Arc::clone(&entry));
        self.lookups.sender[usize::from(entry.is_some())].increment(1);
        entry
    }

    /// Keeps `entry`, read since `epoch`, unless a commit changed things since.
    pub(crate) fn put_chat(&self, epoch: u64, entry: &Arc<ChatEntry>) {
        if self.member_rows.load(Ordering::Relaxed) + entry.members.len() > MAX_MEMBER_ROWS {
            self.make_room_for_chats();
        }
        let slot = self.chats.entry(entry.chat.id);
        // The shard's lock is held: a drop after this check waits for it.
        if self.epoch() != epoch {
            return;
        }
        self.member_rows.fetch_add(entry.members.len(), Ordering::Relaxed);
        match slot {
            Entry::Occupied(mut held) => {
                // Another send read the same chat meanwhile.
                let old = held.insert(Arc::clone(entry));
                self.release_rows(old.members.len());
            }
            Entry::Vacant(free) => {
                free.insert(Arc::clone(entry));
            }
        }
    }

    pub(crate) fn put_sender(&self, epoch: u64, id: UserId, entry: &Arc<SenderEntry>) {
        if self.senders.len() >= MAX_SENDERS {
            self.senders.clear();
            metrics::counter!("switchboard_store_context_cache_resets_total", "part" => "sender").increment(1);
        }
        let slot = self.senders.entry(id);
        if self.epoch() == epoch {
            slot.insert(Arc::clone(entry));
        }
    }

    /// Past the bound: start over (the hot chats come back on their next send).
    fn make_room_for_chats(&self) {
        self.chats.clear();
        self.member_rows.store(0, Ordering::Relaxed);
        metrics::counter!("switchboard_store_context_cache_resets_total", "part" => "chat").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatKind;

    fn entry(id: ChatId, members: usize) -> Arc<ChatEntry> {
        let chat = Chat {
            id,
            kind: ChatKind::Group,
            name: String::new(),
            description: String::new(),
            avatar: String::new(),
            created_by: 1,
            is_active: true,
            last_seq: 0,
            members_count: members as u64,
            created_at: 0,
            updated_at: 0,
        };
        let member = |user_id| Member {
            chat_id: id,
            user_id,
            role: crate::model::MemberRole::Member,
            is_pinned: false,
            is_muted: false,
            last_read_seq: 0,
            joined_at: 0,
        };
        let members: Vec<Member> = (1..=members as i64).map(member).collect();
        Arc::new(ChatEntry { chat: Arc::new(chat), members: members.into() })
    }

    #[test]
    fn a_read_from_before_a_commit_is_not_kept_and_a_commit_drops_what_it_changed() {
        let cache = ContextCache::new();
        let before = cache.epoch();
        cache.pending.lock().unwrap().push(Change::Chat(7));
        cache.transaction_ended();
        cache.put_chat(before, &entry(7, 3));
        assert!(cache.chat(7).is_none(), "read before the commit: not kept");

        cache.put_chat(cache.epoch(), &entry(7, 3));
        cache.put_chat(cache.epoch(), &entry(8, 2));
        assert_eq!(cache.member_rows.load(Ordering::Relaxed), 5);
        cache.pending.lock().unwrap().push(Change::Chat(7));
        cache.transaction_ended();
        assert!(cache.chat(7).is_none() && cache.chat(8).is_some(), "only the changed chat is dropped");
        assert_eq!(cache.member_rows.load(Ordering::Relaxed), 2);

        cache.put_sender(cache.epoch(), 1, &Arc::new(SenderEntry { user: None, blocked_by: vec![] }));
        cache.pending.lock().unwrap().push(Change::Everything);
        cache.transaction_ended();
        assert!(cache.chat(8).is_none() && cache.sender(1).is_none(), "everything dropped");
        // A transaction that changed nothing leaves the epoch: reads keep.
        let now = cache.epoch();
        cache.transaction_ended();
        assert_eq!(cache.epoch(), now);
    }
}
