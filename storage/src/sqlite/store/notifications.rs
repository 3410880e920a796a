//! [`crate::NotificationStore`] for [`SqliteStore`].

use super::{
    Millis, NOTIFICATION_COLUMNS, NewNotification, Notification, NotificationStore, SqliteStore, StoreError,
    StoreResult, UserId, async_trait, constraint_message, params, rows,
};

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn insert_notification(&self, new: NewNotification) -> StoreResult<Notification> {
        self.write(move |conn| {
            let sql = format!(
                "INSERT INTO notifications (user_id, kind, content, related_resource_type, related_resource_id, \
                 created_at, title, data, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 RETURNING {NOTIFICATION_COLUMNS}"
            );
            let inserted = conn.prepare_cached(&sql)?.query_row(
                params![
                    new.user_id,
                    new.kind,
                    new.content,
                    new.related_resource_type,
                    new.related_resource_id,
                    new.created_at,
                    new.title,
                    new.data,
                    new.expires_at,
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

    async fn notifications(&self, user_id: UserId, limit: u32, before: Option<i64>) -> StoreResult<Vec<Notification>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = ?1 AND id < ?2 \
                 ORDER BY id DESC LIMIT ?3"
            );
            let page = conn
                .prepare_cached(&sql)?
                .query_map(params![user_id, before.unwrap_or(i64::MAX), limit], rows::notification)?
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

    async fn delete_notification(&self, user_id: UserId, id: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM notifications WHERE id = ?1 AND user_id = ?2")?
                .execute([id, user_id])?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn prune_notifications(&self, now: Millis) -> StoreResult<u64> {
        self.write(move |conn| {
            let deleted = conn.prepare_cached("DELETE FROM notifications WHERE expires_at <= ?1")?.execute([now])?;
            Ok(deleted as u64)
        })
        .await
    }
}
