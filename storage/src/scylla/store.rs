//! [`ScyllaStore`]: the [`Store`] over the schema in `migrations/`. The data
//! model and why each table looks the way it does are in
//! `storage/docs/scylla.md`; this file follows it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{try_join, try_join_all, try_join3, try_join4};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
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
    Member, MemberRole, Message, MessageId, MessageKind, MessageQuery, Millis, NewChat, NewFile, NewMessage,
    NewNotification, NewUser, Notification, Reaction, RefreshRotation, RefreshToken, SendContext, Seq, User, UserId,
    UserUpdate,
};
use crate::{IdGenerator, Store, StoreError, StoreResult};

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

/// A new user's settings until they change them (as the SQLite schema's defaults).
const DEFAULT_LANGUAGE: &str = "zh-CN";
const DEFAULT_THEME: &str = "auto";

/// How many chats of a user's list are read at once.
const LIST_CONCURRENCY: usize = 64;

/// The ScyllaDB [`Store`]. Cheap to clone: clones share the session and
/// its prepared statements.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
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

fn private_pair(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.min(b), a.max(b))
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
        })
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
        result: Result<T, scylla::errors::ExecutionError>,
    ) -> StoreResult<T> {
        let name = self.st().name_of(statement);
        metrics::histogram!("switchboard_store_scylla_request_seconds", "statement" => name)
            .record(started.elapsed().as_secs_f64());
        result.map_err(|error| {
            metrics::counter!("switchboard_store_scylla_errors_total", "statement" => name).increment(1);
            tracing::debug!(statement = name, %error, "scylla request failed");
            StoreError::Scylla(format!("{name}: {error}"))
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

    /// The message or scheduled message this sender already sent with this key.
    async fn original_of(&self, sender_id: UserId, client_id: Option<&str>) -> StoreResult<Option<Message>> {
        let Some(client_id) = client_id else { return Ok(None) };
        match self.client_holder(sender_id, client_id).await? {
            Some(id) => self.message_or_scheduled(id).await,
            None => Ok(None),
        }
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

    /// Writes message `id` at `new.seq`, or else right above `top` (the
    /// chat's top seq as last read; `recorded` is its `chat_seqs` floor).
    /// The seq is claimed with `IF NOT EXISTS`: a taken one is never
    /// overwritten. `None` when `claim` is [`IdClaim::Release`] and the
    /// message was released already.
    async fn place(
        &self,
        id: MessageId,
        new: &NewMessage,
        top: Seq,
        recorded: Seq,
        claim: IdClaim,
    ) -> StoreResult<Option<Message>> {
        let chat_id = new.chat_id;
        let expires_at = new.expires_at();
        let mut seq = new.seq.unwrap_or(top + 1);
        if seq == 0 {
            return Err(StoreError::Invalid("seq starts at 1".into()));
        }
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
            let bucket = self.inner.buckets.of(seq) as i64;
            if self.applied(&self.st().insert_message, MessageInsert::of(id, new, bucket, seq, expires_at)).await? {
                break;
            }
            tries += 1;
            if new.seq.is_some() || tries > SEQ_PROBES * SEQ_ROUNDS {
                self.unplace(id, new).await?;
                if new.seq.is_some() {
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

    /// Takes back what [`ScyllaStore::place`] wrote before a seq it could
    /// not have: the id's pointer and the file's row.
    async fn unplace(&self, id: MessageId, new: &NewMessage) -> StoreResult<()> {
        self.run(&self.st().delete_message_id, (id,)).await?;
        if !new.file_url.is_empty() {
            self.run(&self.st().delete_file_message, (new.file_url.as_str(), new.chat_id, id)).await?;
        }
        Ok(())
    }

    /// What an append into `chat_id` needs before it writes: the chat's
    /// turn when the store assigns the seq (`seq` is `None`; held until the
    /// append ends), the top to append above (for a caller's seq, the floor
    /// stands in: it is not used), and the floor. `ChatNotFound` for no chat.
    async fn seq_slot(&self, chat_id: ChatId, seq: Option<Seq>) -> StoreResult<(Option<MutexGuard<'_, ()>>, Seq, Seq)> {
        let turn = match seq {
            None => Some(self.inner.seq_stripes[chat_id.rem_euclid(SEQ_STRIPES as i64) as usize].lock().await),
            Some(_) => None,
        };
        let recorded = self.recorded_seq(chat_id).await?.ok_or(StoreError::ChatNotFound(chat_id))?;
        // A store-assigned seq goes right above the chat's top.
        let top = if seq.is_none() { self.top(chat_id, recorded).await?.0 } else { recorded };
        Ok((turn, top, recorded))
    }

    async fn append(&self, new: NewMessage) -> StoreResult<Appended> {
        if let Some(original) = self.original_of(new.sender_id, new.client_message_id.as_deref()).await? {
            return Ok(Appended::Duplicate(original));
        }
        if new.seq == Some(0) {
            return Err(StoreError::Invalid("seq starts at 1".into()));
        }
        let (_turn, next, recorded) = self.seq_slot(new.chat_id, new.seq).await?;
        // Taken under the chat's turn, so ids rise with store-assigned seqs.
        let id = self.inner.ids.next_id();
        if let Some(client_id) = new.client_message_id.as_deref()
            && let Err(original) = self.claim_client_id(new.sender_id, client_id, id).await?
        {
            return Ok(Appended::Duplicate(original));
        }
        match self.place(id, &new, next, recorded, IdClaim::Fresh).await {
            Ok(Some(message)) => Ok(Appended::New(message)),
            Ok(None) => Err(StoreError::Scylla("a fresh message id was taken".into())),
            // The seq was refused: nothing was written, so a retry may
            // claim the key afresh.
            Err(error @ StoreError::SeqTaken { .. }) => {
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

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        let _open = self.open_guard().await?;
        let id = self.inner.ids.next_id();
        if !self.applied(&self.st().claim_phone, (new.phone.as_str(), id)).await? {
            return Err(StoreError::PhoneTaken);
        }
        if let Some(username) = new.username.as_deref()
            && !self.applied(&self.st().claim_username, (username, id)).await?
        {
            self.applied(&self.st().release_phone, (new.phone.as_str(), id)).await?;
            return Err(StoreError::UsernameTaken);
        }
        let values = (
            id,
            new.phone.as_str(),
            new.username.as_deref(),
            new.nickname.as_str(),
            "",
            "",
            DEFAULT_LANGUAGE,
            DEFAULT_THEME,
            false,
            0_i64,
            new.password_hash.as_deref(),
            new.created_at,
            new.created_at,
        );
        self.run(&self.st().insert_user, values).await?;
        self.load_user(id).await?.ok_or(StoreError::UserNotFound(id))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.load_user(id).await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let _open = self.open_guard().await?;
        Ok(try_join_all(ids.iter().map(|&id| self.load_user(id))).await?.into_iter().flatten().collect())
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_phone, phone).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_username, username).await
    }

    async fn update_user(&self, id: UserId, update: UserUpdate) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        let Some(mut user) = self.load_user(id).await? else { return Ok(None) };
        let renamed = update.username.filter(|name| user.username.as_ref() != Some(name));
        if let Some(name) = renamed.as_deref()
            && !self.applied(&self.st().claim_username, (name, id)).await?
        {
            return Err(StoreError::UsernameTaken);
        }
        let previous_name = if renamed.is_some() { user.username.take() } else { None };
        if renamed.is_some() {
            user.username = renamed;
        }
        let merge = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        merge(&mut user.nickname, update.nickname);
        merge(&mut user.bio, update.bio);
        merge(&mut user.avatar, update.avatar);
        merge(&mut user.language, update.language);
        merge(&mut user.theme, update.theme);
        user.is_disabled = update.is_disabled.unwrap_or(user.is_disabled);
        user.updated_at = update.updated_at;
        let values = (
            user.username.as_deref(),
            user.nickname.as_str(),
            user.bio.as_str(),
            user.avatar.as_str(),
            user.language.as_str(),
            user.theme.as_str(),
            user.is_disabled,
            user.updated_at,
            id,
        );
        self.run(&self.st().update_user, values).await?;
        if let Some(previous) = previous_name {
            self.applied(&self.st().release_username, (previous.as_str(), id)).await?;
        }
        Ok(Some(user))
    }

    async fn set_last_seen(&self, id: UserId, at: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        // Not applied: a later moment is already there (or no such user).
        self.applied(&self.st().set_last_seen, (at, id, at)).await?;
        Ok(())
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        let _open = self.open_guard().await?;
        let row = self.row::<(Option<String>, Option<i64>)>(&self.st().select_password, (id,)).await?;
        Ok(row.and_then(|(hash, created_at)| created_at.and(hash)))
    }

    async fn set_password_hash(&self, id: UserId, hash: String, _at: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        if self.applied(&self.st().set_password, (hash, id)).await? {
            Ok(())
        } else {
            Err(StoreError::UserNotFound(id))
        }
    }

    async fn insert_refresh_token(&self, token: RefreshToken) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        let values =
            (token.token_hash.as_str(), token.user_id, token.family_id.as_str(), token.expires_at, token.created_at);
        try_join(
            self.run(&self.st().insert_refresh, values),
            self.run(&self.st().insert_family_member, (token.family_id.as_str(), token.token_hash.as_str())),
        )
        .await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: String,
        next_expires_at: Millis,
        now: Millis,
    ) -> StoreResult<RefreshRotation> {
        let _open = self.open_guard().await?;
        let Some((_, Some(user_id), Some(family_id), Some(expires_at), created_at, used_at, revoked_at)) =
            self.row::<TokenRow>(&self.st().select_refresh, (presented_hash,)).await?
        else {
            return Ok(RefreshRotation::Unknown);
        };
        let reused = used_at.is_some() || revoked_at.is_some();
        if !reused && expires_at <= now {
            return Ok(RefreshRotation::Expired);
        }
        // Spent only if nobody spent or revoked it first: two rotations of
        // one token cannot both succeed.
        if reused || !self.applied(&self.st().spend_refresh, (now, presented_hash)).await? {
            self.revoke_family(&family_id, now).await?;
            return Ok(RefreshRotation::Reused { user_id, family_id });
        }
        let values = (next_hash.as_str(), user_id, family_id.as_str(), next_expires_at, now);
        try_join(
            self.run(&self.st().insert_refresh, values),
            self.run(&self.st().insert_family_member, (family_id.as_str(), next_hash.as_str())),
        )
        .await?;
        Ok(RefreshRotation::Rotated {
            previous: RefreshToken {
                token_hash: presented_hash.to_owned(),
                user_id,
                family_id,
                expires_at,
                created_at: created_at.unwrap_or(0),
            },
        })
    }

    async fn revoke_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.row::<TokenRow>(&self.st().select_refresh, (token_hash,)).await?.is_none() {
            return Ok(false);
        }
        // Not applied means it was revoked already: the first time stands.
        self.applied(&self.st().revoke_refresh, (now, token_hash)).await?;
        Ok(true)
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: Millis) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.revoke_family(family_id, now).await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Millis, now: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        // The row lives until the token would have expired anyway (a TTL
        // of whole seconds, rounded up; CQL caps a TTL at 20 years).
        let left = expires_at - now;
        if left <= 0 {
            return Ok(());
        }
        let ttl = ((left + 999) / 1000).min(630_720_000) as i32;
        self.run(&self.st().deny_access, (shard_of(jti), jti, expires_at, ttl)).await
    }

    async fn revoked_access_tokens(&self, now: Millis) -> StoreResult<Vec<(String, Millis)>> {
        let _open = self.open_guard().await?;
        let shards = (0..SHARDS).map(|shard| self.rows::<(String, Option<i64>)>(&self.st().denied_access, (shard,)));
        let mut denied: Vec<(String, Millis)> = try_join_all(shards)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|(jti, expires_at)| expires_at.filter(|&at| at > now).map(|at| (jti, at)))
            .collect();
        denied.sort_unstable();
        Ok(denied)
    }

    async fn add_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        nickname: String,
        at: Millis,
    ) -> StoreResult<Contact> {
        let _open = self.open_guard().await?;
        if user_id == contact_id {
            return Err(StoreError::Invalid("a user cannot add themselves as a contact".into()));
        }
        if let Some(missing) = self.missing_user(&[user_id, contact_id]).await? {
            return Err(StoreError::UserNotFound(missing));
        }
        let id = self.inner.ids.next_id();
        let values = (user_id, contact_id, id, nickname.as_str(), false, false, at, at);
        if !self.applied(&self.st().insert_contact, values).await? {
            return Err(StoreError::ContactExists);
        }
        self.run(&self.st().insert_contact_reverse, (contact_id, user_id, false)).await?;
        Ok(Contact {
            id,
            user_id,
            contact_id,
            nickname,
            is_blocked: false,
            is_muted: false,
            created_at: at,
            updated_at: at,
        })
    }

    async fn contacts(&self, user_id: UserId) -> StoreResult<Vec<Contact>> {
        let _open = self.open_guard().await?;
        let rows = self.rows::<ContactRow>(&self.st().select_contacts, (user_id,)).await?;
        let mut contacts: Vec<Contact> = rows.into_iter().filter_map(ContactRow::into_contact).collect();
        contacts.sort_unstable_by_key(|contact| contact.id);
        Ok(contacts)
    }

    async fn contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<Option<Contact>> {
        let _open = self.open_guard().await?;
        self.load_contact(user_id, contact_id).await
    }

    async fn update_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        update: ContactUpdate,
    ) -> StoreResult<Option<Contact>> {
        let _open = self.open_guard().await?;
        let Some(mut contact) = self.load_contact(user_id, contact_id).await? else { return Ok(None) };
        if let Some(nickname) = update.nickname {
            contact.nickname = nickname;
        }
        contact.is_blocked = update.is_blocked.unwrap_or(contact.is_blocked);
        contact.is_muted = update.is_muted.unwrap_or(contact.is_muted);
        contact.updated_at = update.updated_at;
        let values =
            (contact.nickname.as_str(), contact.is_blocked, contact.is_muted, contact.updated_at, user_id, contact_id);
        try_join(
            self.run(&self.st().update_contact, values),
            self.run(&self.st().insert_contact_reverse, (contact_id, user_id, contact.is_blocked)),
        )
        .await?;
        Ok(Some(contact))
    }

    async fn delete_contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let existed = self.load_contact(user_id, contact_id).await?.is_some();
        try_join(
            self.run(&self.st().delete_contact, (user_id, contact_id)),
            self.run(&self.st().delete_contact_reverse, (contact_id, user_id)),
        )
        .await?;
        Ok(existed)
    }

    async fn is_blocked(&self, blocker: UserId, target: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        Ok(self.load_contact(blocker, target).await?.is_some_and(|contact| contact.is_blocked))
    }

    async fn blockers_of(&self, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>> {
        let _open = self.open_guard().await?;
        Ok(blockers_among(self.contact_holders(sender).await?, among))
    }

    async fn presence_audience(&self, user_id: UserId) -> StoreResult<Vec<UserId>> {
        let _open = self.open_guard().await?;
        let (holders, chats) = try_join(self.contact_holders(user_id), self.chats_of(user_id)).await?;
        let mut audience: HashSet<UserId> =
            holders.into_iter().filter(|(_, blocked)| !blocked.unwrap_or(false)).map(|(holder, _)| holder).collect();
        let private = chats.into_iter().filter(|(_, kind)| kind.as_deref() == Some(ChatKind::Private.as_str()));
        for members in try_join_all(private.map(|(chat, _)| self.load_members(chat))).await? {
            audience.extend(members.iter().map(|m| m.user_id).filter(|&peer| peer != user_id));
        }
        Ok(audience.into_iter().collect())
    }

    async fn share_a_chat(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let (mine, theirs) = try_join(self.chats_of(a), self.chats_of(b)).await?;
        let mine: HashSet<ChatId> = mine.into_iter().map(|(chat, _)| chat).collect();
        Ok(theirs.iter().any(|(chat, _)| mine.contains(chat)))
    }

    async fn create_chat(&self, new: NewChat) -> StoreResult<(Chat, bool)> {
        let _open = self.open_guard().await?;
        let mut others: Vec<UserId> = new.members.iter().copied().filter(|&id| id != new.created_by).collect();
        others.sort_unstable();
        others.dedup();
        let pair = match new.kind {
            ChatKind::Private => {
                let [other] = others[..] else {
                    return Err(StoreError::Invalid("a private chat has exactly one other member".into()));
                };
                Some(private_pair(new.created_by, other))
            }
            ChatKind::Group => None,
        };
        if let Some(missing) = self.missing_user(&[new.created_by]).await?.or(self.missing_user(&others).await?) {
            return Err(StoreError::UserNotFound(missing));
        }
        if let Some(pair) = &pair
            && let Some(existing) = self.private_chat_id(pair).await?
        {
            return self.rejoin_private(existing, &new, &others).await;
        }
        let id = self.inner.ids.next_id();
        let values = (
            id,
            new.kind.as_str(),
            new.name.as_str(),
            new.description.as_str(),
            new.avatar.as_str(),
            new.created_by,
            true,
            new.created_at,
            new.created_at,
        );
        // chat_seqs at write time 0, so every real seq (written at its own
        // seq as the time) supersedes it.
        try_join(self.run(&self.st().insert_chat, values), self.run(&self.st().init_last_seq, (id, 0_i64))).await?;
        if let Some(pair) = &pair
            && !self.applied(&self.st().claim_private, (pair.as_str(), id)).await?
        {
            // Another request created the pair's chat first: use theirs.
            self.run(&self.st().delete_chat, (id,)).await?;
            let existing = self.private_chat_id(pair).await?.ok_or(StoreError::ChatNotFound(id))?;
            return self.rejoin_private(existing, &new, &others).await;
        }
        self.join(id, new.kind, new.created_by, MemberRole::Owner, new.created_at).await?;
        for &user in &others {
            self.join(id, new.kind, user, MemberRole::Member, new.created_at).await?;
        }
        let chat = self.load_chat(id).await?.ok_or(StoreError::ChatNotFound(id))?;
        Ok((chat, true))
    }

    async fn chat(&self, id: ChatId) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        self.load_chat(id).await
    }

    async fn private_chat_between(&self, a: UserId, b: UserId) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        match self.private_chat_id(&private_pair(a, b)).await? {
            Some(id) => self.load_chat(id).await,
            None => Ok(None),
        }
    }

    async fn update_chat(&self, id: ChatId, update: ChatUpdate) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        let Some(mut chat) = self.load_chat(id).await? else { return Ok(None) };
        for (field, value) in [
            (&mut chat.name, update.name),
            (&mut chat.description, update.description),
            (&mut chat.avatar, update.avatar),
        ] {
            if let Some(value) = value {
                *field = value;
            }
        }
        chat.updated_at = update.updated_at;
        let values = (chat.name.as_str(), chat.description.as_str(), chat.avatar.as_str(), chat.updated_at, id);
        self.run(&self.st().update_chat, values).await?;
        Ok(Some(chat))
    }

    async fn chats_of_user(
        &self,
        user_id: UserId,
        limit: u32,
        offset: u32,
        now: Millis,
    ) -> StoreResult<Vec<ChatSummary>> {
        let _open = self.open_guard().await?;
        let ids: Vec<ChatId> = self.chats_of(user_id).await?.into_iter().map(|(chat, _)| chat).collect();
        // The order needs every chat and membership; the expensive parts
        // (latest message, unread count) are read for the page only.
        let mut listed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CONCURRENCY) {
            let pairs =
                try_join_all(chunk.iter().map(|&chat| try_join(self.load_chat(chat), self.load_member(chat, user_id))));
            listed.extend(pairs.await?.into_iter().filter_map(|(chat, member)| Some((chat?, member?))));
        }
        listed.sort_unstable_by(|(a, am), (b, bm)| {
            (bm.is_pinned, b.updated_at, b.id).cmp(&(am.is_pinned, a.updated_at, a.id))
        });
        let page = listed.into_iter().skip(offset as usize).take(limit as usize);
        let summaries = page.map(|(chat, member)| async move {
            let (last_message, unread_count) =
                try_join(self.latest(chat.id, now), self.unread(chat.id, user_id, now)).await?;
            Ok::<_, StoreError>(ChatSummary { chat, member, last_message, unread_count })
        });
        try_join_all(summaries).await
    }

    async fn count_chats_of_user(&self, user_id: UserId) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.count(&self.st().chat_ids_of_user, (user_id,)).await
    }

    async fn add_members(
        &self,
        chat_id: ChatId,
        users: &[UserId],
        role: MemberRole,
        at: Millis,
    ) -> StoreResult<Vec<Member>> {
        let _open = self.open_guard().await?;
        let chat = self.load_chat(chat_id).await?.ok_or(StoreError::ChatNotFound(chat_id))?;
        if chat.kind == ChatKind::Private {
            return Err(StoreError::Invalid("a private chat cannot take more members".into()));
        }
        if let Some(missing) = self.missing_user(users).await? {
            return Err(StoreError::UserNotFound(missing));
        }
        let mut added = Vec::new();
        for &user_id in users {
            if self.join(chat_id, chat.kind, user_id, role, at).await? {
                added.push(Member {
                    chat_id,
                    user_id,
                    role,
                    is_pinned: false,
                    is_muted: false,
                    last_read_seq: 0,
                    joined_at: at,
                });
            }
        }
        Ok(added)
    }

    async fn remove_member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let removed = self.applied(&self.st().delete_member, (chat_id, user_id)).await?;
        self.run(&self.st().delete_chat_of_user, (user_id, chat_id)).await?;
        Ok(removed)
    }

    async fn set_member_role(&self, chat_id: ChatId, user_id: UserId, role: MemberRole) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().set_member_role, (role.as_str(), chat_id, user_id)).await
    }

    async fn set_member_flags(
        &self,
        chat_id: ChatId,
        user_id: UserId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
    ) -> StoreResult<Option<Member>> {
        let _open = self.open_guard().await?;
        let Some(mut member) = self.load_member(chat_id, user_id).await? else { return Ok(None) };
        member.is_pinned = is_pinned.unwrap_or(member.is_pinned);
        member.is_muted = is_muted.unwrap_or(member.is_muted);
        let values = (member.is_pinned, member.is_muted, chat_id, user_id);
        Ok(self.applied(&self.st().set_member_flags, values).await?.then_some(member))
    }

    async fn member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
        let _open = self.open_guard().await?;
        self.load_member(chat_id, user_id).await
    }

    async fn members(&self, chat_id: ChatId) -> StoreResult<Vec<Member>> {
        let _open = self.open_guard().await?;
        self.load_members(chat_id).await
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
        Ok(Some(SendContext { chat, members, blockers, sender: user }))
    }

    async fn append_message(&self, message: NewMessage) -> StoreResult<Appended> {
        let _open = self.open_guard().await?;
        self.append(message).await
    }

    /// Each chat's messages in their order, the chats side by side: a
    /// message waits only for those before it in its own chat.
    async fn append_messages(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<Appended>>> {
        let _open = self.open_guard().await?;
        let mut chats: Vec<(ChatId, Vec<(usize, NewMessage)>)> = Vec::new();
        for (at, message) in messages.into_iter().enumerate() {
            match chats.iter_mut().find(|(chat, _)| *chat == message.chat_id) {
                Some((_, queue)) => queue.push((at, message)),
                None => chats.push((message.chat_id, vec![(at, message)])),
            }
        }
        let runs = chats.into_iter().map(|(_, queue)| async move {
            let mut outcomes = Vec::with_capacity(queue.len());
            for (at, message) in queue {
                outcomes.push((at, self.append(message).await));
            }
            outcomes
        });
        let mut outcomes: Vec<(usize, StoreResult<Appended>)> =
            futures_util::future::join_all(runs).await.into_iter().flatten().collect();
        outcomes.sort_unstable_by_key(|(at, _)| *at);
        Ok(outcomes.into_iter().map(|(_, outcome)| outcome).collect())
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.load_message(id).await
    }

    async fn message_by_client_id(&self, sender_id: UserId, client_message_id: &str) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        match self.client_holder(sender_id, client_message_id).await? {
            Some(id) => self.load_message(id).await,
            None => Ok(None),
        }
    }

    async fn messages(&self, chat_id: ChatId, query: MessageQuery) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        let after = match query.after {
            Some(cursor) => match self.cursor_seq(chat_id, cursor).await? {
                Some(seq) => Some(seq),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let before = match query.before {
            Some(cursor) => match self.cursor_seq(chat_id, cursor).await? {
                Some(seq) => Some(seq),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        // Anchored at the newest end unless only `after` is given.
        let ascending = after.is_some() && before.is_none();
        let before = if let Some(seq) = before {
            seq
        } else {
            let Some(top) = self.top_seq(chat_id).await? else { return Ok(Vec::new()) };
            top + 1
        };
        let filter = Filter::of(&query);
        let mut page = self
            .walk(chat_id, after.unwrap_or(0), before, ascending, &filter, query.offset as usize, query.limit as usize)
            .await?;
        page.sort_unstable_by_key(|message| message.seq);
        Ok(page)
    }

    async fn latest_message(&self, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.latest(chat_id, now).await
    }

    async fn edit_message(&self, id: MessageId, content: String, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        if message.is_deleted {
            return Err(StoreError::Invalid("a deleted message cannot be edited".into()));
        }
        let bucket = self.inner.buckets.of(message.seq) as i64;
        let values = (content.as_str(), true, at, message.chat_id, bucket, message.seq as i64);
        self.run(&self.st().edit_message, values).await?;
        message.content = content;
        message.is_edited = true;
        message.updated_at = at;
        Ok(Some(message))
    }

    async fn delete_message(&self, id: MessageId, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        self.erase(&message, at).await?;
        message.deleted_at = Some(message.deleted_at.unwrap_or(at));
        message.updated_at = at;
        message.is_deleted = true;
        message.is_pinned = false;
        message.content.clear();
        message.file_name.clear();
        message.file_size = 0;
        message.file_url.clear();
        message.thumbnail.clear();
        Ok(Some(message))
    }

    async fn set_message_pinned(&self, id: MessageId, pinned: bool, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        if message.is_deleted && pinned {
            return Err(StoreError::Invalid("a deleted message cannot be pinned".into()));
        }
        let (chat, seq) = (message.chat_id, message.seq as i64);
        let bucket = self.inner.buckets.of(message.seq) as i64;
        let pin = async {
            if pinned {
                self.run(&self.st().insert_pin, (chat, seq, id)).await
            } else {
                self.run(&self.st().delete_pin, (chat, seq)).await
            }
        };
        try_join(self.run(&self.st().pin_message, (pinned, at, chat, bucket, seq)), pin).await?;
        message.is_pinned = pinned;
        message.updated_at = at;
        Ok(Some(message))
    }

    async fn pinned_messages(&self, chat_id: ChatId, now: Millis) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        let seqs = self.rows::<(i64,)>(&self.st().select_pins, (chat_id,)).await?;
        let buckets = self.inner.buckets;
        let rows = try_join_all(seqs.iter().map(|&(seq,)| {
            self.row::<MessageRow>(&self.st().select_message, (chat_id, buckets.of(seq as u64) as i64, seq))
        }))
        .await?;
        let mut pinned: Vec<Message> = rows
            .into_iter()
            .flatten()
            .filter_map(MessageRow::into_message)
            .filter(|message| message.is_pinned && visible(message, now))
            .collect();
        pinned.sort_unstable_by_key(|message| message.seq);
        Ok(pinned)
    }

    async fn max_seq(&self, chat_id: ChatId) -> StoreResult<Seq> {
        let _open = self.open_guard().await?;
        Ok(self.top_seq(chat_id).await?.unwrap_or(0))
    }

    async fn schedule_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let _open = self.open_guard().await?;
        let Some(send_at) = new.send_at else {
            return Err(StoreError::Invalid("a scheduled message needs send_at".into()));
        };
        if let Some(original) = self.original_of(new.sender_id, new.client_message_id.as_deref()).await? {
            return Ok(Appended::Duplicate(original));
        }
        if self.recorded_seq(new.chat_id).await?.is_none() {
            return Err(StoreError::ChatNotFound(new.chat_id));
        }
        let id = self.inner.ids.next_id();
        if let Some(client_id) = new.client_message_id.as_deref()
            && let Err(original) = self.claim_client_id(new.sender_id, client_id, id).await?
        {
            return Ok(Appended::Duplicate(original));
        }
        let row = ScheduledRow::new(id, &new, send_at);
        try_join(
            self.run(&self.st().insert_scheduled, row),
            self.run(&self.st().insert_due, (shard_of_id(id), send_at, id, new.chat_id)),
        )
        .await?;
        self.load_scheduled(id).await?.map(Appended::New).ok_or(StoreError::MessageNotFound(id))
    }

    async fn scheduled_message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.load_scheduled(id).await
    }

    async fn due_scheduled(&self, now: Millis, limit: u32) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        self.due(now, limit).await
    }

    async fn release_scheduled(&self, id: MessageId, now: Millis, seq: Option<Seq>) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(held) = self.load_scheduled(id).await? else { return Ok(None) };
        let new = held.clone().release(now, seq);
        let (_turn, next, recorded) = self.seq_slot(new.chat_id, seq).await?;
        let released = self.place(id, &new, next, recorded, IdClaim::Release).await?;
        self.unschedule(&held).await?;
        Ok(released)
    }

    async fn cancel_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(held) = self.load_scheduled(id).await? else { return Ok(None) };
        self.unschedule(&held).await?;
        self.release_client_id(held.sender_id, held.client_message_id.as_deref(), id).await?;
        Ok(Some(held))
    }

    async fn add_reaction(
        &self,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
        at: Millis,
    ) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.load_message(message_id).await?.is_none_or(|message| message.is_deleted) {
            return Err(StoreError::MessageNotFound(message_id));
        }
        self.applied(&self.st().insert_reaction, (message_id, user_id, emoji, at)).await
    }

    async fn remove_reaction(&self, message_id: MessageId, user_id: UserId, emoji: &str) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().delete_reaction, (message_id, user_id, emoji)).await
    }

    async fn reactions(&self, message_ids: &[MessageId]) -> StoreResult<Vec<Reaction>> {
        let _open = self.open_guard().await?;
        let rows =
            try_join_all(message_ids.iter().map(|&id| self.rows::<ReactionRow>(&self.st().select_reactions, (id,))))
                .await?;
        let mut reactions: Vec<Reaction> = rows.into_iter().flatten().map(ReactionRow::into_reaction).collect();
        reactions.sort_by_key(|reaction| (reaction.message_id, reaction.created_at));
        Ok(reactions)
    }

    async fn mark_read(&self, chat_id: ChatId, user_id: UserId, seq: Seq) -> StoreResult<Seq> {
        let _open = self.open_guard().await?;
        for _ in 0..8 {
            let (member, top) = try_join(self.load_member(chat_id, user_id), self.top_seq(chat_id)).await?;
            let Some(member) = member else { return Err(StoreError::NotMember { chat_id, user_id }) };
            let top = top.unwrap_or(0);
            let target = seq.min(top);
            if target <= member.last_read_seq {
                return Ok(member.last_read_seq);
            }
            let values = (target as i64, chat_id, user_id, target as i64);
            if self.applied(&self.st().raise_read_marker, values).await? {
                return Ok(target);
            }
            // Someone moved it meanwhile (or the member left): read again.
        }
        Err(StoreError::Scylla(format!("the read marker of user {user_id} in chat {chat_id} kept moving")))
    }

    async fn unread_count(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.unread(chat_id, user_id, now).await
    }

    async fn insert_file(&self, file: NewFile) -> StoreResult<FileMeta> {
        let _open = self.open_guard().await?;
        self.require_user(file.owner_id).await?;
        let id = self.inner.ids.next_id();
        let values = (
            id,
            file.owner_id,
            file.name.as_str(),
            file.size as i64,
            file.mime.as_str(),
            file.kind.as_str(),
            file.sha256.as_str(),
            file.thumbnail_sha256.as_deref(),
            file.created_at,
        );
        try_join(
            self.run(&self.st().insert_file, values),
            self.run(&self.st().insert_file_hash, (file.sha256.as_str(), id)),
        )
        .await?;
        Ok(FileMeta {
            id,
            owner_id: file.owner_id,
            name: file.name,
            size: file.size,
            mime: file.mime,
            kind: file.kind,
            sha256: file.sha256,
            thumbnail_sha256: file.thumbnail_sha256,
            created_at: file.created_at,
        })
    }

    async fn file(&self, id: FileId) -> StoreResult<Option<FileMeta>> {
        let _open = self.open_guard().await?;
        self.load_file(id).await
    }

    async fn delete_file(&self, id: FileId) -> StoreResult<Option<u64>> {
        let _open = self.open_guard().await?;
        let Some(file) = self.load_file(id).await? else { return Ok(None) };
        try_join(
            self.run(&self.st().delete_file, (id,)),
            self.run(&self.st().delete_file_hash, (file.sha256.as_str(), id)),
        )
        .await?;
        Ok(Some(self.count(&self.st().files_of_hash, (file.sha256.as_str(),)).await?))
    }

    async fn file_visible_to(&self, file_id: FileId, file_url: &str, user_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.load_file(file_id).await?.is_some_and(|file| file.owner_id == user_id) {
            return Ok(true);
        }
        let chats = self.rows::<(i64,)>(&self.st().file_chats, (file_url,)).await?;
        let mut seen = HashSet::new();
        for (chat,) in chats {
            if seen.insert(chat) && self.load_member(chat, user_id).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn insert_notification(&self, new: NewNotification) -> StoreResult<Notification> {
        let _open = self.open_guard().await?;
        self.require_user(new.user_id).await?;
        let id = self.inner.ids.next_id();
        let values = (
            new.user_id,
            id,
            new.kind.as_str(),
            new.content.as_str(),
            false,
            new.related_resource_type.as_deref(),
            new.related_resource_id.as_deref(),
            new.created_at,
        );
        self.run(&self.st().insert_notification, values).await?;
        Ok(Notification {
            id,
            user_id: new.user_id,
            kind: new.kind,
            content: new.content,
            is_read: false,
            related_resource_type: new.related_resource_type,
            related_resource_id: new.related_resource_id,
            created_at: new.created_at,
        })
    }

    async fn notifications(&self, user_id: UserId, limit: u32, offset: u32) -> StoreResult<Vec<Notification>> {
        let _open = self.open_guard().await?;
        let wanted = i32::try_from(u64::from(limit) + u64::from(offset)).unwrap_or(i32::MAX).max(1);
        let rows = self.rows::<NotificationRow>(&self.st().select_notifications, (user_id, wanted)).await?;
        Ok(rows
            .into_iter()
            .filter_map(NotificationRow::into_notification)
            .skip(offset as usize)
            .take(limit as usize)
            .collect())
    }

    async fn mark_notification_read(&self, user_id: UserId, id: i64) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().read_notification, (true, user_id, id)).await
    }

    async fn mark_all_notifications_read(&self, user_id: UserId) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        let unread = self.unread_notification_ids(user_id).await?;
        try_join_all(unread.iter().map(|&id| self.run(&self.st().read_notification_plain, (true, user_id, id))))
            .await?;
        Ok(unread.len() as u64)
    }

    async fn unread_notification_count(&self, user_id: UserId) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        Ok(self.unread_notification_ids(user_id).await?.len() as u64)
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
    async fn rejoin_private(&self, id: ChatId, new: &NewChat, others: &[UserId]) -> StoreResult<(Chat, bool)> {
        for &user in std::iter::once(&new.created_by).chain(others) {
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
