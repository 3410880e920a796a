use axum::Json;
use axum::extract::State;
use protocol::commands::SendMessage;
use protocol::time::{now_millis, to_iso};
use protocol::views::MessageView;
use protocol::{ApiResponse, ErrorCode, Event, kinds};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::model::{ChatKind, Cursor, Member, MemberRole, Message, MessageKind, MessageQuery};

use super::chats::membership;
use super::{Empty, ok};
use crate::extract::{Body, Caller, Path, Query};
use crate::{ApiFailure, SidecarState};

/// Builds the views of `messages` as `viewer` sees them: `is_read` means
/// "read by me" for others' messages and "read by someone else" for mine.
async fn views(
    state: &SidecarState,
    chat_id: i64,
    viewer: i64,
    messages: &[Message],
) -> Result<Vec<MessageView>, ApiFailure> {
    let members = state.store.members(chat_id).await?;
    views_with(state, &members, viewer, messages).await
}

/// [`views`] when the chat's members are already at hand.
async fn views_with(
    state: &SidecarState,
    members: &[Member],
    viewer: i64,
    messages: &[Message],
) -> Result<Vec<MessageView>, ApiFailure> {
    Ok(router::views::messages_seen_by(state.store.as_ref(), members, viewer, messages).await?)
}

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
    if !(1..=100).contains(&query.limit) {
        return Err(ApiFailure::bad_request("limit must be 1 to 100"));
    }
    let kind = match query.kind.as_deref() {
        Some(text) => Some(
            MessageKind::parse(text)
                .ok_or_else(|| ApiFailure::bad_request(format!("unknown message type {text:?}")))?,
        ),
        None => None,
    };
    if query.search.as_ref().is_some_and(|search| search.chars().count() > 100) {
        return Err(ApiFailure::bad_request("search must be at most 100 characters"));
    }
    // The member list answers membership and feeds the read markers.
    let members = state.store.members(chat_id).await?;
    if !members.iter().any(|member| member.user_id == caller.user_id) {
        membership(&state, chat_id, caller.user_id).await?;
    }
    let before = query.before.map(Cursor::Id).or(query.before_seq.map(Cursor::Seq));
    let after = query.after.map(Cursor::Id).or(query.after_seq.map(Cursor::Seq));
    let store_query = MessageQuery {
        before,
        after,
        // One more than asked tells whether there is more.
        limit: query.limit + 1,
        offset: query.offset,
        kind,
        search: query.search.filter(|search| !search.trim().is_empty()),
        now: now_millis(),
    };
    let ascending = after.is_some() && before.is_none();
    let mut page = state.store.messages(chat_id, store_query).await?;
    let has_more = page.len() > query.limit as usize;
    if has_more {
        // Drop the extra from the far end of the page's direction.
        if ascending {
            page.pop();
        } else {
            page.remove(0);
        }
    }
    let messages = views_with(&state, &members, caller.user_id, &page).await?;
    Ok(ok("获取消息列表成功", History { total: messages.len(), messages, has_more }))
}

/// `POST /api/chats/{id}/messages`: through the send pipeline, so the
/// message is durable, sequenced and delivered as `message.new`.
pub(crate) async fn send(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Body(body): Body<SendMessage>,
) -> Result<Json<ApiResponse<MessageView>>, ApiFailure> {
    let request = router::new_message(body, chat_id, caller.user_id)?;
    let sent = state.pipeline.send(request).await?;
    let view = if sent.duplicate {
        // The original may have been read or reacted to since.
        views(&state, chat_id, caller.user_id, std::slice::from_ref(&sent.message)).await?.remove(0)
    } else {
        sent.view
    };
    Ok(ok("消息发送成功", view))
}

