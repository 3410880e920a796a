//! [`Store`] for [`SqliteStore`]: every write goes through the writer
//! thread's group commit, every read through the read pool.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, named_params, params, params_from_iter};

use super::SqliteStore;
use super::rows::{
    self, CHAT_SELECT, CHAT_WIDTH, CONTACT_COLUMNS, FILE_COLUMNS, MEMBER_COLUMNS, MESSAGE_COLUMNS, MESSAGE_VISIBLE,
    NOTIFICATION_COLUMNS, USER_COLUMNS,
};
use super::writer::exec_cached;
use crate::model::{
    Appended, Chat, ChatId, ChatKind, ChatSummary, ChatUpdate, Contact, ContactUpdate, Cursor, FileId, FileMeta,
    Member, MemberRole, Message, MessageId, MessageQuery, Millis, NewChat, NewFile, NewMessage, NewNotification,
    NewUser, Notification, Reaction, RefreshRotation, RefreshToken, SendContext, Seq, User, UserId, UserUpdate,
};
use crate::{Store, StoreError, StoreResult};

/// The message of a violated constraint, if that is what `error` is.
fn constraint_message(error: &rusqlite::Error) -> Option<&str> {
    match error {
        rusqlite::Error::SqliteFailure(failure, message)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(message.as_deref().unwrap_or(""))
        }
        _ => None,
    }
}

/// Search shorter than a trigram cannot use the FTS index.
const TRIGRAM: usize = 3;

fn user_by(conn: &Connection, column: &str, value: &dyn rusqlite::ToSql) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([value], rows::user).optional()?)
}

fn missing_user(conn: &Connection, ids: &[UserId]) -> StoreResult<Option<UserId>> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
    for &id in ids {
        if !exists.exists([id])? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn chat_by_id(conn: &Connection, id: ChatId) -> StoreResult<Option<Chat>> {
    let sql = format!("{CHAT_SELECT} WHERE c.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::chat).optional()?)
}

fn members_of(conn: &Connection, chat_id: ChatId) -> StoreResult<Vec<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ?1 ORDER BY joined_at, user_id");
    let members = conn.prepare_cached(&sql)?.query_map([chat_id], rows::member)?.collect::<Result<_, _>>()?;
    Ok(members)
}

/// The users among `among` who have blocked `sender`.
fn blockers_among(conn: &Connection, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>> {
    let blockers: Vec<UserId> = conn
        .prepare_cached("SELECT user_id FROM contacts WHERE contact_id = ?1 AND is_blocked = 1")?
        .query_map([sender], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(blockers.into_iter().filter(|user| among.contains(user)).collect())
}

fn member_of(conn: &Connection, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ?1 AND user_id = ?2");
    Ok(conn.prepare_cached(&sql)?.query_row([chat_id, user_id], rows::member).optional()?)
}

fn message_by_id(conn: &Connection, id: MessageId) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::message).optional()?)
}

fn message_by_client(conn: &Connection, sender_id: UserId, client_message_id: &str) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.sender_id = ?1 AND m.client_message_id = ?2");
    Ok(conn.prepare_cached(&sql)?.query_row(params![sender_id, client_message_id], rows::message).optional()?)
}

fn latest_visible(conn: &Connection, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = :chat AND {MESSAGE_VISIBLE} \
         ORDER BY m.seq DESC LIMIT 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(named_params! {":chat": chat_id, ":now": now}, rows::message).optional()?)
}

fn unread(conn: &Connection, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
    let sql = format!(
        "SELECT COUNT(*) FROM messages m WHERE m.chat_id = :chat AND m.seq > \
         (SELECT last_read_seq FROM members WHERE chat_id = :chat AND user_id = :user) \
         AND m.sender_id != :user AND m.is_deleted = 0 AND {MESSAGE_VISIBLE}"
    );
    let count: i64 = conn
        .prepare_cached(&sql)?
        .query_row(named_params! {":chat": chat_id, ":user": user_id, ":now": now}, |row| row.get(0))?;
    Ok(count as u64)
}

