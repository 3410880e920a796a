//! A user's notification centre: notifications an app backend sends
//! (through the server API), kept for a while, pushed live as
//! `notification.new`, read (in sync across the user's devices with
//! `notification.read`) and deleted by their owner only.

use protocol::ServerEvent;
use protocol::server::{NotificationPush, NotificationRead};
use protocol::time::{now_millis, to_iso};
use storage::model::{NewNotification, Notification, UserId};

use crate::{Deps, ServiceError, ServiceResult, hooks, validate};

/// Most users one notification call names.
pub const NOTIFY_MAX_USERS: usize = 1_000;
/// Longest `data` object, in bytes of JSON.
pub const NOTIFICATION_DATA_MAX: usize = 8 * 1024;
/// Most notifications one page answers.
pub const NOTIFICATION_PAGE_MAX: u32 = 100;

/// What an app backend sends.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub user_ids: Vec<UserId>,
    /// Free text, 1 to 64 characters (`match`, `system`, ...).
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A JSON object, or null.
    pub data: serde_json::Value,
    /// What the notification is about (`couple`, `event`, ...), if anything.
    pub related_resource_type: Option<String>,
    pub related_resource_id: Option<String>,
}

/// A page of the caller's notifications.
#[derive(Debug, Clone)]
pub struct NotificationPage {
    pub unread_count: u64,
    pub notifications: Vec<Notification>,
}

/// A notification as the wire carries it (`notification.new`, REST lists).
pub fn push_view(notification: &Notification) -> NotificationPush {
    NotificationPush {
        id: notification.id,
        kind: notification.kind.clone(),
        title: notification.title.clone(),
        body: notification.content.clone(),
        data: notification
            .data
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(serde_json::Value::Null),
        created_at: to_iso(notification.created_at),
    }
}

/// Notification use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifications {
    deps: Deps,
}

impl Notifications {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// Stores one notification per user and pushes each live; answers
    /// them in the order of `user_ids`. Unknown users are refused before
    /// anything is stored.
    pub async fn send(&self, notice: NewNotice) -> ServiceResult<Vec<Notification>> {
        let mut user_ids = notice.user_ids.clone();
        user_ids.sort_unstable();
        user_ids.dedup();
        if user_ids.is_empty() || user_ids.len() > NOTIFY_MAX_USERS {
            return Err(ServiceError::Invalid(format!("user_ids must name 1 to {NOTIFY_MAX_USERS} users")));
        }
        let kind = notice.kind.trim();
        if kind.is_empty() || kind.chars().count() > 64 {
            return Err(ServiceError::Invalid("type must be 1 to 64 characters".into()));
        }
        validate::text("title", &notice.title, 200)?;
        validate::text("body", &notice.body, 4_000)?;
        if notice.title.trim().is_empty() && notice.body.trim().is_empty() {
            return Err(ServiceError::Invalid("a notification needs a title or a body".into()));
        }
        let data = match &notice.data {
            serde_json::Value::Null => None,
            serde_json::Value::Object(_) => Some(notice.data.to_string()),
            _ => return Err(ServiceError::Invalid("data must be a JSON object".into())),
        };
        for related in [&notice.related_resource_type, &notice.related_resource_id].into_iter().flatten() {
            validate::text("related_resource", related, 128)?;
        }
        if data.as_ref().is_some_and(|data| data.len() > NOTIFICATION_DATA_MAX) {
            return Err(ServiceError::Invalid(format!("data may be at most {NOTIFICATION_DATA_MAX} bytes of JSON")));
        }
        let known = self.deps.store.users(&user_ids).await?;
        if let Some(missing) = user_ids.iter().find(|id| !known.iter().any(|user| user.id == **id)) {
            return Err(ServiceError::user_not_found(*missing));
        }
        let now = now_millis();
        let expires_at = now + self.deps.config.notification_retention_ms;
        let mut sent = Vec::with_capacity(user_ids.len());
        for &user_id in &user_ids {
            let stored = self
                .deps
                .store
                .insert_notification(NewNotification {
                    user_id,
                    kind: kind.to_owned(),
                    title: notice.title.clone(),
                    content: notice.body.clone(),
                    data: data.clone(),
                    related_resource_type: notice.related_resource_type.clone(),
                    related_resource_id: notice.related_resource_id.clone(),
                    created_at: now,
                    expires_at,
                })
                .await?;
            let push = push_view(&stored);
            if self.deps.hooks.enabled() {
                let data = serde_json::json!({ "user_id": user_id, "notification": push });
                self.deps.hooks.emit(hooks::types::NOTIFICATION_CREATED, data);
            }
            self.publish(user_id, ServerEvent::Notification(push)).await;
            sent.push(stored);
        }
        metrics::counter!("switchboard_notifications_sent_total").increment(sent.len() as u64);
        Ok(sent)
    }

    /// The caller's notifications, newest first, older than `before`.
    pub async fn list(&self, caller: UserId, limit: u32, before: Option<i64>) -> ServiceResult<NotificationPage> {
        if !(1..=NOTIFICATION_PAGE_MAX).contains(&limit) {
            return Err(ServiceError::Invalid(format!("limit must be 1 to {NOTIFICATION_PAGE_MAX}")));
        }
        let notifications = self.deps.store.notifications(caller, limit, before).await?;
        let unread_count = self.deps.store.unread_notification_count(caller).await?;
        Ok(NotificationPage { unread_count, notifications })
    }

    /// Marks one of the caller's notifications read; their devices hear of it.
    pub async fn read(&self, caller: UserId, id: i64) -> ServiceResult<u64> {
        if !self.deps.store.mark_notification_read(caller, id).await? {
            return Err(not_found(id));
        }
        self.announce_read(caller, Some(id)).await
    }

    /// Marks every notification of the caller read.
    pub async fn read_all(&self, caller: UserId) -> ServiceResult<u64> {
        self.deps.store.mark_all_notifications_read(caller).await?;
        self.announce_read(caller, None).await
    }

    /// Deletes one of the caller's notifications.
    pub async fn delete(&self, caller: UserId, id: i64) -> ServiceResult<()> {
        if !self.deps.store.delete_notification(caller, id).await? {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Forgets notifications past their retention; answers how many went.
    pub async fn prune(&self) -> ServiceResult<u64> {
        Ok(self.deps.store.prune_notifications(now_millis()).await?)
    }

    async fn announce_read(&self, caller: UserId, id: Option<i64>) -> ServiceResult<u64> {
        let unread_count = self.deps.store.unread_notification_count(caller).await?;
        let event = ServerEvent::NotificationRead(NotificationRead { notification_id: id, unread_count });
        self.publish(caller, event).await;
        Ok(unread_count)
    }

    async fn publish(&self, user_id: UserId, event: ServerEvent) {
        let kind = event.kind();
        if let Err(error) = self.deps.router.publish(router::Delivery::new(vec![user_id], event)).await {
            // Stored: the client finds it in its list.
            tracing::warn!(%error, kind, "notification event not published");
        }
    }
}

/// Someone else's notification reads as no notification: nothing leaks.
fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("notification {id} not found"))
}
