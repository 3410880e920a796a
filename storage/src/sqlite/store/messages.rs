//! [`crate::MessageStore`] for [`SqliteStore`].

use super::{
    AppendError, Appended, ChatId, MESSAGE_COLUMNS, MESSAGE_VISIBLE, Message, MessageId, MessageQuery, MessageStore,
    Millis, NewMessage, OptionalExtension, QueuedAppend, Reaction, SCHEDULED_SELECT, Seq, SqliteStore, StoreError,
    StoreResult, UserId, Written, append, async_trait, latest_visible, message_by_id, named_params, page_sql, params,
    params_from_iter, release, rows, schedule, scheduled_by_id, try_append, unread,
};
use crate::model::{ReceiptKind, ReceiptMark};
use crate::sqlite::writer::Savepoint;

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, message: NewMessage) -> StoreResult<Appended> {
        let ids = self.inner.ids.clone();
        self.write(move |conn| append(conn, &ids, message)).await
    }

    /// One writer job: the messages are appended in order in one
    /// transaction; one refused does not undo the others.
    async fn append_messages(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<Appended>>> {
        let ids = self.inner.ids.clone();
        self.write(move |conn| append_batch(conn, &ids, messages)).await
    }

    /// Queued on the writer: batches run in the order they were queued,
    /// with no savepoint (see [`append_batch`]); `written` runs on the
    /// writer's thread right after the batch's commit.
    async fn queue_messages(&self, messages: Vec<NewMessage>, written: Option<Written>) -> StoreResult<QueuedAppend> {
        let ids = self.inner.ids.clone();
        let work = move |conn: &rusqlite::Connection| append_batch(conn, &ids, messages);
        let queued = self.inner.writer.queue(work, Savepoint::None, written).await?;
        Ok(Box::pin(queued))
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |conn| message_by_id(conn, id)).await
    }

    async fn messages_by_id(&self, ids: &[MessageId]) -> StoreResult<Vec<Message>> {
        let ids = serde_json::to_string(ids).map_err(|error| StoreError::Invalid(error.to_string()))?;
        self.read(move |conn| {
            let sql =
                format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id IN (SELECT value FROM json_each(?1))");
            Ok(conn.prepare_cached(&sql)?.query_map([ids], rows::message)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn messages(&self, chat_id: ChatId, query: MessageQuery) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            let (sql, values) = page_sql(chat_id, &query);
            let named: Vec<(&str, &dyn rusqlite::ToSql)> =
                values.iter().map(|(name, value)| (*name, value as &dyn rusqlite::ToSql)).collect();
            let mut page: Vec<Message> =
                conn.prepare_cached(&sql)?.query_map(&named[..], rows::message)?.collect::<Result<_, _>>()?;
            page.sort_unstable_by_key(|message| message.seq);
            Ok(page)
        })
        .await
    }

    async fn latest_message(&self, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
        self.read(move |conn| latest_visible(conn, chat_id, now)).await
    }

    async fn edit_message(&self, id: MessageId, content: String, at: Millis) -> StoreResult<Option<Message>> {
        self.write(move |conn| {
            let Some(message) = message_by_id(conn, id)? else { return Ok(None) };
            message.check_editable()?;
            conn.prepare_cached("UPDATE messages SET content = ?1, is_edited = 1, updated_at = ?2 WHERE id = ?3")?
                .execute(params![content, at, id])?;
            message_by_id(conn, id)
        })
        .await
    }

    async fn delete_message(&self, id: MessageId, at: Millis) -> StoreResult<Option<Message>> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE messages SET content = '', file_name = '', file_size = 0, file_url = '', thumbnail = '', \
                     is_deleted = 1, is_pinned = 0, deleted_at = COALESCE(deleted_at, ?1), updated_at = ?1 \
                     WHERE id = ?2",
                )?
                .execute(params![at, id])?;
            if changed == 0 {
                return Ok(None);
            }
            conn.prepare_cached("DELETE FROM reactions WHERE message_id = ?1")?.execute([id])?;
            message_by_id(conn, id)
        })
        .await
    }

    async fn set_message_pinned(&self, id: MessageId, pinned: bool, at: Millis) -> StoreResult<Option<Message>> {
        self.write(move |conn| {
            let Some(message) = message_by_id(conn, id)? else { return Ok(None) };
            message.check_pinnable(pinned)?;
            conn.prepare_cached("UPDATE messages SET is_pinned = ?1, updated_at = ?2 WHERE id = ?3")?
                .execute(params![pinned, at, id])?;
            message_by_id(conn, id)
        })
        .await
    }

    async fn pinned_messages(&self, chat_id: ChatId, now: Millis) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = :chat AND m.is_pinned = 1 \
                 AND {MESSAGE_VISIBLE} ORDER BY m.seq"
            );
            let pinned = conn
                .prepare_cached(&sql)?
                .query_map(named_params! {":chat": chat_id, ":now": now}, rows::message)?
                .collect::<Result<_, _>>()?;
            Ok(pinned)
        })
        .await
    }

    async fn schedule_message(&self, message: NewMessage) -> StoreResult<Appended> {
        let ids = self.inner.ids.clone();
        self.write(move |conn| schedule(conn, &ids, &message)).await
    }

    async fn scheduled_message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |conn| scheduled_by_id(conn, id)).await
    }

    async fn due_scheduled(&self, now: Millis, limit: u32) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            let sql = format!("{SCHEDULED_SELECT} WHERE m.send_at <= ?1 ORDER BY m.send_at, m.id LIMIT ?2");
            let due =
                conn.prepare_cached(&sql)?.query_map(params![now, limit], rows::message)?.collect::<Result<_, _>>()?;
            Ok(due)
        })
        .await
    }

    async fn release_scheduled(&self, id: MessageId, now: Millis) -> StoreResult<Option<Message>> {
        self.write(move |conn| release(conn, id, now)).await
    }

    async fn cancel_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>> {
        self.write(move |conn| {
            let held = scheduled_by_id(conn, id)?;
            conn.prepare_cached("DELETE FROM scheduled_messages WHERE id = ?1")?.execute([id])?;
            Ok(held)
        })
        .await
    }

    async fn add_reaction(
        &self,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
        at: Millis,
    ) -> StoreResult<bool> {
        self.write(move |conn| {
            let exists =
                conn.prepare_cached("SELECT 1 FROM messages WHERE id = ?1 AND is_deleted = 0")?.exists([message_id])?;
            if !exists {
                return Err(StoreError::MessageNotFound(message_id));
            }
            let changed = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO reactions (message_id, user_id, emoji, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![message_id, user_id, emoji, at])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn remove_reaction(&self, message_id: MessageId, user_id: UserId, emoji: &str) -> StoreResult<bool> {
        let emoji = emoji.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 AND emoji = ?3")?
                .execute(params![message_id, user_id, emoji])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn reactions(&self, message_ids: &[MessageId]) -> StoreResult<Vec<Reaction>> {
        let ids = message_ids.to_vec();
        self.read(move |conn| {
            let placeholders = vec!["?"; ids.len()].join(", ");
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT message_id, user_id, emoji, created_at FROM reactions WHERE message_id IN ({placeholders}) \
                 ORDER BY message_id, created_at"
            );
            let reactions = conn
                .prepare(&sql)?
                .query_map(params_from_iter(ids.iter()), rows::reaction)?
                .collect::<Result<_, _>>()?;
            Ok(reactions)
        })
        .await
    }

    async fn mark_read(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq> {
        self.write(move |conn| {
            let before: Option<i64> = conn
                .prepare_cached("SELECT last_read_seq FROM members WHERE chat_id = ?1 AND user_id = ?2")?
                .query_row(params![chat_id, user_id], |row| row.get(0))
                .optional()?;
            let Some(before) = before else { return Err(StoreError::NotMember { chat_id, user_id }) };
            let marker: i64 = conn
                .prepare_cached(concat!(
                    "UPDATE members SET last_read_seq = MAX(last_read_seq, MIN(?1, ",
                    last_seq_of!("?2"),
                    ")) WHERE chat_id = ?2 AND user_id = ?3 RETURNING last_read_seq"
                ))?
                .query_row(params![seq as i64, chat_id, user_id], |row| row.get(0))?;
            if marker > before {
                insert_receipt(conn, chat_id, user_id, ReceiptKind::Read, marker, at)?;
            }
            Ok(marker as u64)
        })
        .await
    }

    async fn mark_delivered(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq> {
        self.write(move |conn| {
            let top: Option<i64> = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    last_seq_of!("?1"),
                    " FROM members WHERE chat_id = ?1 AND user_id = ?2"
                ))?
                .query_row(params![chat_id, user_id], |row| row.get(0))
                .optional()?;
            let Some(top) = top else { return Err(StoreError::NotMember { chat_id, user_id }) };
            let before: i64 = conn
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) FROM receipts WHERE chat_id = ?1 AND kind = ?2 AND user_id = ?3",
                )?
                .query_row(params![chat_id, ReceiptKind::Delivered.as_str(), user_id], |row| row.get(0))?;
            let target = (seq as i64).min(top);
            if target <= before {
                return Ok(before as u64);
            }
            insert_receipt(conn, chat_id, user_id, ReceiptKind::Delivered, target, at)?;
            Ok(target as u64)
        })
        .await
    }

    async fn receipts(&self, chat_id: ChatId, from: Seq, to: Seq) -> StoreResult<Vec<ReceiptMark>> {
        self.read(move |conn| {
            // SQLite gives a bare column of a MIN() aggregate from the row holding the minimum.
            let mut statement = conn.prepare_cached(
                "SELECT user_id, kind, seq, at FROM receipts WHERE chat_id = ?1 AND seq BETWEEN ?2 AND ?3 \
                 UNION ALL \
                 SELECT user_id, kind, MIN(seq), at FROM receipts WHERE chat_id = ?1 AND seq > ?3 \
                 GROUP BY kind, user_id",
            )?;
            let rows = statement.query_map(params![chat_id, from as i64, to as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
            })?;
            let mut marks = Vec::new();
            for row in rows {
                let (user_id, kind, seq, at) = row?;
                // Only this store writes the kinds; an unknown one dates nothing.
                let Some(kind) = ReceiptKind::parse(&kind) else { continue };
                marks.push(ReceiptMark { user_id, kind, seq: seq as u64, at });
            }
            Ok(marks)
        })
        .await
    }

    async fn unread_count(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
        self.read(move |conn| unread(conn, chat_id, user_id, now)).await
    }
}