fn insert_member(
    conn: &Connection,
    chat_id: ChatId,
    user_id: UserId,
    role: MemberRole,
    at: Millis,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("INSERT OR IGNORE INTO members (chat_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![chat_id, user_id, role.as_str(), at])?;
    Ok(changed == 1)
}

/// The SQL for a page of history, and its parameters.
fn page_sql(chat_id: ChatId, query: &MessageQuery) -> (String, Vec<(&'static str, Value)>) {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = :chat AND {MESSAGE_VISIBLE}");
    let mut values: Vec<(&'static str, Value)> = vec![(":chat", chat_id.into()), (":now", query.now.into())];
    let cursor = |name: &'static str, cursor: Cursor, values: &mut Vec<(&'static str, Value)>| match cursor {
        Cursor::Seq(seq) => {
            values.push((name, (seq as i64).into()));
            name.to_owned()
        }
        Cursor::Id(id) => {
            values.push((name, id.into()));
            format!("(SELECT seq FROM messages WHERE id = {name} AND chat_id = :chat)")
        }
    };
    if let Some(before) = query.before {
        let bound = cursor(":before", before, &mut values);
        sql.push_str(" AND m.seq < ");
        sql.push_str(&bound);
    }
    if let Some(after) = query.after {
        let bound = cursor(":after", after, &mut values);
        sql.push_str(" AND m.seq > ");
        sql.push_str(&bound);
    }
    if let Some(kind) = query.kind {
        sql.push_str(" AND m.kind = :kind");
        values.push((":kind", kind.as_str().to_owned().into()));
    }
    if let Some(search) = query.search.as_deref().filter(|text| !text.is_empty()) {
        sql.push_str(" AND m.is_deleted = 0");
        let escaped = search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        values.push((":pattern", format!("%{escaped}%").into()));
        if search.chars().count() >= TRIGRAM {
            // A quoted FTS5 string is a phrase: the trigram tokenizer makes
            // that a substring match, CJK included. Rows not indexed yet
            // are matched by LIKE.
            sql.push_str(
                " AND (m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :search) \
                 OR (m.id IN (SELECT message_id FROM fts_pending) AND m.content LIKE :pattern ESCAPE '\\'))",
            );
            values.push((":search", format!("\"{}\"", search.replace('"', "\"\"")).into()));
        } else {
            sql.push_str(" AND m.content LIKE :pattern ESCAPE '\\'");
        }
    }
    // Anchored at the newest end unless only `after` is given.
    let ascending = query.after.is_some() && query.before.is_none();
    sql.push_str(if ascending { " ORDER BY m.seq ASC" } else { " ORDER BY m.seq DESC" });
    sql.push_str(" LIMIT :limit OFFSET :offset");
    values.push((":limit", i64::from(query.limit).into()));
    values.push((":offset", i64::from(query.offset).into()));
    (sql, values)
}

/// Selects scheduled messages in the shape of [`MESSAGE_COLUMNS`] (seq 0).
const SCHEDULED_SELECT: &str = "SELECT m.id, m.chat_id, 0, m.sender_id, m.client_message_id, m.kind, m.content, \
     m.file_name, m.file_size, m.file_url, m.thumbnail, m.reply_to_id, m.forward_from, m.ttl, NULL, m.send_at, \
     m.is_silent, 0, 0, 0, m.created_at, m.created_at, NULL FROM scheduled_messages m";

fn scheduled_by_id(conn: &Connection, id: MessageId) -> StoreResult<Option<Message>> {
    let sql = format!("{SCHEDULED_SELECT} WHERE m.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::message).optional()?)
}

/// The message or scheduled message this sender already sent with this key.
fn original_of(conn: &Connection, sender_id: UserId, client_id: Option<&str>) -> StoreResult<Option<Message>> {
    let Some(client_id) = client_id else { return Ok(None) };
    if let Some(original) = message_by_client(conn, sender_id, client_id)? {
        return Ok(Some(original));
    }
    let sql = format!("{SCHEDULED_SELECT} WHERE m.sender_id = ?1 AND m.client_message_id = ?2");
    Ok(conn.prepare_cached(&sql)?.query_row(params![sender_id, client_id], rows::message).optional()?)
}

fn schedule(conn: &Connection, ids: &crate::IdGenerator, new: &NewMessage) -> StoreResult<Appended> {
    let Some(send_at) = new.send_at else {
        return Err(StoreError::Invalid("a scheduled message needs send_at".into()));
    };
    if let Some(original) = original_of(conn, new.sender_id, new.client_message_id.as_deref())? {
        return Ok(Appended::Duplicate(original));
    }
    if chat_by_id(conn, new.chat_id)?.is_none() {
        return Err(StoreError::ChatNotFound(new.chat_id));
    }
    let id = ids.next_id();
    conn.prepare_cached(
        "INSERT INTO scheduled_messages (id, chat_id, sender_id, client_message_id, kind, content, file_name, \
         file_size, file_url, thumbnail, reply_to_id, forward_from, ttl, send_at, is_silent, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        id,
        new.chat_id,
        new.sender_id,
        new.client_message_id,
        new.kind.as_str(),
        new.content,
        new.file_name,
        new.file_size as i64,
        new.file_url,
        new.thumbnail,
        new.reply_to_id,
        new.forward_from,
        new.ttl as i64,
        send_at,
        new.is_silent,
        new.created_at,
    ])?;
    scheduled_by_id(conn, id)?.map(Appended::New).ok_or(StoreError::MessageNotFound(id))
}

fn release(conn: &Connection, id: MessageId, now: Millis, seq: Option<Seq>) -> StoreResult<Option<Message>> {
    let Some(held) = scheduled_by_id(conn, id)? else { return Ok(None) };
    conn.prepare_cached("DELETE FROM scheduled_messages WHERE id = ?1")?.execute([id])?;
    let new = held.release(now, seq);
    append_with_id(conn, id, new).map(|appended| Some(appended.into_message()))
}

fn append(conn: &Connection, ids: &crate::IdGenerator, new: NewMessage) -> StoreResult<Appended> {
    if let Some(original) = original_of(conn, new.sender_id, new.client_message_id.as_deref())? {
        return Ok(Appended::Duplicate(original));
    }
    append_with_id(conn, ids.next_id(), new)
}

fn append_with_id(conn: &Connection, id: MessageId, new: NewMessage) -> StoreResult<Appended> {
    let last_seq: i64 = conn
        .prepare_cached("SELECT last_seq FROM chats WHERE id = ?1")?
        .query_row([new.chat_id], |row| row.get(0))
        .optional()?
        .ok_or(StoreError::ChatNotFound(new.chat_id))?;
    let seq = new.seq.unwrap_or(last_seq as u64 + 1);
    if seq == 0 {
        return Err(StoreError::Invalid("seq starts at 1".into()));
    }
    let expires_at = new.expires_at();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (id, chat_id, seq, sender_id, client_message_id, kind, content, file_name, \
             file_size, file_url, thumbnail, reply_to_id, forward_from, ttl, expires_at, send_at, is_silent, \
             created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18)",
        )?
        .execute(params![
            id,
            new.chat_id,
            seq as i64,
            new.sender_id,
            new.client_message_id,
            new.kind.as_str(),
            new.content,
            new.file_name,
            new.file_size as i64,
            new.file_url,
            new.thumbnail,
            new.reply_to_id,
            new.forward_from,
            new.ttl as i64,
            expires_at,
            new.send_at,
            new.is_silent,
            new.created_at,
        ]);
    if let Err(error) = inserted {
        if constraint_message(&error).is_some_and(|text| text.contains("messages.seq")) {
            return Err(StoreError::SeqTaken { chat_id: new.chat_id, seq });
        }
        return Err(error.into());
    }
    conn.prepare_cached("UPDATE chats SET last_seq = MAX(last_seq, ?1), updated_at = ?2 WHERE id = ?3")?
        .execute(params![seq as i64, new.created_at, new.chat_id])?;
    Ok(Appended::New(new.into_stored(id, seq)))
}

fn create_chat_in(conn: &Connection, new: &NewChat) -> StoreResult<(Chat, bool)> {
    let mut others: Vec<UserId> = new.members.iter().copied().filter(|&id| id != new.created_by).collect();
    others.sort_unstable();
    others.dedup();
    let private_key = match new.kind {
        ChatKind::Private => {
            let [other] = others[..] else {
                return Err(StoreError::Invalid("a private chat has exactly one other member".into()));
            };
            let (low, high) = (new.created_by.min(other), new.created_by.max(other));
            Some(format!("{low}:{high}"))
        }
        ChatKind::Group => None,
    };
    if let Some(missing) = missing_user(conn, &[new.created_by])?.or(missing_user(conn, &others)?) {
        return Err(StoreError::UserNotFound(missing));
    }
    if let Some(key) = &private_key {
        let existing: Option<ChatId> = conn
            .prepare_cached("SELECT id FROM chats WHERE private_key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            // Either side may have left it: asking for it again rejoins them.
            insert_member(conn, id, new.created_by, MemberRole::Member, new.created_at)?;
            for &user in &others {
                insert_member(conn, id, user, MemberRole::Member, new.created_at)?;
            }
            let chat = chat_by_id(conn, id)?.ok_or(StoreError::ChatNotFound(id))?;
            return Ok((chat, false));
        }
    }
    conn.prepare_cached(
        "INSERT INTO chats (kind, name, description, avatar, created_by, private_key, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        new.kind.as_str(),
        new.name,
        new.description,
        new.avatar,
        new.created_by,
        private_key,
        new.created_at
    ])?;
    let chat_id = conn.last_insert_rowid();
    insert_member(conn, chat_id, new.created_by, MemberRole::Owner, new.created_at)?;
    for &user in &others {
        insert_member(conn, chat_id, user, MemberRole::Member, new.created_at)?;
    }
    let chat = chat_by_id(conn, chat_id)?.ok_or(StoreError::ChatNotFound(chat_id))?;
    Ok((chat, true))
}

