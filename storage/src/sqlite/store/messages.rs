//! [`crate::MessageStore`] for [`SqliteStore`].

use super::{
    Appended, ChatId, MESSAGE_COLUMNS, MESSAGE_VISIBLE, Message, MessageId, MessageQuery, MessageStore, Millis,
    NewMessage, OptionalExtension, Reaction, SCHEDULED_SELECT, Seq, SqliteStore, StoreError, StoreResult, UserId,
    append, async_trait, exec_cached, latest_visible, message_by_id, named_params, page_sql, params, params_from_iter,
    release, rows, schedule, scheduled_by_id, unread,
};

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, message: NewMessage) -> StoreResult<Appended> {
        let ids = self.inner.ids.clone();
        self.write(move |conn| append(conn, &ids, message)).await
    }

    /// One writer job: the messages are appended in order in one
    /// transaction, each in its own savepoint so one failing does not undo
    /// the others.
    async fn append_messages(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<Appended>>> {
        let ids = self.inner.ids.clone();
        self.write(move |conn| {
            let mut outcomes = Vec::with_capacity(messages.len());
            for message in messages {
                exec_cached(conn, "SAVEPOINT message")?;
                let outcome = append(conn, &ids, message);
                if outcome.is_err() {
                    exec_cached(conn, "ROLLBACK TO message")?;
                }
                exec_cached(conn, "RELEASE message")?;
                outcomes.push(outcome);
            }
            Ok(outcomes)
        })
        .await
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        self.read(move |conn| message_by_id(conn, id)).await
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

    async fn mark_read(&self, chat_id: ChatId, user_id: UserId, seq: Seq) -> StoreResult<Seq> {
        self.write(move |conn| {
            let marker: Option<i64> = conn
                .prepare_cached(
                    "UPDATE members SET last_read_seq = MAX(last_read_seq, \
                     MIN(?1, (SELECT last_seq FROM chats WHERE id = ?2))) \
                     WHERE chat_id = ?2 AND user_id = ?3 RETURNING last_read_seq",
                )?
                .query_row(params![seq as i64, chat_id, user_id], |row| row.get(0))
                .optional()?;
            marker.map(|seq| seq as u64).ok_or(StoreError::NotMember { chat_id, user_id })
        })
        .await
    }

    async fn unread_count(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
        self.read(move |conn| unread(conn, chat_id, user_id, now)).await
    }
}
