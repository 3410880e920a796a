use axum::Json;
use axum::extract::State;
use protocol::time::{now_millis, to_iso};
use protocol::views::{ChatView, LastMessageView, MemberView};
use protocol::{ApiResponse, ErrorCode, Event, kinds};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::model::{Chat, ChatKind, ChatUpdate, Member, MemberRole, Message, NewChat, User};

use super::{Empty, ok};
use crate::extract::{Body, Caller, Path, Query};
use crate::{ApiFailure, SidecarState, validate};

fn last_message(message: &Message) -> LastMessageView {
    LastMessageView {
        id: message.id,
        seq: message.seq,
        content: message.content.clone(),
        kind: message.kind.as_str().to_owned(),
        sender_id: message.sender_id,
        created_at: to_iso(message.created_at),
    }
}

/// A private chat shows the peer's name and avatar unless it has its own.
async fn chat_view(state: &SidecarState, chat: &Chat, me: &Member) -> Result<ChatView, ApiFailure> {
    let (mut name, mut avatar) = (chat.name.clone(), chat.avatar.clone());
    if chat.kind == ChatKind::Private && name.is_empty() {
        let members = state.store.members(chat.id).await?;
        if let Some(peer) = members.iter().find(|member| member.user_id != me.user_id)
            && let Some(peer) = state.store.user(peer.user_id).await?
        {
            name = peer.nickname;
            avatar = peer.avatar;
        }
    }
    Ok(ChatView {
        id: chat.id,
        name,
        description: chat.description.clone(),
        avatar,
        kind: chat.kind.as_str().to_owned(),
        is_active: chat.is_active,
        is_pinned: me.is_pinned,
        is_muted: me.is_muted,
        members_count: chat.members_count,
        last_seq: chat.last_seq,
        created_at: to_iso(chat.created_at),
        updated_at: to_iso(chat.updated_at),
        last_message: None,
        unread_count: None,
        members: None,
    })
}

fn member_view(member: &Member, user: Option<&User>) -> MemberView {
    MemberView {
        id: member.user_id,
        username: user.and_then(|user| user.username.clone()).unwrap_or_default(),
        nickname: user.map(|user| user.nickname.clone()).unwrap_or_default(),
        avatar: user.map(|user| user.avatar.clone()).unwrap_or_default(),
        role: member.role.as_str().to_owned(),
        joined_at: to_iso(member.joined_at),
    }
}

async fn member_views(state: &SidecarState, members: &[Member]) -> Result<Vec<MemberView>, ApiFailure> {
    let ids: Vec<i64> = members.iter().map(|member| member.user_id).collect();
    let users = state.store.users(&ids).await?;
    Ok(members.iter().map(|member| member_view(member, users.iter().find(|user| user.id == member.user_id))).collect())
}

/// The chat and the caller's membership: 20001 if there is no such chat,
/// 20002 if the caller is not in it.
pub(crate) async fn membership(state: &SidecarState, chat_id: i64, user_id: i64) -> Result<(Chat, Member), ApiFailure> {
    let chat = state
        .store
        .chat(chat_id)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::ChatNotFound, format!("chat {chat_id} not found")))?;
    let member = state
        .store
        .member(chat_id, user_id)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotChatMember, "you are not a member of this chat"))?;
    Ok((chat, member))
}

