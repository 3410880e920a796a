//! `/api` chat routes: adapters over `service::Chats`.

use axum::Json;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::views::{ChatView, MemberView};
use serde::{Deserialize, Serialize};
use service::CreateChat as NewChat;

use super::{Empty, ok};
use crate::extract::{Body, Caller, Path, Query};
use crate::{ApiFailure, SidecarState};

#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

fn default_limit() -> u32 {
    50
}

#[derive(Debug, Serialize)]
pub(crate) struct ChatList {
    chats: Vec<ChatView>,
    total: u64,
    has_more: bool,
}

/// `GET /api/chats`: the caller's chats, pinned first, then by activity.
pub(crate) async fn list(
    State(state): State<SidecarState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Json<ApiResponse<ChatList>>, ApiFailure> {
    let list = state.services.chats.list(caller.user_id, page.limit, page.offset).await?;
    Ok(ok("获取聊天列表成功", ChatList { chats: list.chats, total: list.total, has_more: list.has_more }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateChat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    members: Vec<i64>,
}

/// `POST /api/chats`: a private chat (one other member; an existing one
/// is returned) or a group with the caller as owner.
pub(crate) async fn create(
    State(state): State<SidecarState>,
    caller: Caller,
    Body(body): Body<CreateChat>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    let new = NewChat {
        kind: body.kind,
        name: body.name,
        description: body.description,
        avatar: body.avatar,
        members: body.members,
        ..NewChat::default()
    };
    Ok(ok("聊天创建成功", state.services.chats.create(caller.user_id, new).await?))
}

/// `GET /api/chats/{id}`: members only.
pub(crate) async fn get(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    Ok(ok("获取聊天详情成功", state.services.chats.get(caller.user_id, chat_id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditChat {
    name: Option<String>,
    description: Option<String>,
    avatar: Option<String>,
}

/// `PUT /api/chats/{id}`: a group's owner or admins rename or describe it.
pub(crate) async fn update(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Body(body): Body<EditChat>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    let view = state.services.chats.update(caller.user_id, chat_id, body.name, body.description, body.avatar).await?;
    Ok(ok("聊天更新成功", view))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddMembers {
    user_ids: Vec<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Added {
    added: Vec<MemberView>,
}

/// `POST /api/chats/{id}/members`: owner or admins add people to a group.
pub(crate) async fn add_members(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Body(body): Body<AddMembers>,
) -> Result<Json<ApiResponse<Added>>, ApiFailure> {
    let added = state.services.chats.add_members(caller.user_id, chat_id, &body.user_ids).await?;
    Ok(ok("成员添加成功", Added { added }))
}

/// `DELETE /api/chats/{id}/members/{user_id}`: the owner removes anyone,
/// an admin removes plain members.
pub(crate) async fn remove_member(
    State(state): State<SidecarState>,
    caller: Caller,
    Path((chat_id, user_id)): Path<(i64, i64)>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.chats.remove_member(caller.user_id, chat_id, user_id).await?;
    Ok(ok("成员移除成功", Empty {}))
}

/// `POST /api/chats/{id}/leave`. An owner who leaves hands the group on.
pub(crate) async fn leave(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.chats.leave(caller.user_id, chat_id).await?;
    Ok(ok("已退出聊天", Empty {}))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetRole {
    role: String,
}

/// `PUT /api/chats/{id}/members/{user_id}/role`: the owner makes members
/// admins or back.
pub(crate) async fn set_role(
    State(state): State<SidecarState>,
    caller: Caller,
    Path((chat_id, user_id)): Path<(i64, i64)>,
    Body(body): Body<SetRole>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.chats.set_role(caller.user_id, chat_id, user_id, &body.role).await?;
    Ok(ok("角色更新成功", Empty {}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    is_pinned: Option<bool>,
    is_muted: Option<bool>,
}

/// `PUT /api/chats/{id}/settings`: the caller's own pin and mute.
pub(crate) async fn settings(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
    Body(body): Body<Settings>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    let view = state.services.chats.settings(caller.user_id, chat_id, body.is_pinned, body.is_muted).await?;
    Ok(ok("设置已更新", view))
}
