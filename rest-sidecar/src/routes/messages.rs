//! `/api` message routes: adapters over `service::Messages`.

use axum::Json;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::commands::SendMessage;
use protocol::server::MessageReaction;
use protocol::views::MessageView;
use serde::{Deserialize, Serialize};
use service::HistoryQuery as PageQuery;
use storage::model::Cursor;

use super::{Empty, ok};
use crate::extract::{Body, Caller, Path, Query};
use crate::{ApiFailure, SidecarState};

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u32,
    /// A message id: only messages before it.
    before: Option<i64>,
    /// A message id: only messages after it.
    after: Option<i64>,
    /// Only messages before this seq (engine addition for clients that track seq).
    before_seq: Option<u64>,
    /// Only messages after this seq.
    after_seq: Option<u64>,
    search: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn default_limit() -> u32 {
    50
}

#[derive(Debug, Serialize)]
pub(crate) struct History {
    messages: Vec<MessageView>,
    /// How many messages this page holds.
    total: usize,
    /// Whether more messages lie beyond this page in its direction.
    has_more: bool,
}

/// `GET /api/chats/{id}/messages`: a page in ascending seq order.
pub(crate) async fn history(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<ApiResponse<History>>, ApiFailure> {
    let query = PageQuery {
        limit: query.limit,
        offset: query.offset,
        before: query.before.map(Cursor::Id).or(query.before_seq.map(Cursor::Seq)),
        after: query.after.map(Cursor::Id).or(query.after_seq.map(Cursor::Seq)),
        search: query.search,
        kind: query.kind,
        receipts: false,
    };
    let page = state.services.messages.history(caller.user_id, chat_id, query).await?;
    Ok(ok("获取消息列表成功", History { total: page.messages.len(), messages: page.messages, has_more: page.has_more }))
}

/// `POST /api/chats/{id}/messages`: through the send pipeline, so the
/// message is durable, sequenced and delivered as `message.new`.
pub(crate) async fn send(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Body(body): Body<SendMessage>,
) -> Result<Json<ApiResponse<std::sync::Arc<MessageView>>>, ApiFailure> {
    let sent = state.services.messages.send(caller.user_id, chat_id, body).await?;
    Ok(ok("消息发送成功", sent.view))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EditBody {
    content: String,
}

/// `PUT /api/messages/{id}`: the sender edits the text.
pub(crate) async fn edit(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
    Body(body): Body<EditBody>,
) -> Result<Json<ApiResponse<MessageView>>, ApiFailure> {
    let view = state.services.messages.edit(caller.user_id, id, body.content).await?;
    Ok(ok("消息编辑成功", view))
}

/// `DELETE /api/messages/{id}`: the sender deletes it (its slot stays, its
/// content goes). A scheduled message is cancelled.
pub(crate) async fn delete(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.messages.delete(caller.user_id, id).await?;
    Ok(ok("消息删除成功", Empty {}))
}

#[derive(Debug, Serialize)]
pub(crate) struct ReadReply {
    chat_id: i64,
    last_read_seq: u64,
}

/// `POST /api/messages/{id}/read`: moves the caller's read marker up to
/// this message; the others get `message.status` `read`.
pub(crate) async fn read(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<ReadReply>>, ApiFailure> {
    let marker = state.services.messages.read(caller.user_id, None, id).await?;
    Ok(ok("消息已标记为已读", ReadReply { chat_id: marker.chat_id, last_read_seq: marker.last_read_seq }))
}

/// `POST /api/messages/{id}/pin`.
pub(crate) async fn pin(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.messages.set_pinned(caller.user_id, id, true).await?;
    Ok(ok("消息已置顶", Empty {}))
}

/// `DELETE /api/messages/{id}/pin`.
pub(crate) async fn unpin(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.messages.set_pinned(caller.user_id, id, false).await?;
    Ok(ok("消息已取消置顶", Empty {}))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReactionBody {
    emoji: String,
}

/// `POST /api/messages/{id}/reactions`: members react; every member gets
/// `message.reaction`.
pub(crate) async fn react(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
    Body(body): Body<ReactionBody>,
) -> Result<Json<ApiResponse<MessageReaction>>, ApiFailure> {
    let event = state.services.reactions.add(caller.user_id, id, &body.emoji, None).await?;
    Ok(ok("已添加表情回应", event))
}

/// `DELETE /api/messages/{id}/reactions/{emoji}`.
pub(crate) async fn unreact(
    State(state): State<SidecarState>,
    caller: Caller,
    Path((id, emoji)): Path<(i64, String)>,
) -> Result<Json<ApiResponse<MessageReaction>>, ApiFailure> {
    let event = state.services.reactions.remove(caller.user_id, id, &emoji, None).await?;
    Ok(ok("已移除表情回应", event))
}