fn rotate(
    conn: &Connection,
    presented: &str,
    next_hash: &str,
    next_expires_at: Millis,
    now: Millis,
) -> StoreResult<RefreshRotation> {
    type Row = (UserId, String, Millis, Millis, Option<Millis>, Option<Millis>);
    let found: Option<Row> = conn
        .prepare_cached(
            "SELECT user_id, family_id, expires_at, created_at, used_at, revoked_at FROM refresh_tokens \
             WHERE token_hash = ?1",
        )?
        .query_row([presented], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })
        .optional()?;
    let Some((user_id, family_id, expires_at, created_at, used_at, revoked_at)) = found else {
        return Ok(RefreshRotation::Unknown);
    };
    if used_at.is_some() || revoked_at.is_some() {
        conn.prepare_cached("UPDATE refresh_tokens SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL")?
            .execute(params![now, family_id])?;
        return Ok(RefreshRotation::Reused { user_id, family_id });
    }
    if expires_at <= now {
        return Ok(RefreshRotation::Expired);
    }
    conn.prepare_cached("UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2")?
        .execute(params![now, presented])?;
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![next_hash, user_id, family_id, next_expires_at, now])?;
    Ok(RefreshRotation::Rotated {
        previous: RefreshToken { token_hash: presented.to_owned(), user_id, family_id, expires_at, created_at },
    })
}

