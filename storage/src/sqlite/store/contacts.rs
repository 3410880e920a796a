//! [`crate::ContactStore`] for [`SqliteStore`].

use super::{
    CONTACT_COLUMNS, Contact, ContactStore, ContactUpdate, Millis, OptionalExtension, SqliteStore, StoreError,
    StoreResult, UserId, async_trait, blockers_among, constraint_message, missing_user, params, rows,
};

#[async_trait]
impl ContactStore for SqliteStore {
    async fn add_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        nickname: String,
        at: Millis,
    ) -> StoreResult<Contact> {
        crate::model::check_contact(user_id, contact_id)?;
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

    async fn presence_visible(&self, viewer: UserId, subjects: &[UserId]) -> StoreResult<Vec<UserId>> {
        let subjects = serde_json::to_string(subjects).map_err(|error| StoreError::Invalid(error.to_string()))?;
        self.read(move |conn| {
            let visible = conn
                .prepare_cached(
                    "SELECT s.value FROM json_each(?2) s WHERE s.value = ?1 OR ( \
                     NOT EXISTS (SELECT 1 FROM contacts b WHERE b.user_id = s.value AND b.contact_id = ?1 \
                     AND b.is_blocked = 1) AND ( \
                     (EXISTS (SELECT 1 FROM contacts a WHERE a.user_id = ?1 AND a.contact_id = s.value) \
                     AND EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = s.value AND c.contact_id = ?1)) \
                     OR EXISTS (SELECT 1 FROM members mine JOIN members theirs ON theirs.chat_id = mine.chat_id \
                     AND theirs.user_id = s.value WHERE mine.user_id = ?1)))",
                )?
                .query_map(params![viewer, subjects], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(visible)
        })
        .await
    }

    async fn presence_audience(&self, user_id: UserId) -> StoreResult<Vec<UserId>> {
        self.read(move |conn| {
            let audience = conn
                .prepare_cached(
                    "SELECT theirs.user_id FROM contacts theirs \
                     JOIN contacts mine ON mine.user_id = ?1 AND mine.contact_id = theirs.user_id \
                     AND mine.is_blocked = 0 \
                     WHERE theirs.contact_id = ?1 AND theirs.is_blocked = 0 \
                     UNION SELECT peer.user_id FROM members me \
                     JOIN chats c ON c.id = me.chat_id AND c.kind = 'private' \
                     JOIN members peer ON peer.chat_id = c.id AND peer.user_id != ?1 \
                     WHERE me.user_id = ?1 AND NOT EXISTS (SELECT 1 FROM contacts b \
                     WHERE b.user_id = ?1 AND b.contact_id = peer.user_id AND b.is_blocked = 1)",
                )?
                .query_map([user_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(audience)
        })
        .await
    }
}