fn is_manager(member: &Member) -> bool {
    matches!(member.role, MemberRole::Owner | MemberRole::Admin)
}

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
    if !(1..=100).contains(&page.limit) {
        return Err(ApiFailure::bad_request("limit must be 1 to 100"));
    }
    let now = now_millis();
    let rows = state.store.chats_of_user(caller.user_id, page.limit, page.offset, now).await?;
    let total = state.store.count_chats_of_user(caller.user_id).await?;
    let mut chats = Vec::with_capacity(rows.len());
    for row in rows {
        let mut view = chat_view(&state, &row.chat, &row.member).await?;
        view.last_message = row.last_message.as_ref().map(last_message);
        view.unread_count = Some(row.unread_count);
        chats.push(view);
    }
    let has_more = u64::from(page.offset) + (chats.len() as u64) < total;
    Ok(ok("获取聊天列表成功", ChatList { chats, total, has_more }))
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
    let kind = ChatKind::parse(&body.kind).ok_or_else(|| ApiFailure::bad_request("type must be private or group"))?;
    validate::text("name", &body.name, 128)?;
    validate::text("description", &body.description, 1000)?;
    validate::text("avatar", &body.avatar, 1024)?;
    if kind == ChatKind::Group && body.members.len() + 1 > state.config.max_group_members {
        return Err(ApiFailure::bad_request(format!("a group has at most {} members", state.config.max_group_members)));
    }
    let new = NewChat {
        kind,
        name: body.name,
        description: body.description,
        avatar: body.avatar,
        created_by: caller.user_id,
        members: body.members,
        created_at: now_millis(),
    };
    let (chat, created) = state.store.create_chat(new).await?;
    let members = state.store.members(chat.id).await?;
    let me = members.iter().find(|member| member.user_id == caller.user_id).cloned();
    let me = me.ok_or_else(|| ApiFailure::new(ErrorCode::NotChatMember, "you are not a member of this chat"))?;
    let mut view = chat_view(&state, &chat, &me).await?;
    view.members = Some(member_views(&state, &members).await?);
    if created {
        let others: Vec<i64> = members.iter().map(|member| member.user_id).collect();
        let event =
            Event::new(kinds::CHAT_MEMBER_ADDED, json!({"chat_id": chat.id, "user_ids": others, "by": caller.user_id}));
        state.pipeline.publish_to_chat(chat.id, event, &[]).await?;
    }
    Ok(ok("聊天创建成功", view))
}

/// `GET /api/chats/{id}`: members only.
pub(crate) async fn get(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    let (chat, me) = membership(&state, chat_id, caller.user_id).await?;
    let members = state.store.members(chat_id).await?;
    let mut view = chat_view(&state, &chat, &me).await?;
    view.members = Some(member_views(&state, &members).await?);
    view.unread_count = Some(state.store.unread_count(chat_id, caller.user_id, now_millis()).await?);
    view.last_message = state.store.latest_message(chat_id, now_millis()).await?.as_ref().map(last_message);
    Ok(ok("获取聊天详情成功", view))
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
    let (chat, me) = membership(&state, chat_id, caller.user_id).await?;
    if chat.kind != ChatKind::Group || !is_manager(&me) {
        return Err(ApiFailure::new(ErrorCode::Forbidden, "only a group's owner or admins may edit it"));
    }
    validate::text("name", body.name.as_deref().unwrap_or_default(), 128)?;
    validate::text("description", body.description.as_deref().unwrap_or_default(), 1000)?;
    validate::text("avatar", body.avatar.as_deref().unwrap_or_default(), 1024)?;
    let update =
        ChatUpdate { name: body.name, description: body.description, avatar: body.avatar, updated_at: now_millis() };
    let chat = state
        .store
        .update_chat(chat_id, update)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::ChatNotFound, "chat not found"))?;
    let view = chat_view(&state, &chat, &me).await?;
    let event = Event::new(
        kinds::CHAT_UPDATED,
        json!({"chat_id": chat.id, "name": view.name, "description": view.description, "avatar": view.avatar, "by": caller.user_id}),
    );
    state.pipeline.publish_to_chat(chat.id, event, &[]).await?;
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
    let (chat, me) = membership(&state, chat_id, caller.user_id).await?;
    if chat.kind != ChatKind::Group || !is_manager(&me) {
        return Err(ApiFailure::new(ErrorCode::Forbidden, "only a group's owner or admins may add members"));
    }
    if body.user_ids.is_empty() {
        return Err(ApiFailure::bad_request("user_ids must not be empty"));
    }
    if chat.members_count as usize + body.user_ids.len() > state.config.max_group_members {
        return Err(ApiFailure::bad_request(format!("a group has at most {} members", state.config.max_group_members)));
    }
    let added = state.store.add_members(chat_id, &body.user_ids, MemberRole::Member, now_millis()).await?;
    if !added.is_empty() {
        let ids: Vec<i64> = added.iter().map(|member| member.user_id).collect();
        let event =
            Event::new(kinds::CHAT_MEMBER_ADDED, json!({"chat_id": chat_id, "user_ids": ids, "by": caller.user_id}));
        state.pipeline.publish_to_chat(chat_id, event, &[]).await?;
    }
    Ok(ok("成员添加成功", Added { added: member_views(&state, &added).await? }))
}

