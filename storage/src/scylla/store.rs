//! [`ScyllaStore`]: the [`Store`] over the schema in `migrations/`. The data
//! model and why each table looks the way it does are in
//! `storage/docs/scylla.md`; this file follows it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{try_join, try_join_all, try_join3, try_join4};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::rows::{
    ChatRow, ContactRow, FileRow, MemberRow, MessageInsert, MessageRow, NotificationRow, ReactionRow, ScheduledRow,
    UserRow,
};
use super::statements::Statements;
use super::{ScyllaConfig, connect, migrate};
use crate::buckets::Buckets;
use crate::model::{
    Appended, Chat, ChatId, ChatKind, ChatSummary, ChatUpdate, Contact, ContactUpdate, Cursor, FileId, FileMeta,
    Joining, Member, MemberRole, Message, MessageId, MessageKind, MessageQuery, Millis, NewChat, NewFile, NewMessage,
    NewNotification, NewUser, Notification, Reaction, RefreshRotation, RefreshToken, SendContext, Seq, User, UserId,
    UserUpdate,
};
use crate::{
    AccountStore, ChatStore, ContactStore, FileStore, IdGenerator, MessageStore, NotificationStore, SeqCounter, Store,
    StoreError, StoreResult,
};

mod accounts;
mod chats;
mod contacts;
mod files;
mod messages;
mod notifications;
mod pairs;

/// Shards of the tables that would otherwise be one hot partition (the
/// access-token denylist, the scheduled-message queue).
const SHARDS: i32 = 16;

/// Stripes of the per-chat lock that orders store-assigned seqs inside
/// one process (a chat always maps to the same stripe). Other processes
/// are kept apart by the seq claim itself; the lock only spares this
/// process's own senders from racing each other for the same seq.
const SEQ_STRIPES: usize = 64;

/// How many seqs a store-assigned append tries above the chat's last seq
/// before it reads the true top of the chat again.
const SEQ_PROBES: u32 = 3;
/// How many times it reads the top again before giving up.
const SEQ_ROUNDS: u32 = 8;

/// How long a chat's member lock outlives a holder that dies holding it
/// (the TTL in the `lock_members` statement).
const MEMBER_LOCK_TTL: Duration = Duration::from_secs(15);
/// A holder that took longer than this to reach its writes writes nothing:
/// its lease may be running out.
const MEMBER_LOCK_WORK: Duration = Duration::from_secs(5);
const _: () =
    assert!(MEMBER_LOCK_WORK.as_secs() * 2 < MEMBER_LOCK_TTL.as_secs(), "a holder writes well inside its lease");
/// How long an addition waits for another one to the same chat.
const MEMBER_LOCK_WAIT: Duration = Duration::from_secs(5);

/// How many seqs an append takes from a [`SeqCounter`] that keeps handing
/// out taken ones (it is raised above the store's top after each) before
/// the append fails.
const SEQ_ATTEMPTS: u32 = 3;

/// How many times a conditional write of a message that went unanswered
/// is sent again at the same seq before the append gives up.
const SEQ_RESENDS: u32 = 4;

/// How long a retry waits for the send that holds its `client_message_id`
/// to land before deciding that send died half-way and taking it over.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// Unread counts are counted message by message (own, deleted and expired
/// ones left out) up to this many seqs past the read marker; beyond it the
/// count is derived from the seqs alone (`last_seq - last_read_seq`).
const UNREAD_SCAN: u64 = 1_000;

/// Rows per page when a history read has to filter (kind, search, expiry)
/// and cannot know how many rows it needs.
const FILTERED_PAGE: i32 = 1_000;

/// How many chats of a user's list are read at once.
const LIST_CONCURRENCY: usize = 64;

/// The ScyllaDB [`Store`]. Cheap to clone: clones share the session and
/// its prepared statements.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
    /// Where seqs come from when several processes write (see [`SeqCounter`]).
    counter: Option<Arc<dyn SeqCounter>>,
}

#[derive(Debug)]
struct Inner {
    session: Session,
    statements: Statements,
    ids: IdGenerator,
    buckets: Buckets,
    /// `true` once shut down. Every operation holds a read guard while it
    /// runs, so `shutdown` (the writer) waits for those in flight and
    /// later ones see `true`.
    closed: RwLock<bool>,
    /// See [`SEQ_STRIPES`].
    seq_stripes: Vec<Mutex<()>>,
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Scylla(error.to_string())
}

/// Whether a failed request met a cluster too slow or too short of replicas
/// (a timeout, an unavailable or overloaded or bootstrapping replica, a
/// connection lost under the request) rather than a fault of the request.
fn unanswered(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::RequestTimeout(_) | ExecutionError::ConnectionPoolError(_) => true,
        ExecutionError::LastAttemptError(attempt) => matches!(
            attempt,
            RequestAttemptError::DbError(
                DbError::WriteTimeout { .. }
                    | DbError::ReadTimeout { .. }
                    | DbError::Unavailable { .. }
                    | DbError::Overloaded
                    | DbError::IsBootstrapping,
                _
            ) | RequestAttemptError::BrokenConnectionError(_)
                | RequestAttemptError::UnableToAllocStreamId
        ),
        _ => false,
    }
}

