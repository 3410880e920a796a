//! [`crate::NotificationStore`] for [`SqliteStore`].

use super::{
    NOTIFICATION_COLUMNS, NewNotification, Notification, NotificationStore, SqliteStore, StoreError, StoreResult,
    UserId, async_trait, constraint_message, params, rows,
};

#[async_trait]
impl NotificationStore for SqliteStore {
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