async fn drop_member(state: &SidecarState, chat_id: i64, user_id: i64, by: i64) -> Result<(), ApiFailure> {
    state.store.remove_member(chat_id, user_id).await?;
    let event = Event::new(kinds::CHAT_MEMBER_REMOVED, json!({"chat_id": chat_id, "user_id": user_id, "by": by}));
    state.pipeline.publish_to_chat(chat_id, event, &[user_id]).await?;
    Ok(())
}

/// `DELETE /api/chats/{id}/members/{user_id}`: the owner removes anyone,
/// an admin removes plain members.
pub(crate) async fn remove_member(
    State(state): State<SidecarState>,
    caller: Caller,
    Path((chat_id, user_id)): Path<(i64, i64)>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    let (chat, me) = membership(&state, chat_id, caller.user_id).await?;
    if user_id == caller.user_id {
        return Err(ApiFailure::bad_request("use POST /api/chats/{id}/leave to leave a chat"));
    }
    let target = state
        .store
        .member(chat_id, user_id)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotChatMember, format!("user {user_id} is not a member")))?;
    let allowed = chat.kind == ChatKind::Group
        && match me.role {
            MemberRole::Owner => true,
            MemberRole::Admin => target.role == MemberRole::Member,
            MemberRole::Member => false,
        };
    if !allowed {
        return Err(ApiFailure::new(ErrorCode::Forbidden, "you may not remove this member"));
    }
    drop_member(&state, chat_id, user_id, caller.user_id).await?;
    Ok(ok("成员移除成功", Empty {}))
}

/// `POST /api/chats/{id}/leave`. An owner who leaves hands the group to
/// the longest-standing admin, or else the longest-standing member.
pub(crate) async fn leave(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(chat_id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    let (_, me) = membership(&state, chat_id, caller.user_id).await?;
    if me.role == MemberRole::Owner {
        let members = state.store.members(chat_id).await?;
        let heir = members
            .iter()
            .filter(|member| member.user_id != caller.user_id)
            .min_by_key(|member| (member.role != MemberRole::Admin, member.joined_at, member.user_id));
        if let Some(heir) = heir {
            state.store.set_member_role(chat_id, heir.user_id, MemberRole::Owner).await?;
        }
    }
    drop_member(&state, chat_id, caller.user_id, caller.user_id).await?;
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
    let role = match body.role.as_str() {
        "admin" => MemberRole::Admin,
        "member" => MemberRole::Member,
        _ => return Err(ApiFailure::bad_request("role must be admin or member")),
    };
    let (chat, me) = membership(&state, chat_id, caller.user_id).await?;
    if chat.kind != ChatKind::Group || me.role != MemberRole::Owner || user_id == caller.user_id {
        return Err(ApiFailure::new(ErrorCode::Forbidden, "only the owner sets other members' roles"));
    }
    if !state.store.set_member_role(chat_id, user_id, role).await? {
        return Err(ApiFailure::new(ErrorCode::NotChatMember, format!("user {user_id} is not a member")));
    }
    let event = Event::new(
        kinds::CHAT_UPDATED,
        json!({"chat_id": chat_id, "user_id": user_id, "role": body.role, "by": caller.user_id}),
    );
    state.pipeline.publish_to_chat(chat_id, event, &[]).await?;
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
    let (chat, _) = membership(&state, chat_id, caller.user_id).await?;
    let me = state
        .store
        .set_member_flags(chat_id, caller.user_id, body.is_pinned, body.is_muted)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotChatMember, "you are not a member of this chat"))?;
    Ok(ok("设置已更新", chat_view(&state, &chat, &me).await?))
}