/// The first column of a lightweight transaction's answer: whether it applied.
fn applied_of(rows: &[Row]) -> StoreResult<bool> {
    match rows.first().and_then(|row| row.columns.first()) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(StoreError::Scylla(format!("a conditional write answered without [applied]: {other:?}"))),
    }
}

fn visible(message: &Message, now: Millis) -> bool {
    message.expires_at.is_none_or(|at| at > now) && message.send_at.is_none_or(|at| at <= now)
}

/// The shard of a text key, the same in every process (FNV-1a).
fn shard_of(key: &str) -> i32 {
    let hash = key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
    (hash % SHARDS as u64) as i32
}

/// The users among `among` whose contact entry (from `contact_holders`)
/// blocks its owner's contact.
fn blockers_among(holders: Vec<(UserId, Option<bool>)>, among: &[UserId]) -> Vec<UserId> {
    holders
        .into_iter()
        .filter(|&(holder, blocked)| blocked == Some(true) && among.contains(&holder))
        .map(|(holder, _)| holder)
        .collect()
}

fn shard_of_id(id: i64) -> i32 {
    id.rem_euclid(i64::from(SHARDS)) as i32
}

/// A `refresh_tokens` row: hash, user, family, expiry, creation, use, revocation.
type TokenRow = (String, Option<i64>, Option<String>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// What a history read keeps besides the seq bounds.
struct Filter {
    now: Millis,
    kind: Option<&'static str>,
    search: Option<String>,
}

impl Filter {
    fn of(query: &MessageQuery) -> Self {
        Self {
            now: query.now,
            kind: query.kind.map(MessageKind::as_str),
            search: query.search.as_deref().filter(|text| !text.is_empty()).map(str::to_lowercase),
        }
    }

    fn narrows(&self) -> bool {
        self.kind.is_some() || self.search.is_some()
    }

    fn keeps(&self, message: &Message) -> bool {
        visible(message, self.now)
            && self.kind.is_none_or(|kind| message.kind.as_str() == kind)
            && self
                .search
                .as_deref()
                .is_none_or(|text| !message.is_deleted && message.content.to_lowercase().contains(text))
    }
}

/// A chat's member lock, held (see [`ScyllaStore::lock_members`]).
struct MemberLock {
    holder: i64,
    taken: Instant,
}

impl MemberLock {
    /// Whether the holder may still write: well inside its lease.
    fn fresh(&self) -> bool {
        self.taken.elapsed() < MEMBER_LOCK_WORK
    }
}

/// Where [`ScyllaStore::place`] writes a message.
#[derive(Clone, Copy)]
enum Slot {
    /// Right above the chat's top as last read, probing upward past
    /// writes that landed since.
    Above(Seq),
    /// Exactly this seq, from the counter: a taken one is refused.
    At(Seq),
}

/// How [`ScyllaStore::place`] claims the message id.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdClaim {
    /// A fresh id: nobody else has it.
    Fresh,
    /// A scheduled message's id: whoever points it at a seq first releases it.
    Release,
}

impl ScyllaStore {
    /// Connects, creates the keyspace and applies the migrations if needed,
    /// and prepares every statement.
    pub async fn open(config: &ScyllaConfig) -> StoreResult<Self> {
        Self::with_session(connect(config).await?, config).await
    }