/// Keeps one advance of a receipt marker.
fn insert_receipt(
    conn: &rusqlite::Connection,
    chat_id: ChatId,
    user_id: UserId,
    kind: ReceiptKind,
    seq: i64,
    at: Millis,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO receipts (chat_id, user_id, kind, seq, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![chat_id, user_id, kind.as_str(), seq, at])?;
    Ok(())
}

/// Appends `messages` in order; one refused (no such chat, a constraint of
/// its insert) does not undo the others. A message is refused before
/// anything of it is written (see `append_with_id`), and a failure after a
/// write fails the whole job (`Err`), so no message needs a savepoint (a
/// copy of every page it touches) of its own, nor does the job: the
/// writer rolls back the transaction of a job without one that fails.
fn append_batch(
    conn: &rusqlite::Connection,
    ids: &crate::IdGenerator,
    messages: Vec<NewMessage>,
) -> StoreResult<Vec<StoreResult<Appended>>> {
    let mut outcomes = Vec::with_capacity(messages.len());
    for message in messages {
        match try_append(conn, ids, message) {
            Ok(appended) => outcomes.push(Ok(appended)),
            Err(AppendError::Refused(error)) => outcomes.push(Err(error)),
            Err(AppendError::Broken(error)) => return Err(error),
        }
    }
    Ok(outcomes)
}
