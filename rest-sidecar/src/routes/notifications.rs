//! `/api/notifications`: the caller's notification centre, over
//! `service::Notifications`. Another user's notification reads as none.

use axum::Json;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::server::NotificationPush;
use serde::{Deserialize, Serialize};
use storage::model::Notification;

use super::{Empty, ok};
use crate::extract::{Caller, Path, Query};
use crate::{ApiFailure, SidecarState};

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default = "default_limit")]
    limit: u32,
    /// A notification id: only older ones.
    before: Option<i64>,
}

fn default_limit() -> u32 {
    20
}

/// A notification as the caller's list shows it.
#[derive(Debug, Serialize)]
pub(crate) struct NotificationView {
    #[serde(flatten)]
    push: NotificationPush,
    is_read: bool,
}

fn view(notification: &Notification) -> NotificationView {
    NotificationView { push: service::notifications::push_view(notification), is_read: notification.is_read }
}

#[derive(Debug, Serialize)]
pub(crate) struct List {
    unread_count: u64,
    notifications: Vec<NotificationView>,
}

/// `GET /api/notifications?limit&before`: newest first.
pub(crate) async fn list(
    State(state): State<SidecarState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ApiResponse<List>>, ApiFailure> {
    let page = state.services.notifications.list(caller.user_id, query.limit, query.before).await?;
    let notifications = page.notifications.iter().map(view).collect();
    Ok(ok("获取通知成功", List { unread_count: page.unread_count, notifications }))
}

#[derive(Debug, Serialize)]
pub(crate) struct Unread {
    unread_count: u64,
}

/// `POST /api/notifications/{id}/read`.
pub(crate) async fn read(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Unread>>, ApiFailure> {
    let unread_count = state.services.notifications.read(caller.user_id, id).await?;
    Ok(ok("通知已读", Unread { unread_count }))
}

/// `POST /api/notifications/read-all`.
pub(crate) async fn read_all(
    State(state): State<SidecarState>,
    caller: Caller,
) -> Result<Json<ApiResponse<Unread>>, ApiFailure> {
    let unread_count = state.services.notifications.read_all(caller.user_id).await?;
    Ok(ok("全部通知已读", Unread { unread_count }))
}

/// `DELETE /api/notifications/{id}`.
pub(crate) async fn delete(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.notifications.delete(caller.user_id, id).await?;
    Ok(ok("通知已删除", Empty {}))
}