    /// The store over a session the caller built (an address translator,
    /// TLS, a custom load-balancing policy), for `config`'s keyspace.
    pub async fn with_session(session: Session, config: &ScyllaConfig) -> StoreResult<Self> {
        migrate(&session, config).await?;
        let statements = Box::pin(Statements::prepare(&session)).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                statements,
                ids: IdGenerator::new(config.node_id),
                buckets: Buckets::default(),
                closed: RwLock::new(false),
                seq_stripes: (0..SEQ_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
            counter: None,
        })
    }

    /// The same store taking its seqs from `counter`: for a keyspace that
    /// several processes write to, so they stop racing for one seq.
    #[must_use]
    pub fn with_seq_counter(self, counter: Arc<dyn SeqCounter>) -> Self {
        Self { counter: Some(counter), ..self }
    }

    /// Every statement the store prepares: its name, its CQL, and whether
    /// it is marked idempotent (the driver may retry it after a timeout).
    pub fn statements() -> &'static [(&'static str, &'static str, bool)] {
        Statements::ALL
    }

    /// The underlying session (tests and tools).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    fn st(&self) -> &Statements {
        &self.inner.statements
    }

    async fn open_guard(&self) -> StoreResult<RwLockReadGuard<'_, bool>> {
        let guard = self.inner.closed.read().await;
        if *guard { Err(StoreError::Closed) } else { Ok(guard) }
    }

    /// Records a request's outcome and names the statement in its error.
    fn observe<T>(
        &self,
        statement: &PreparedStatement,
        started: Instant,
        result: Result<T, ExecutionError>,
    ) -> StoreResult<T> {
        let name = self.st().name_of(statement);
        metrics::histogram!("switchboard_store_scylla_request_seconds", "statement" => name)
            .record(started.elapsed().as_secs_f64());
        result.map_err(|error| {
            metrics::counter!("switchboard_store_scylla_errors_total", "statement" => name).increment(1);
            tracing::debug!(statement = name, %error, "scylla request failed");
            if unanswered(&error) {
                StoreError::Unanswered(format!("{name}: {error}"))
            } else {
                StoreError::Scylla(format!("{name}: {error}"))
            }
        })
    }

    async fn run(&self, statement: &PreparedStatement, values: impl SerializeRow) -> StoreResult<()> {
        let started = Instant::now();
        let result = self.inner.session.execute_unpaged(statement, values).await;
        self.observe(statement, started, result)?;
        Ok(())
    }

    async fn rows<R>(&self, statement: &PreparedStatement, values: impl SerializeRow) -> StoreResult<Vec<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        let started = Instant::now();
        let result = self.inner.session.execute_unpaged(statement, values).await;
        let result = self.observe(statement, started, result)?;
        let rows = result.into_rows_result().map_err(failed)?;
        rows.rows::<R>().map_err(failed)?.collect::<Result<Vec<R>, _>>().map_err(failed)
    }

    async fn row<R>(&self, statement: &PreparedStatement, values: impl SerializeRow) -> StoreResult<Option<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        Ok(self.rows(statement, values).await?.into_iter().next())
    }

    /// Runs a lightweight transaction; answers whether it applied.
    async fn applied(&self, statement: &PreparedStatement, values: impl SerializeRow) -> StoreResult<bool> {
        let applied = applied_of(&self.rows::<Row>(statement, values).await?)?;
        if !applied {
            // Claims lost to someone else: duplicates, races for a seq, taken names.
            let name = self.st().name_of(statement);
            metrics::counter!("switchboard_store_scylla_not_applied_total", "statement" => name).increment(1);
        }
        Ok(applied)
    }

    /// How many rows a key-only read answers (a partition's size; the
    /// partitions counted this way stay small).
    async fn count(&self, statement: &PreparedStatement, values: impl SerializeRow) -> StoreResult<u64> {
        Ok(self.rows::<(i64,)>(statement, values).await?.len() as u64)
    }

    // ---- users ----

    async fn load_user(&self, id: UserId) -> StoreResult<Option<User>> {
        Ok(self.row::<UserRow>(&self.st().select_user, (id,)).await?.and_then(UserRow::into_user))
    }

    async fn user_exists(&self, id: UserId) -> StoreResult<bool> {
        Ok(self.load_user(id).await?.is_some())
    }

    async fn require_user(&self, id: UserId) -> StoreResult<()> {
        if self.user_exists(id).await? { Ok(()) } else { Err(StoreError::UserNotFound(id)) }
    }

    /// The first of `ids` that is not a user.
    async fn missing_user(&self, ids: &[UserId]) -> StoreResult<Option<UserId>> {
        let found = try_join_all(ids.iter().map(|&id| self.user_exists(id))).await?;
        Ok(ids.iter().zip(found).find(|(_, exists)| !exists).map(|(&id, _)| id))
    }

    async fn user_by_key(&self, statement: &PreparedStatement, key: &str) -> StoreResult<Option<User>> {
        let Some((Some(id),)) = self.row::<(Option<i64>,)>(statement, (key,)).await? else { return Ok(None) };
        self.load_user(id).await
    }

    // ---- chats and members ----

    /// The floor recorded in `chat_seqs`: a seq at or below the chat's top,
    /// in its newest bucket or an older one. `None` when there is no such chat.
    async fn recorded_seq(&self, chat_id: ChatId) -> StoreResult<Option<Seq>> {
        let row = self.row::<(Option<i64>,)>(&self.st().select_last_seq, (chat_id,)).await?;
        Ok(row.map(|(seq,)| seq.unwrap_or(0) as u64))
    }

    /// The chat's highest stored seq and when that message was written,
    /// found from `floor` upwards: the newest row of each bucket from
    /// `floor`'s, while buckets have rows (one read, two across a boundary).
    /// Derived from the messages themselves, so it is exact and never goes
    /// backwards; `(floor, None)` when no row is at or above the floor.
    async fn top(&self, chat_id: ChatId, floor: Seq) -> StoreResult<(Seq, Option<Millis>)> {
        let buckets = self.inner.buckets;
        let mut top = (floor, None);
        let mut bucket = buckets.of(floor.max(1));
        loop {
            let statement = &self.st().top_of_bucket;
            let row = self.row::<(i64, Option<i64>)>(statement, (chat_id, bucket as i64)).await?;
            let Some((seq, created_at)) = row else { return Ok(top) };
            if seq as u64 >= top.0 {
                top = (seq as u64, created_at);
            }
            bucket += 1;
        }
    }

    /// The chat's highest stored seq; `None` when there is no such chat.
    async fn top_seq(&self, chat_id: ChatId) -> StoreResult<Option<Seq>> {
        match self.recorded_seq(chat_id).await? {
            Some(floor) => Ok(Some(self.top(chat_id, floor).await?.0)),
            None => Ok(None),
        }
    }

    async fn load_chat(&self, id: ChatId) -> StoreResult<Option<Chat>> {
        let (row, floor, members) =
            try_join3(self.chat_row(id), self.recorded_seq(id), self.count(&self.st().member_ids, (id,))).await?;
        self.complete_chat(id, row, floor, members).await
    }

    async fn chat_row(&self, id: ChatId) -> StoreResult<Option<ChatRow>> {
        self.row::<ChatRow>(&self.st().select_chat, (id,)).await
    }

    /// The chat from its row, its seq floor and its member count: the top
    /// seq and latest activity are read from its messages.
    async fn complete_chat(
        &self,
        id: ChatId,
        row: Option<ChatRow>,
        floor: Option<Seq>,
        members_count: u64,
    ) -> StoreResult<Option<Chat>> {
        let Some(row) = row else { return Ok(None) };
        let (last_seq, active_at) = self.top(id, floor.unwrap_or(0)).await?;
        Ok(row.into_chat(last_seq, members_count, active_at))
    }

    async fn load_member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
        let row = self.row::<MemberRow>(&self.st().select_member, (chat_id, user_id)).await?;
        Ok(row.and_then(MemberRow::into_member))
    }

    async fn load_members(&self, chat_id: ChatId) -> StoreResult<Vec<Member>> {
        let rows = self.rows::<MemberRow>(&self.st().select_members, (chat_id,)).await?;
        let mut members: Vec<Member> = rows.into_iter().filter_map(MemberRow::into_member).collect();
        members.sort_unstable_by_key(|member| (member.joined_at, member.user_id));
        Ok(members)
    }

    /// Adds a member unless they are one already; answers whether they are new.
    async fn join(
        &self,
        chat_id: ChatId,
        kind: ChatKind,
        user_id: UserId,
        role: MemberRole,
        at: Millis,
    ) -> StoreResult<bool> {
        let values = (chat_id, user_id, role.as_str(), false, false, 0_i64, at);
        let new = self.applied(&self.st().insert_member, values).await?;
        // Written either way: a join cut short before this line is mended
        // by the next one.
        self.run(&self.st().insert_chat_of_user, (user_id, chat_id, kind.as_str(), at)).await?;
        Ok(new)
    }

    async fn chats_of(&self, user_id: UserId) -> StoreResult<Vec<(ChatId, Option<String>)>> {
        self.rows::<(i64, Option<String>)>(&self.st().chats_of_user, (user_id,)).await
    }

    // ---- messages ----

    /// A stored message by id (not a held scheduled one).
    async fn load_message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let Some((Some(chat_id), Some(seq))) =
            self.row::<(Option<i64>, Option<i64>)>(&self.st().select_message_id, (id,)).await?
        else {
            return Ok(None);
        };
        let bucket = self.inner.buckets.of(seq as u64) as i64;
        let row = self.row::<MessageRow>(&self.st().select_message, (chat_id, bucket, seq)).await?;
        // The pointer is written before the seq is won: it may point at a
        // seq another message holds, or at none yet.
        Ok(row.and_then(MessageRow::into_message).filter(|message| message.id == id))
    }

    async fn load_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>> {
        Ok(self.row::<ScheduledRow>(&self.st().select_scheduled, (id,)).await?.and_then(ScheduledRow::into_message))
    }

    async fn message_or_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>> {
        if let Some(message) = self.load_message(id).await? {
            return Ok(Some(message));
        }
        self.load_scheduled(id).await
    }

    async fn client_holder(&self, sender_id: UserId, client_id: &str) -> StoreResult<Option<MessageId>> {
        let row = self.row::<(Option<i64>,)>(&self.st().select_client_id, (sender_id, client_id)).await?;
        Ok(row.and_then(|(id,)| id))
    }

    /// Claims `(sender, client_id)` for message `id`. `Err(original)` when
    /// another send holds it: its message, once it has landed. A holder that
    /// never lands (its writer died between the claim and the write) is
    /// taken over after [`CLAIM_WAIT`].
    async fn claim_client_id(
        &self,
        sender_id: UserId,
        client_id: &str,
        id: MessageId,
    ) -> StoreResult<Result<(), Message>> {
        for _ in 0..3 {
            if self.applied(&self.st().claim_client_id, (sender_id, client_id, id)).await? {
                return Ok(Ok(()));
            }
            let Some(holder) = self.client_holder(sender_id, client_id).await? else { continue };
            let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
            loop {
                if let Some(original) = self.message_or_scheduled(holder).await? {
                    return Ok(Err(original));
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(CLAIM_POLL).await;
            }
            tracing::warn!(sender_id, client_id, holder, "taking over a client_message_id whose send never landed");
            self.applied(&self.st().release_client_id, (sender_id, client_id, holder)).await?;
        }
        Err(StoreError::Scylla(format!("client_message_id {client_id:?} of user {sender_id} keeps changing hands")))
    }

    async fn release_client_id(&self, sender_id: UserId, client_id: Option<&str>, id: MessageId) -> StoreResult<()> {
        if let Some(client_id) = client_id {
            self.applied(&self.st().release_client_id, (sender_id, client_id, id)).await?;
        }
        Ok(())
    }

    /// Writes message `id` at `slot`; `recorded` is the chat's
    /// `chat_seqs` floor. The seq is claimed with `IF NOT EXISTS`: a taken
    /// one is never overwritten. `None` when `claim` is
    /// [`IdClaim::Release`] and the message was released already.
    async fn place(
        &self,
        id: MessageId,
        new: &NewMessage,
        slot: Slot,
        recorded: Seq,
        claim: IdClaim,
    ) -> StoreResult<Option<Message>> {
        let chat_id = new.chat_id;
        let expires_at = new.expires_at();
        let (mut seq, exact) = match slot {
            Slot::Above(top) => (top + 1, false),
            Slot::At(seq) => (seq, true),
        };
        // Everything that finds the message is written before the message:
        // once it is in history, it can be found by id and its file read by
        // the chat's members, even if this process dies right after.
        // A fresh release claim is the pointer's first write already.
        let mut pointed = false;
        if claim == IdClaim::Release {
            pointed = self.applied(&self.st().claim_message_id, (id, chat_id, seq as i64)).await?;
            if !pointed && self.load_message(id).await?.is_some() {
                return Ok(None);
            }
        }
        if !new.file_url.is_empty() {
            self.run(&self.st().insert_file_message, (new.file_url.as_str(), chat_id, id)).await?;
        }
        let mut tries = 0;
        loop {
            if !pointed {
                self.run(&self.st().point_message_id, (id, chat_id, seq as i64)).await?;
            }
            pointed = false;
            if self.claim_seq(id, new, seq, expires_at).await? {
                break;
            }
            tries += 1;
            if exact || tries > SEQ_PROBES * SEQ_ROUNDS {
                self.unplace(id, new).await?;
                if exact {
                    return Err(StoreError::SeqTaken { chat_id, seq });
                }
                return Err(StoreError::Scylla(format!("no free seq found in chat {chat_id} after {tries} tries")));
            }
            // The top read trailed the chat: writes elsewhere landed after
            // it was read. Try just above, then read the top again.
            seq = if tries % SEQ_PROBES == 0 { self.top(chat_id, seq).await?.0 + 1 } else { seq + 1 };
        }
        // The floor moves once per bucket, so `top` stays one or two reads.
        // Only a shortcut: the message is stored whatever happens here.
        let buckets = self.inner.buckets;
        if buckets.of(seq) > buckets.of(recorded.max(1)) {
            let floor = *buckets.seqs(buckets.of(seq)).start() as i64;
            if let Err(error) = self.applied(&self.st().raise_last_seq, (floor, chat_id, floor)).await {
                tracing::warn!(chat_id, floor, %error, "could not raise the chat's seq floor; reads walk up from the old one");
            }
        }
        Ok(Some(new.clone().into_stored(id, seq)))
    }

    /// Writes message `id` at `seq` if the seq is free; answers whether it
    /// is the message's now. A conditional write that goes unanswered (a
    /// timeout, often Paxos contention on the chat's partition) may still
    /// have been applied: it is sent again at the same seq, and a seq found
    /// taken by this very id means the first one landed. So a seq is never
    /// left as a hole because an answer was lost.
    async fn claim_seq(
        &self,
        id: MessageId,
        new: &NewMessage,
        seq: Seq,
        expires_at: Option<Millis>,
    ) -> StoreResult<bool> {
        let bucket = self.inner.buckets.of(seq) as i64;
        let mut unanswered = 0;
        loop {
            let insert = MessageInsert::of(id, new, bucket, seq, expires_at);
            match self.applied(&self.st().insert_message, insert).await {
                Ok(true) => return Ok(true),
                Ok(false) if unanswered == 0 => return Ok(false),
                Ok(false) => {
                    let row =
                        self.row::<MessageRow>(&self.st().select_message, (new.chat_id, bucket, seq as i64)).await?;
                    return Ok(row.and_then(MessageRow::into_message).is_some_and(|message| message.id == id));
                }
                Err(StoreError::Unanswered(detail)) if unanswered < SEQ_RESENDS => {
                    unanswered += 1;
                    metrics::counter!("switchboard_store_scylla_resent_total").increment(1);
                    tracing::debug!(chat_id = new.chat_id, seq, %detail, "a seq claim went unanswered; sending it again");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Takes back what [`ScyllaStore::place`] wrote before a seq it could
    /// not have: the id's pointer and the file's row.
    async fn unplace(&self, id: MessageId, new: &NewMessage) -> StoreResult<()> {
        self.run(&self.st().delete_message_id, (id,)).await?;
        if !new.file_url.is_empty() {
            self.run(&self.st().delete_file_message, (new.file_url.as_str(), new.chat_id, id)).await?;
        }
        Ok(())
    }

    /// The chat's turn: held from before its top is read until the append
    /// ends, so this process's own senders never race each other for a
    /// seq. Not taken with a counter, which hands every sender its own.
    async fn turn(&self, chat_id: ChatId) -> Option<MutexGuard<'_, ()>> {
        if self.counter.is_some() {
            return None;
        }
        Some(self.inner.seq_stripes[chat_id.rem_euclid(SEQ_STRIPES as i64) as usize].lock().await)
    }

    /// Places `id` at its chat's next seq: right above the top (read under
    /// the chat's turn, which the caller holds) or, with a counter, at the
    /// seq the counter hands out. A counter with nothing for the chat is
    /// seeded from the store's top; a counter seq found taken (the counter
    /// was lost and fell behind) raises the counter above the top and takes
    /// the next, up to [`SEQ_ATTEMPTS`] times.
    async fn place_next(
        &self,
        id: MessageId,
        new: &NewMessage,
        recorded: Seq,
        claim: IdClaim,
    ) -> StoreResult<Option<Message>> {
        let chat_id = new.chat_id;
        let Some(counter) = &self.counter else {
            let top = self.top(chat_id, recorded).await?.0;
            return self.place(id, new, Slot::Above(top), recorded, claim).await;
        };
        let mut seq = if let Some(seq) = counter.take(chat_id, 1).await? {
            seq
        } else {
            metrics::counter!("switchboard_sequencer_seeded_total").increment(1);
            tracing::debug!(chat_id, "the seq counter has nothing for this chat; seeding it from the store");
            counter.seed(chat_id, self.top(chat_id, recorded).await?.0, 1).await?
        };
        let mut attempt = 1;
        loop {
            match self.place(id, new, Slot::At(seq), recorded, claim).await {
                Err(StoreError::SeqTaken { seq: taken, .. }) if attempt < SEQ_ATTEMPTS => {
                    attempt += 1;
                    metrics::counter!("switchboard_sequencer_repaired_total").increment(1);
                    tracing::warn!(
                        chat_id,
                        taken,
                        "seq from the counter already used; raising the counter above the top"
                    );
                    seq = counter.seed(chat_id, self.top(chat_id, recorded).await?.0, 1).await?;
                }
                outcome => return outcome,
            }
        }
    }

    async fn append(&self, new: NewMessage) -> StoreResult<Appended> {
        let recorded = self.recorded_seq(new.chat_id).await?.ok_or(StoreError::ChatNotFound(new.chat_id))?;
        let turn = self.turn(new.chat_id).await;
        // Taken under the chat's turn, so ids rise with store-assigned seqs.
        let id = self.inner.ids.next_id();
        // The one duplicate check: the claim answers the original if the
        // key is held, before any seq is taken.
        if let Some(client_id) = new.client_message_id.as_deref()
            && let Err(original) = self.claim_client_id(new.sender_id, client_id, id).await?
        {
            return Ok(Appended::Duplicate(original));
        }
        let placed = self.place_next(id, &new, recorded, IdClaim::Fresh).await;
        drop(turn);
        match placed {
            Ok(Some(message)) => Ok(Appended::New(message)),
            Ok(None) => Err(StoreError::Scylla("a fresh message id was taken".into())),
            // No seq was won: nothing was written, so a retry may claim
            // the key afresh.
            Err(error @ (StoreError::SeqTaken { .. } | StoreError::Unavailable(_))) => {
                self.release_client_id(new.sender_id, new.client_message_id.as_deref(), id).await?;
                Err(error)
            }
            // Anything else (a timeout above all) may have written the
            // message: the claim stays, so a retry finds the message if it
            // landed, or takes the claim over once it is clear it did not.
            Err(error) => Err(error),
        }
    }

    /// Reads rows of `chat_id` with seq strictly between `after` and
    /// `before`, newest first (`ascending == false`) or oldest first, one
    /// bucket at a time, keeping those `filter` keeps; skips `offset` kept
    /// rows and stops at `limit`.
    #[allow(clippy::too_many_arguments, reason = "one history walk; the bounds read better named than bundled")]
    async fn walk(
        &self,
        chat_id: ChatId,
        after: Seq,
        before: Seq,
        ascending: bool,
        filter: &Filter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let mut kept = Vec::new();
        if limit == 0 || before <= after + 1 {
            return Ok(kept);
        }
        let buckets = self.inner.buckets;
        let wanted = offset + limit;
        let page_size = if filter.narrows() { FILTERED_PAGE } else { (wanted as i32).clamp(16, FILTERED_PAGE) };
        let mut statement = if ascending { self.st().page_up.clone() } else { self.st().page_down.clone() };
        statement.set_page_size(page_size);
        let order: Vec<u64> = if ascending {
            buckets.ascending(after, before - 1).collect()
        } else {
            buckets.descending(before).take_while(|&bucket| *buckets.seqs(bucket).end() > after).collect()
        };
        let mut skipped = 0;
        for bucket in order {
            let mut paging = PagingState::start();
            loop {
                let values = (chat_id, bucket as i64, after as i64, before.min(i64::MAX as u64) as i64);
                let started = Instant::now();
                let page = self.inner.session.execute_single_page(&statement, values, paging).await;
                let (result, next) = self.observe(&statement, started, page)?;
                let rows = result.into_rows_result().map_err(failed)?;
                for row in rows.rows::<MessageRow>().map_err(failed)? {
                    let Some(message) = row.map_err(failed)?.into_message() else { continue };
                    if !filter.keeps(&message) {
                        continue;
                    }
                    if skipped < offset {
                        skipped += 1;
                        continue;
                    }
                    kept.push(message);
                    if kept.len() == limit {
                        return Ok(kept);
                    }
                }
                match next.into_paging_control_flow() {
                    std::ops::ControlFlow::Continue(state) => paging = state,
                    std::ops::ControlFlow::Break(()) => break,
                }
            }
        }
        Ok(kept)
    }

    /// The seq a cursor stands for in `chat_id`; `None` for an id that is
    /// not a message of that chat.
    async fn cursor_seq(&self, chat_id: ChatId, cursor: Cursor) -> StoreResult<Option<Seq>> {
        match cursor {
            Cursor::Seq(seq) => Ok(Some(seq)),
            Cursor::Id(id) => Ok(self.load_message(id).await?.filter(|m| m.chat_id == chat_id).map(|m| m.seq)),
        }
    }

    async fn latest(&self, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
        let Some(top) = self.top_seq(chat_id).await? else { return Ok(None) };
        let filter = Filter { now, kind: None, search: None };
        Ok(self.walk(chat_id, 0, top + 1, false, &filter, 0, 1).await?.pop())
    }

    async fn unread(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
        let (member, top) = try_join(self.load_member(chat_id, user_id), self.top_seq(chat_id)).await?;
        let (Some(member), Some(top)) = (member, top) else { return Ok(0) };
        let marker = member.last_read_seq;
        if top <= marker {
            return Ok(0);
        }
        if top - marker > UNREAD_SCAN {
            return Ok(top - marker);
        }
        let filter = Filter { now, kind: None, search: None };
        let after = self.walk(chat_id, marker, top + 1, true, &filter, 0, UNREAD_SCAN as usize).await?;
        Ok(after.iter().filter(|m| m.sender_id != user_id && !m.is_deleted).count() as u64)
    }

    async fn erase(&self, message: &Message, at: Millis) -> StoreResult<()> {
        let bucket = self.inner.buckets.of(message.seq) as i64;
        let (chat, seq) = (message.chat_id, message.seq as i64);
        let deleted_at = message.deleted_at.unwrap_or(at);
        let erased = ("", "", 0_i64, "", "", true, false, deleted_at, at, chat, bucket, seq);
        let erase = self.run(&self.st().erase_message, erased);
        let reactions = self.run(&self.st().delete_reactions, (message.id,));
        let pin = self.run(&self.st().delete_pin, (chat, seq));
        let file = async {
            if message.file_url.is_empty() {
                Ok(())
            } else {
                self.run(&self.st().delete_file_message, (message.file_url.as_str(), chat, message.id)).await
            }
        };
        try_join4(erase, reactions, pin, file).await?;
        Ok(())
    }

    async fn due(&self, now: Millis, limit: u32) -> StoreResult<Vec<Message>> {
        let shards = (0..SHARDS).map(|shard| {
            self.rows::<(i64, i64)>(&self.st().select_due, (shard, now, i32::try_from(limit).unwrap_or(i32::MAX)))
        });
        let mut due: Vec<(i64, i64)> = try_join_all(shards).await?.into_iter().flatten().collect();
        due.sort_unstable();
        due.truncate(limit as usize);
        let held = try_join_all(due.iter().map(|&(_, id)| self.load_scheduled(id))).await?;
        Ok(held.into_iter().flatten().collect())
    }

    async fn unschedule(&self, held: &Message) -> StoreResult<()> {
        let send_at = held.send_at.unwrap_or(0);
        try_join(
            self.run(&self.st().delete_scheduled, (held.id,)),
            self.run(&self.st().delete_due, (shard_of_id(held.id), send_at, held.id)),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn health(&self) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        self.run(&self.st().health, (0_i64,)).await
    }

    async fn shutdown(&self) -> StoreResult<()> {
        // Waits for every operation in flight (they hold read guards).
        *self.inner.closed.write().await = true;
        Ok(())
    }

    /// The four reads at once instead of one after another.
    async fn send_context(&self, chat_id: ChatId, sender: UserId) -> StoreResult<Option<SendContext>> {
        let _open = self.open_guard().await?;
        // The members are read once: their count is the chat's too.
        let ((row, floor), members, holders, user) = Box::pin(try_join4(
            try_join(self.chat_row(chat_id), self.recorded_seq(chat_id)),
            self.load_members(chat_id),
            self.contact_holders(sender),
            self.load_user(sender),
        ))
        .await?;
        let Some(chat) = self.complete_chat(chat_id, row, floor, members.len() as u64).await? else {
            return Ok(None);
        };
        let others: Vec<UserId> = members.iter().map(|m| m.user_id).filter(|&user| user != sender).collect();
        let blockers = blockers_among(holders, &others);
        Ok(Some(SendContext {
            chat: chat.into(),
            members: members.into(),
            blockers,
            sender: user.map(std::sync::Arc::new),
        }))
    }
}

impl ScyllaStore {
    async fn load_contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<Option<Contact>> {
        let row = self.row::<ContactRow>(&self.st().select_contact, (user_id, contact_id)).await?;
        Ok(row.and_then(ContactRow::into_contact))
    }

    /// Who has `user` as a contact, and whether they block them.
    async fn contact_holders(&self, user: UserId) -> StoreResult<Vec<(UserId, Option<bool>)>> {
        self.rows::<(i64, Option<bool>)>(&self.st().contact_holders, (user,)).await
    }

    async fn revoke_family(&self, family_id: &str, now: Millis) -> StoreResult<u64> {
        let tokens = self.rows::<(String,)>(&self.st().family_tokens, (family_id,)).await?;
        let revoked =
            try_join_all(tokens.iter().map(|(hash,)| self.applied(&self.st().revoke_refresh, (now, hash.as_str()))))
                .await?;
        Ok(revoked.into_iter().filter(|&applied| applied).count() as u64)
    }

    async fn private_chat_id(&self, pair: &str) -> StoreResult<Option<ChatId>> {
        Ok(self.row::<(Option<i64>,)>(&self.st().select_private, (pair,)).await?.and_then(|(id,)| id))
    }

    /// Either side may have left the pair's chat: asking for it again
    /// rejoins them.
    /// Whether `fresh` (users not yet members) may join a chat of
    /// `members` members on `joining`'s terms (see the embedded store's
    /// `admit`): read, then decided, not one write.
    async fn admit(&self, joining: Joining, members: usize, fresh: &[UserId]) -> StoreResult<()> {
        if let Some(by) = joining.by {
            let asked: Vec<UserId> = fresh.iter().copied().filter(|&user| user != by).collect();
            let (holders, users) =
                try_join(self.contact_holders(by), try_join_all(asked.iter().map(|&user| self.load_user(user))))
                    .await?;
            let holders: HashMap<UserId, Option<bool>> = holders.into_iter().collect();
            for (&user, row) in asked.iter().zip(users) {
                let setting = row.map(|user| user.group_invites).unwrap_or_default();
                let contact = holders.get(&user).map(|blocked| blocked.unwrap_or(false));
                if !setting.accepts(contact) {
                    return Err(StoreError::NotAccepted(user));
                }
            }
        }
        match joining.max_members {
            Some(max) if members + fresh.len() > max as usize => Err(StoreError::ChatFull(max)),
            _ => Ok(()),
        }
    }

    /// Takes `chat_id`'s member lock, waiting up to [`MEMBER_LOCK_WAIT`]
    /// for another holder. The lock is a lease of [`MEMBER_LOCK_TTL`];
    /// release it with [`Self::unlock_members`].
    async fn lock_members(&self, chat_id: ChatId) -> StoreResult<MemberLock> {
        let holder = self.inner.ids.next_id();
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match self.applied(&self.st().lock_members, (chat_id, holder)).await {
                Ok(true) => return Ok(MemberLock { holder, taken: Instant::now() }),
                Ok(false) => {}
                Err(error) => {
                    // It may have been taken all the same.
                    self.unlock_members(chat_id, holder).await;
                    return Err(error);
                }
            }
            if started.elapsed() >= MEMBER_LOCK_WAIT {
                metrics::counter!("switchboard_store_scylla_member_lock_timeouts_total").increment(1);
                return Err(StoreError::Unavailable(format!("chat {chat_id}'s members are being changed")));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Releases a lock taken by [`Self::lock_members`] (the holder's own
    /// only); one not released expires on its own.
    async fn unlock_members(&self, chat_id: ChatId, holder: i64) {
        if let Err(error) = self.applied(&self.st().unlock_members, (chat_id, holder)).await {
            tracing::warn!(chat_id, %error, "a chat's member lock was not released; it expires by itself");
        }
    }

    async fn rejoin_private(&self, id: ChatId, new: &NewChat, others: &[UserId]) -> StoreResult<(Chat, bool)> {
        // The creator comes back; the other side, if they left, only when
        // `rejoin_others` says so.
        for &user in std::iter::once(&new.created_by).chain(others.iter().filter(|_| new.rejoin_others)) {
            self.join(id, ChatKind::Private, user, MemberRole::Member, new.created_at).await?;
        }
        let chat = self.load_chat(id).await?.ok_or(StoreError::ChatNotFound(id))?;
        Ok((chat, false))
    }

    async fn load_file(&self, id: FileId) -> StoreResult<Option<FileMeta>> {
        Ok(self.row::<FileRow>(&self.st().select_file, (id,)).await?.and_then(FileRow::into_file))
    }

    async fn unread_notification_ids(&self, user_id: UserId) -> StoreResult<Vec<i64>> {
        let rows = self.rows::<(i64, Option<bool>)>(&self.st().unread_notifications, (user_id,)).await?;
        Ok(rows.into_iter().filter(|(_, read)| !read.unwrap_or(false)).map(|(id, _)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{SHARDS, shard_of, shard_of_id};

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("jti-1"), shard_of("jti-1"));
        let spread: std::collections::HashSet<i32> = (0..1_000).map(|n| shard_of(&format!("jti-{n}"))).collect();
        assert_eq!(spread.len(), SHARDS as usize, "every shard is used");
        assert!((0..SHARDS).contains(&shard_of_id(-7)));
    }
}