impl SqliteStore {
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.readers.read(work).await
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.writer.write(work).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        if self.inner.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn shutdown(&self) -> StoreResult<()> {
        self.close().await
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        self.write(move |conn| {
            // The phone is the account: when both clash, that is the error to report.
            if conn.prepare_cached("SELECT 1 FROM users WHERE phone = ?1")?.exists([&new.phone])? {
                return Err(StoreError::PhoneTaken);
            }
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO users (phone, username, nickname, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![new.phone, new.username, new.nickname, new.created_at]);
            if let Err(error) = inserted {
                return Err(match constraint_message(&error) {
                    Some(text) if text.contains("users.phone") => StoreError::PhoneTaken,
                    Some(text) if text.contains("users.username") => StoreError::UsernameTaken,
                    _ => error.into(),
                });
            }
            let id = conn.last_insert_rowid();
            if let Some(hash) = new.password_hash {
                conn.prepare_cached(
                    "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, hash, new.created_at])?;
            }
            user_by(conn, "id", &id)?.ok_or(StoreError::UserNotFound(id))
        })
        .await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.read(move |conn| user_by(conn, "id", &id)).await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?;
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = statement.query_row([id], rows::user).optional()? {
                    users.push(user);
                }
            }
            Ok(users)
        })
        .await
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<User>> {
        let phone = phone.to_owned();
        self.read(move |conn| user_by(conn, "phone", &phone)).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let username = username.to_owned();
        self.read(move |conn| user_by(conn, "username", &username)).await
    }

    async fn update_user(&self, id: UserId, update: UserUpdate) -> StoreResult<Option<User>> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE users SET username = COALESCE(?1, username), nickname = COALESCE(?2, nickname), \
                     bio = COALESCE(?3, bio), avatar = COALESCE(?4, avatar), language = COALESCE(?5, language), \
                     theme = COALESCE(?6, theme), is_disabled = COALESCE(?7, is_disabled), updated_at = ?8 \
                     WHERE id = ?9",
                )?
                .execute(params![
                    update.username,
                    update.nickname,
                    update.bio,
                    update.avatar,
                    update.language,
                    update.theme,
                    update.is_disabled,
                    update.updated_at,
                    id
                ]);
            match changed {
                Ok(0) => Ok(None),
                Ok(_) => user_by(conn, "id", &id),
                Err(error) if constraint_message(&error).is_some_and(|t| t.contains("users.username")) => {
                    Err(StoreError::UsernameTaken)
                }
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn set_last_seen(&self, id: UserId, at: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE users SET last_seen = MAX(COALESCE(last_seen, 0), ?1) WHERE id = ?2")?
                .execute(params![at, id])?;
            Ok(())
        })
        .await
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT password_hash FROM credentials WHERE user_id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_password_hash(&self, id: UserId, hash: String, at: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            let result = conn
                .prepare_cached(
                    "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, \
                     updated_at = excluded.updated_at",
                )?
                .execute(params![id, hash, at]);
            match result {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(id)),
                other => other.map(drop).map_err(Into::into),
            }
        })
        .await
    }

    async fn insert_refresh_token(&self, token: RefreshToken) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                token.token_hash,
                token.user_id,
                token.family_id,
                token.expires_at,
                token.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: String,
        next_expires_at: Millis,
        now: Millis,
    ) -> StoreResult<RefreshRotation> {
        let presented = presented_hash.to_owned();
        self.write(move |conn| rotate(conn, &presented, &next_hash, next_expires_at, now)).await
    }

    async fn revoke_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<bool> {
        let hash = token_hash.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, ?1) WHERE token_hash = ?2",
                )?
                .execute(params![now, hash])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: Millis) -> StoreResult<u64> {
        let family = family_id.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE refresh_tokens SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![now, family])?;
            Ok(changed as u64)
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Millis, now: Millis) -> StoreResult<()> {
        let jti = jti.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM revoked_access_tokens WHERE expires_at <= ?1")?.execute([now])?;
            conn.prepare_cached("INSERT OR REPLACE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)")?
                .execute(params![jti, expires_at])?;
            Ok(())
        })
        .await
    }

    async fn revoked_access_tokens(&self, now: Millis) -> StoreResult<Vec<(String, Millis)>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached("SELECT jti, expires_at FROM revoked_access_tokens WHERE expires_at > ?1")?
                .query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        nickname: String,
        at: Millis,
    ) -> StoreResult<Contact> {
        if user_id == contact_id {
            return Err(StoreError::Invalid("a user cannot add themselves as a contact".into()));
        }
        self.write(move |conn| {
            if let Some(missing) = missing_user(conn, &[user_id, contact_id])? {
                return Err(StoreError::UserNotFound(missing));
            }
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO contacts (user_id, contact_id, nickname, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![user_id, contact_id, nickname, at]);
            match inserted {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::ContactExists),
                Err(error) => Err(error.into()),
                Ok(_) => {
                    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?1");
                    Ok(conn.prepare_cached(&sql)?.query_row([conn.last_insert_rowid()], rows::contact)?)
                }
            }
        })
        .await
    }

    async fn contacts(&self, user_id: UserId) -> StoreResult<Vec<Contact>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE user_id = ?1 ORDER BY id");
            let contacts = conn.prepare_cached(&sql)?.query_map([user_id], rows::contact)?.collect::<Result<_, _>>()?;
            Ok(contacts)
        })
        .await
    }

    async fn contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<Option<Contact>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE user_id = ?1 AND contact_id = ?2");
            Ok(conn.prepare_cached(&sql)?.query_row([user_id, contact_id], rows::contact).optional()?)
        })
        .await
    }

    async fn update_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        update: ContactUpdate,
    ) -> StoreResult<Option<Contact>> {
        self.write(move |conn| {
            let sql = format!(
                "UPDATE contacts SET nickname = COALESCE(?1, nickname), is_blocked = COALESCE(?2, is_blocked), \
                 is_muted = COALESCE(?3, is_muted), updated_at = ?4 WHERE user_id = ?5 AND contact_id = ?6 \
                 RETURNING {CONTACT_COLUMNS}"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(
                    params![
                        update.nickname,
                        update.is_blocked,
                        update.is_muted,
                        update.updated_at,
                        user_id,
                        contact_id
                    ],
                    rows::contact,
                )
                .optional()?)
        })
        .await
    }

    async fn delete_contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM contacts WHERE user_id = ?1 AND contact_id = ?2")?
                .execute([user_id, contact_id])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn is_blocked(&self, blocker: UserId, target: UserId) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM contacts WHERE user_id = ?1 AND contact_id = ?2 AND is_blocked = 1")?
                .exists([blocker, target])?)
        })
        .await
    }

    async fn blockers_of(&self, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>> {
        let among = among.to_vec();
        self.read(move |conn| blockers_among(conn, sender, &among)).await
    }

    async fn share_a_chat(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM members mine JOIN members theirs ON theirs.chat_id = mine.chat_id \
                     AND theirs.user_id = ?2 WHERE mine.user_id = ?1 LIMIT 1",
                )?
                .exists([a, b])?)
        })
        .await
    }

    async fn presence_audience(&self, user_id: UserId) -> StoreResult<Vec<UserId>> {
        self.read(move |conn| {
            let audience = conn
                .prepare_cached(
                    "SELECT user_id FROM contacts WHERE contact_id = ?1 AND is_blocked = 0 \
                     UNION SELECT peer.user_id FROM members me \
                     JOIN chats c ON c.id = me.chat_id AND c.kind = 'private' \
                     JOIN members peer ON peer.chat_id = c.id AND peer.user_id != ?1 \
                     WHERE me.user_id = ?1",
                )?
                .query_map([user_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(audience)
        })
        .await
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<(Chat, bool)> {
        self.write(move |conn| create_chat_in(conn, &chat)).await
    }

    async fn chat(&self, id: ChatId) -> StoreResult<Option<Chat>> {
        self.read(move |conn| chat_by_id(conn, id)).await
    }

    async fn private_chat_between(&self, a: UserId, b: UserId) -> StoreResult<Option<Chat>> {
        let key = format!("{}:{}", a.min(b), a.max(b));
        self.read(move |conn| {
            let sql = format!("{CHAT_SELECT} WHERE c.private_key = ?1");
            Ok(conn.prepare_cached(&sql)?.query_row([key], rows::chat).optional()?)
        })
        .await
    }

    async fn update_chat(&self, id: ChatId, update: ChatUpdate) -> StoreResult<Option<Chat>> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE chats SET name = COALESCE(?1, name), description = COALESCE(?2, description), \
                     avatar = COALESCE(?3, avatar), updated_at = ?4 WHERE id = ?5",
                )?
                .execute(params![update.name, update.description, update.avatar, update.updated_at, id])?;
            if changed == 0 { Ok(None) } else { chat_by_id(conn, id) }
        })
        .await
    }

    async fn chats_of_user(
        &self,
        user_id: UserId,
        limit: u32,
        offset: u32,
        now: Millis,
    ) -> StoreResult<Vec<ChatSummary>> {
        self.read(move |conn| {
            let member_columns =
                MEMBER_COLUMNS.split(", ").map(|column| format!("me.{column}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "{CHAT_SELECT} JOIN members me ON me.chat_id = c.id AND me.user_id = ?1 \
                 ORDER BY me.is_pinned DESC, c.updated_at DESC, c.id DESC LIMIT ?2 OFFSET ?3"
            )
            .replacen(" FROM chats c", &format!(", {member_columns} FROM chats c"), 1);
            let pairs: Vec<(Chat, Member)> = conn
                .prepare_cached(&sql)?
                .query_map(params![user_id, limit, offset], |row| {
                    Ok((rows::chat(row)?, rows::member_at(row, CHAT_WIDTH)?))
                })?
                .collect::<Result<_, _>>()?;
            pairs
                .into_iter()
                .map(|(chat, member)| {
                    Ok(ChatSummary {
                        last_message: latest_visible(conn, chat.id, now)?,
                        unread_count: unread(conn, chat.id, user_id, now)?,
                        chat,
                        member,
                    })
                })
                .collect()
        })
        .await
    }

    async fn count_chats_of_user(&self, user_id: UserId) -> StoreResult<u64> {
        self.read(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM members WHERE user_id = ?1")?
                .query_row([user_id], |row| row.get(0))?;
            Ok(count as u64)
        })
        .await
    }

    async fn add_members(
        &self,
        chat_id: ChatId,
        users: &[UserId],
        role: MemberRole,
        at: Millis,
    ) -> StoreResult<Vec<Member>> {
        let users = users.to_vec();
        self.write(move |conn| {
            let chat = chat_by_id(conn, chat_id)?.ok_or(StoreError::ChatNotFound(chat_id))?;
            if chat.kind == ChatKind::Private {
                return Err(StoreError::Invalid("a private chat cannot take more members".into()));
            }
            if let Some(missing) = missing_user(conn, &users)? {
                return Err(StoreError::UserNotFound(missing));
            }
            let mut added = Vec::new();
            for user in users {
                if insert_member(conn, chat_id, user, role, at)? {
                    added.extend(member_of(conn, chat_id, user)?);
                }
            }
            Ok(added)
        })
        .await
    }

    async fn remove_member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM members WHERE chat_id = ?1 AND user_id = ?2")?
                .execute([chat_id, user_id])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_member_role(&self, chat_id: ChatId, user_id: UserId, role: MemberRole) -> StoreResult<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE members SET role = ?1 WHERE chat_id = ?2 AND user_id = ?3")?
                .execute(params![role.as_str(), chat_id, user_id])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_member_flags(
        &self,
        chat_id: ChatId,
        user_id: UserId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
    ) -> StoreResult<Option<Member>> {
        self.write(move |conn| {
            let sql = format!(
                "UPDATE members SET is_pinned = COALESCE(?1, is_pinned), is_muted = COALESCE(?2, is_muted) \
                 WHERE chat_id = ?3 AND user_id = ?4 RETURNING {MEMBER_COLUMNS}"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![is_pinned, is_muted, chat_id, user_id], rows::member)
                .optional()?)
        })
        .await
    }

    async fn member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
        self.read(move |conn| member_of(conn, chat_id, user_id)).await
    }

    async fn members(&self, chat_id: ChatId) -> StoreResult<Vec<Member>> {
        self.read(move |conn| members_of(conn, chat_id)).await
    }

    /// One trip to a reader connection instead of four.
    async fn send_context(&self, chat_id: ChatId, sender: UserId) -> StoreResult<Option<SendContext>> {
        self.read(move |conn| {
            let Some(chat) = chat_by_id(conn, chat_id)? else { return Ok(None) };
            let members = members_of(conn, chat_id)?;
            let others: Vec<UserId> = members.iter().map(|m| m.user_id).filter(|&user| user != sender).collect();
            let blockers = blockers_among(conn, sender, &others)?;
            let sender = user_by(conn, "id", &sender)?;
            Ok(Some(SendContext { chat, members, blockers, sender }))
        })
        .await
    }

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

    async fn message_by_client_id(&self, sender_id: UserId, client_message_id: &str) -> StoreResult<Option<Message>> {
        let client_message_id = client_message_id.to_owned();
        self.read(move |conn| message_by_client(conn, sender_id, &client_message_id)).await
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
            if message.is_deleted {
                return Err(StoreError::Invalid("a deleted message cannot be edited".into()));
            }
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
            if message.is_deleted && pinned {
                return Err(StoreError::Invalid("a deleted message cannot be pinned".into()));
            }
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

    async fn max_seq(&self, chat_id: ChatId) -> StoreResult<Seq> {
        self.read(move |conn| {
            let max: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM messages WHERE chat_id = ?1")?
                .query_row([chat_id], |row| row.get(0))?;
            Ok(max.unwrap_or(0) as u64)
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

    async fn release_scheduled(&self, id: MessageId, now: Millis, seq: Option<Seq>) -> StoreResult<Option<Message>> {
        self.write(move |conn| release(conn, id, now, seq)).await
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

    async fn insert_file(&self, file: NewFile) -> StoreResult<FileMeta> {
        self.write(move |conn| {
            let sql = format!(
                "INSERT INTO files (owner_id, name, size, mime, kind, sha256, thumbnail_sha256, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {FILE_COLUMNS}"
            );
            let inserted = conn.prepare_cached(&sql)?.query_row(
                params![
                    file.owner_id,
                    file.name,
                    file.size as i64,
                    file.mime,
                    file.kind.as_str(),
                    file.sha256,
                    file.thumbnail_sha256,
                    file.created_at
                ],
                rows::file,
            );
            match inserted {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(file.owner_id)),
                other => other.map_err(Into::into),
            }
        })
        .await
    }

    async fn file(&self, id: FileId) -> StoreResult<Option<FileMeta>> {
        self.read(move |conn| {
            let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1");
            Ok(conn.prepare_cached(&sql)?.query_row([id], rows::file).optional()?)
        })
        .await
    }

    async fn delete_file(&self, id: FileId) -> StoreResult<Option<u64>> {
        self.write(move |conn| {
            let hash: Option<String> = conn
                .prepare_cached("DELETE FROM files WHERE id = ?1 RETURNING sha256")?
                .query_row([id], |row| row.get(0))
                .optional()?;
            let Some(hash) = hash else { return Ok(None) };
            let left: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM files WHERE sha256 = ?1")?
                .query_row([hash], |row| row.get(0))?;
            Ok(Some(left as u64))
        })
        .await
    }

    async fn file_visible_to(&self, file_id: FileId, file_url: &str, user_id: UserId) -> StoreResult<bool> {
        let file_url = file_url.to_owned();
        self.read(move |conn| {
            let owner = conn
                .prepare_cached("SELECT 1 FROM files WHERE id = ?1 AND owner_id = ?2")?
                .exists([file_id, user_id])?;
            if owner {
                return Ok(true);
            }
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM messages m JOIN members me ON me.chat_id = m.chat_id AND me.user_id = ?2 \
                     WHERE m.file_url = ?1 AND m.is_deleted = 0 LIMIT 1",
                )?
                .exists(params![file_url, user_id])?)
        })
        .await
    }

    async fn insert_notification(&self, new: NewNotification) -> StoreResult<Notification> {
        self.write(move |conn| {
            let sql = format!(
                "INSERT INTO notifications (user_id, kind, content, related_resource_type, related_resource_id, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {NOTIFICATION_COLUMNS}"
            );
            let inserted = conn.prepare_cached(&sql)?.query_row(
                params![
                    new.user_id,
                    new.kind,
                    new.content,
                    new.related_resource_type,
                    new.related_resource_id,
                    new.created_at
                ],
                rows::notification,
            );
            match inserted {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(new.user_id)),
                other => other.map_err(Into::into),
            }
        })
        .await
    }

    async fn notifications(&self, user_id: UserId, limit: u32, offset: u32) -> StoreResult<Vec<Notification>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
            );
            let page = conn
                .prepare_cached(&sql)?
                .query_map(params![user_id, limit, offset], rows::notification)?
                .collect::<Result<_, _>>()?;
            Ok(page)
        })
        .await
    }

    async fn mark_notification_read(&self, user_id: UserId, id: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE notifications SET is_read = 1 WHERE id = ?1 AND user_id = ?2")?
                .execute([id, user_id])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn mark_all_notifications_read(&self, user_id: UserId) -> StoreResult<u64> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE notifications SET is_read = 1 WHERE user_id = ?1 AND is_read = 0")?
                .execute([user_id])?;
            Ok(changed as u64)
        })
        .await
    }

    async fn unread_notification_count(&self, user_id: UserId) -> StoreResult<u64> {
        self.read(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM notifications WHERE user_id = ?1 AND is_read = 0")?
                .query_row([user_id], |row| row.get(0))?;
            Ok(count as u64)
        })
        .await
    }
}