/// A message the caller may see: 20003 if it does not exist or is in a
/// chat the caller is not in (no existence leak), with the caller's membership.
async fn visible_message(state: &SidecarState, id: i64, user_id: i64) -> Result<(Message, Member), ApiFailure> {
    let not_found = || ApiFailure::new(ErrorCode::MessageNotFound, format!("message {id} not found"));
    let message = state.store.message(id).await?.ok_or_else(not_found)?;
    let member = state.store.member(message.chat_id, user_id).await?.ok_or_else(not_found)?;
    Ok((message, member))
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
    let (message, _) = visible_message(&state, id, caller.user_id).await?;
    if message.sender_id != caller.user_id {
        return Err(ApiFailure::new(ErrorCode::MessageForbidden, "only the sender may edit a message"));
    }
    if message.is_deleted {
        return Err(ApiFailure::new(ErrorCode::MessageForbidden, "a deleted message cannot be edited"));
    }
    if body.content.trim().is_empty() || body.content.chars().count() > state.pipeline.limits().max_content_chars {
        return Err(ApiFailure::bad_request(format!(
            "content must be 1 to {} characters",
            state.pipeline.limits().max_content_chars
        )));
    }
    let edited = state
        .store
        .edit_message(id, body.content, now_millis())
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::MessageNotFound, "message not found"))?;
    let event = Event::new(
        kinds::MESSAGE_EDIT,
        json!({"id": edited.id, "chat_id": edited.chat_id, "seq": edited.seq, "content": edited.content, "updated_at": to_iso(edited.updated_at)}),
    );
    state.pipeline.publish_to_chat(edited.chat_id, event, &[]).await?;
    let view = views(&state, edited.chat_id, caller.user_id, std::slice::from_ref(&edited)).await?.remove(0);
    Ok(ok("消息编辑成功", view))
}

/// `DELETE /api/messages/{id}`: the sender deletes it (its slot stays, its
/// content goes). A scheduled message is cancelled.
pub(crate) async fn delete(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    if let Some(held) = state.store.scheduled_message(id).await?
        && held.sender_id == caller.user_id
    {
        state.store.cancel_scheduled(id).await?;
        return Ok(ok("消息删除成功", Empty {}));
    }
    let (message, _) = visible_message(&state, id, caller.user_id).await?;
    if message.sender_id != caller.user_id {
        return Err(ApiFailure::new(ErrorCode::MessageForbidden, "only the sender may delete a message"));
    }
    let deleted = state
        .store
        .delete_message(id, now_millis())
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::MessageNotFound, "message not found"))?;
    let deleted_at = deleted.deleted_at.unwrap_or(deleted.updated_at);
    let event = Event::new(
        kinds::MESSAGE_DELETE,
        json!({"id": deleted.id, "chat_id": deleted.chat_id, "seq": deleted.seq, "deleted_at": to_iso(deleted_at)}),
    );
    state.pipeline.publish_to_chat(deleted.chat_id, event, &[]).await?;
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
    let (message, member) = visible_message(&state, id, caller.user_id).await?;
    let marker = state.store.mark_read(message.chat_id, caller.user_id, message.seq).await?;
    if marker > member.last_read_seq {
        let event = Event::new(
            kinds::MESSAGE_STATUS,
            json!({"chat_id": message.chat_id, "message_id": message.id, "seq": marker, "user_id": caller.user_id, "status": "read"}),
        );
        state.pipeline.publish_to_chat(message.chat_id, event, &[]).await?;
    }
    Ok(ok("消息已标记为已读", ReadReply { chat_id: message.chat_id, last_read_seq: marker }))
}

async fn set_pin(state: &SidecarState, caller: &Caller, id: i64, pinned: bool) -> Result<(), ApiFailure> {
    let (message, member) = visible_message(state, id, caller.user_id).await?;
    let chat = state.store.chat(message.chat_id).await?;
    let may_pin = chat.is_some_and(|chat| chat.kind == ChatKind::Private) || member.role != MemberRole::Member;
    if !may_pin {
        return Err(ApiFailure::new(ErrorCode::MessageForbidden, "only a group's owner or admins may pin messages"));
    }
    if message.is_deleted {
        return Err(ApiFailure::new(ErrorCode::MessageForbidden, "a deleted message cannot be pinned"));
    }
    state.store.set_message_pinned(id, pinned, now_millis()).await?;
    let event = Event::new(
        kinds::MESSAGE_PIN,
        json!({"id": id, "chat_id": message.chat_id, "is_pinned": pinned, "by": caller.user_id}),
    );
    state.pipeline.publish_to_chat(message.chat_id, event, &[]).await?;
    Ok(())
}

/// `POST /api/messages/{id}/pin`.
pub(crate) async fn pin(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    set_pin(&state, &caller, id, true).await?;
    Ok(ok("消息已置顶", Empty {}))
}

/// `DELETE /api/messages/{id}/pin`.
pub(crate) async fn unpin(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    set_pin(&state, &caller, id, false).await?;
    Ok(ok("消息已取消置顶", Empty {}))
}
