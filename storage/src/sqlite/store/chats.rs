//! [`crate::ChatStore`] for [`SqliteStore`].

use super::{
    CHAT_SELECT, CHAT_WIDTH, Chat, ChatId, ChatStore, ChatSummary, ChatUpdate, MEMBER_COLUMNS, Member, MemberRole,
    Millis, NewChat, OptionalExtension, SqliteStore, StoreError, StoreResult, UserId, admit, async_trait, chat_by_id,
    create_chat_in, insert_member, latest_visible, member_of, members_of, missing_user, params, rows, unread,
};
use crate::model::{Joining, private_pair_key};

#[async_trait]
impl ChatStore for SqliteStore {
    async fn create_chat(&self, chat: NewChat) -> StoreResult<(Chat, bool)> {
        self.write(move |conn| create_chat_in(conn, &chat)).await
    }

    async fn chat(&self, id: ChatId) -> StoreResult<Option<Chat>> {
        self.read(move |conn| chat_by_id(conn, id)).await
    }

    async fn private_chat_between(&self, a: UserId, b: UserId) -> StoreResult<Option<Chat>> {
        let key = private_pair_key(a, b);
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
                     avatar = COALESCE(?3, avatar), updated_at = ?4, is_active = COALESCE(?6, is_active) \
                     WHERE id = ?5",
                )?
                .execute(params![
                    update.name,
                    update.description,
                    update.avatar,
                    update.updated_at,
                    id,
                    update.is_active
                ])?;
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
                 ORDER BY me.is_pinned DESC, last_activity DESC, c.id DESC LIMIT ?2 OFFSET ?3"
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
        joining: Joining,
    ) -> StoreResult<Vec<Member>> {
        let users = users.to_vec();
        self.write(move |conn| {
            let chat = chat_by_id(conn, chat_id)?.ok_or(StoreError::ChatNotFound(chat_id))?;
            chat.check_takes_members()?;
            if let Some(missing) = missing_user(conn, &users)? {
                return Err(StoreError::UserNotFound(missing));
            }
            let mut fresh = Vec::new();
            for &user in &users {
                if !fresh.contains(&user) && member_of(conn, chat_id, user)?.is_none() {
                    fresh.push(user);
                }
            }
            admit(conn, joining, chat.members_count as usize, &fresh)?;
            let mut added = Vec::new();
            for user in fresh {
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
}
