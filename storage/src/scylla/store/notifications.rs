//! [`crate::NotificationStore`] for [`ScyllaStore`].

use super::{
    Millis, NewNotification, Notification, NotificationRow, NotificationStore, ScyllaStore, StoreResult, UserId,
    async_trait, try_join_all,
};

#[async_trait]
impl NotificationStore for ScyllaStore {
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
            new.title.as_str(),
            new.data.as_deref(),
            // Seconds left to live: at least one (0 would mean forever).
            i32::try_from(((new.expires_at - new.created_at) / 1000).max(1)).unwrap_or(i32::MAX),
        );
        self.run(&self.st().insert_notification, values).await?;
        Ok(Notification {
            id,
            user_id: new.user_id,
            kind: new.kind,
            title: new.title,
            content: new.content,
            data: new.data,
            is_read: false,
            related_resource_type: new.related_resource_type,
            related_resource_id: new.related_resource_id,
            created_at: new.created_at,
        })
    }

    async fn notifications(&self, user_id: UserId, limit: u32, before: Option<i64>) -> StoreResult<Vec<Notification>> {
        let _open = self.open_guard().await?;
        let wanted = i32::try_from(limit).unwrap_or(i32::MAX).max(1);
        let values = (user_id, before.unwrap_or(i64::MAX), wanted);
        let rows = self.rows::<NotificationRow>(&self.st().select_notifications, values).await?;
        Ok(rows.into_iter().filter_map(NotificationRow::into_notification).take(limit as usize).collect())
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

    async fn delete_notification(&self, user_id: UserId, id: i64) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().delete_notification, (user_id, id)).await
    }

    async fn prune_notifications(&self, _now: Millis) -> StoreResult<u64> {
        // Rows carry a TTL from `expires_at`: Cassandra forgets them itself.
        Ok(0)
    }
}
