//! Chats and their members: creating, listing, editing, adding and
//! removing members, roles, leaving, and each member's own settings.

use protocol::time::{now_millis, to_iso};
use protocol::views::{ChatView, LastMessageView, MemberView};
use storage::model::{Chat, ChatId, ChatKind, ChatUpdate, Joining, Member, MemberRole, Message, NewChat, User, UserId};

use crate::{Deps, ServiceError, ServiceResult, events, validate};

/// A page of the caller's chats.
#[derive(Debug, Clone)]
pub struct ChatList {
    pub chats: Vec<ChatView>,
    /// For each chat, in order: the other member of a private chat.
    pub peers: Vec<Option<UserId>>,
    pub total: u64,
    pub has_more: bool,
}

/// 20005 when any of `users` has blocked `caller`: one store read.
async fn refuse_blockers(deps: &Deps, caller: UserId, users: &[UserId]) -> ServiceResult<()> {
    if !users.is_empty() && !deps.store.blockers_of(caller, users).await?.is_empty() {
        return Err(ServiceError::Blocked);
    }
    Ok(())
}

/// What a new chat is (the creator is its owner).
#[derive(Debug, Clone, Default)]
pub struct CreateChat {
    /// `private` or `group`.
    pub kind: String,
    pub name: String,
    pub description: String,
    pub avatar: String,
    /// The other members.
    pub members: Vec<UserId>,
    /// An existing private chat takes both people back (a decision both
    /// made, as accepting a pairing, or the app backend's). Otherwise only
    /// the caller rejoins it, and someone who left stays out until they
    /// ask for it themselves.
    pub rejoin_everyone: bool,
    /// Made by the app backend (the server API): the members' group-invite
    /// settings do not bind it (blocks still do).
    pub by_backend: bool,
}

/// Chat use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Chats {
    deps: Deps,
}

/// The chat and `user_id`'s membership: 20001 if there is no such chat,
/// 20002 if the user is not in it.
pub(crate) async fn membership(deps: &Deps, chat_id: ChatId, user_id: UserId) -> ServiceResult<(Chat, Member)> {
    let chat = deps.store.chat(chat_id).await?.ok_or(ServiceError::ChatNotFound(chat_id))?;
    let member = deps.store.member(chat_id, user_id).await?.ok_or_else(ServiceError::not_member)?;
    Ok((chat, member))
}

fn is_manager(member: &Member) -> bool {
    matches!(member.role, MemberRole::Owner | MemberRole::Admin)
}

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

impl Chats {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// The chat and the caller's membership (20001 / 20002 otherwise).
    pub async fn membership(&self, chat_id: ChatId, user_id: UserId) -> ServiceResult<(Chat, Member)> {
        membership(&self.deps, chat_id, user_id).await
    }

    /// A private chat shows the peer's name and avatar unless it has its own.
    async fn view(&self, chat: &Chat, me: &Member) -> ServiceResult<ChatView> {
        Ok(self.view_with_peer(chat, me).await?.0)
    }

    /// [`Self::view`], and the other member of a private chat.
    async fn view_with_peer(&self, chat: &Chat, me: &Member) -> ServiceResult<(ChatView, Option<UserId>)> {
        let (mut name, mut avatar) = (chat.name.clone(), chat.avatar.clone());
        let mut peer_id = None;
        if chat.kind == ChatKind::Private {
            let members = self.deps.store.members(chat.id).await?;
            peer_id = members.iter().map(|member| member.user_id).find(|user| *user != me.user_id);
            if name.is_empty()
                && let Some(peer) = peer_id
                && let Some(peer) = self.deps.store.user(peer).await?
            {
                name = peer.nickname;
                avatar = peer.avatar;
            }
        }
        let view = ChatView {
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
        };
        Ok((view, peer_id))
    }

    async fn member_views(&self, members: &[Member]) -> ServiceResult<Vec<MemberView>> {
        let ids: Vec<UserId> = members.iter().map(|member| member.user_id).collect();
        let users = self.deps.store.users(&ids).await?;
        Ok(members
            .iter()
            .map(|member| member_view(member, users.iter().find(|user| user.id == member.user_id)))
            .collect())
    }

    /// The caller's chats, pinned first, then by activity.
    pub async fn list(&self, caller: UserId, limit: u32, offset: u32) -> ServiceResult<ChatList> {
        if !(1..=100).contains(&limit) {
            return Err(ServiceError::Invalid("limit must be 1 to 100".into()));
        }
        let rows = self.deps.store.chats_of_user(caller, limit, offset, now_millis()).await?;
        let total = self.deps.store.count_chats_of_user(caller).await?;
        let mut chats = Vec::with_capacity(rows.len());
        let mut peers = Vec::with_capacity(rows.len());
        for row in rows {
            let (mut view, peer) = self.view_with_peer(&row.chat, &row.member).await?;
            view.last_message = row.last_message.as_ref().map(last_message);
            view.unread_count = Some(row.unread_count);
            chats.push(view);
            peers.push(peer);
        }
        let has_more = u64::from(offset) + (chats.len() as u64) < total;
        Ok(ChatList { chats, peers, total, has_more })
    }

    /// A private chat (exactly one other member; an existing one is
    /// answered) or a group with the caller as owner.
    pub async fn create(&self, caller: UserId, new: CreateChat) -> ServiceResult<ChatView> {
        let kind =
            ChatKind::parse(&new.kind).ok_or_else(|| ServiceError::Invalid("type must be private or group".into()))?;
        validate::text("name", &new.name, 128)?;
        validate::text("description", &new.description, 1000)?;
        validate::text("avatar", &new.avatar, 1024)?;
        let max = self.deps.config.max_group_members;
        if kind == ChatKind::Group && new.members.len() + 1 > max {
            return Err(ServiceError::Invalid(format!("a group has at most {max} members")));
        }
        // Nobody who blocked the caller is put in a chat with them (20005):
        // a group a user makes is checked by the store with the insert
        // (`added_by`); a private chat, or the app backend's group, here.
        if kind == ChatKind::Private || new.by_backend {
            refuse_blockers(&self.deps, caller, &new.members).await?;
        }
        let request = NewChat {
            kind,
            name: new.name,
            description: new.description,
            avatar: new.avatar,
            created_by: caller,
            members: new.members,
            created_at: now_millis(),
            added_by: (!new.by_backend).then_some(caller),
            rejoin_others: new.rejoin_everyone,
        };
        let (chat, created) = self.deps.store.create_chat(request).await?;
        let members = self.deps.store.members(chat.id).await?;
        let me =
            members.iter().find(|member| member.user_id == caller).cloned().ok_or_else(ServiceError::not_member)?;
        let mut view = self.view(&chat, &me).await?;
        view.members = Some(self.member_views(&members).await?);
        if created {
            let everyone: Vec<UserId> = members.iter().map(|member| member.user_id).collect();
            self.deps
                .pipeline
                .publish_to_members(&members, events::member_added(chat.id, &everyone, caller), &[])
                .await;
        }
        Ok(view)
    }

    /// A chat with its members, unread count and last message: members only.
    pub async fn get(&self, caller: UserId, chat_id: ChatId) -> ServiceResult<ChatView> {
        let (chat, me) = membership(&self.deps, chat_id, caller).await?;
        let store = &self.deps.store;
        let members = store.members(chat_id).await?;
        let mut view = self.view(&chat, &me).await?;
        view.members = Some(self.member_views(&members).await?);
        view.unread_count = Some(store.unread_count(chat_id, caller, now_millis()).await?);
        view.last_message = store.latest_message(chat_id, now_millis()).await?.as_ref().map(last_message);
        Ok(view)
    }

    /// A group's owner or admins rename, describe or picture it.
    pub async fn update(
        &self,
        caller: UserId,
        chat_id: ChatId,
        name: Option<String>,
        description: Option<String>,
        avatar: Option<String>,
    ) -> ServiceResult<ChatView> {
        let (chat, me) = membership(&self.deps, chat_id, caller).await?;
        if chat.kind != ChatKind::Group || !is_manager(&me) {
            return Err(ServiceError::Forbidden("only a group's owner or admins may edit it".into()));
        }
        validate::text("name", name.as_deref().unwrap_or_default(), 128)?;
        validate::text("description", description.as_deref().unwrap_or_default(), 1000)?;
        validate::text("avatar", avatar.as_deref().unwrap_or_default(), 1024)?;
        let update = ChatUpdate { name, description, avatar, is_active: None, updated_at: now_millis() };
        let chat = self.deps.store.update_chat(chat_id, update).await?.ok_or(ServiceError::ChatNotFound(chat_id))?;
        let view = self.view(&chat, &me).await?;
        let event = events::chat_edited(chat.id, &view.name, &view.description, &view.avatar, caller);
        self.deps.pipeline.publish_to_chat(chat.id, event, &[]).await?;
        Ok(view)
    }

    /// A group's owner or admins add people; answers the members added.
    pub async fn add_members(
        &self,
        caller: UserId,
        chat_id: ChatId,
        user_ids: &[UserId],
    ) -> ServiceResult<Vec<MemberView>> {
        let (chat, me) = membership(&self.deps, chat_id, caller).await?;
        if chat.kind != ChatKind::Group || !is_manager(&me) {
            return Err(ServiceError::Forbidden("only a group's owner or admins may add members".into()));
        }
        if user_ids.is_empty() {
            return Err(ServiceError::Invalid("user_ids must not be empty".into()));
        }
        // The cap and each one's consent are checked with the addition.
        let max = u32::try_from(self.deps.config.max_group_members).unwrap_or(u32::MAX);
        let joining = Joining { by: Some(caller), max_members: Some(max) };
        let added = self.deps.store.add_members(chat_id, user_ids, MemberRole::Member, now_millis(), joining).await?;
        if !added.is_empty() {
            let ids: Vec<UserId> = added.iter().map(|member| member.user_id).collect();
            self.deps.pipeline.publish_to_chat(chat_id, events::member_added(chat_id, &ids, caller), &[]).await?;
        }
        self.member_views(&added).await
    }

    async fn drop_member(&self, chat_id: ChatId, user_id: UserId, by: UserId) -> ServiceResult<()> {
        self.deps.store.remove_member(chat_id, user_id).await?;
        let event = events::member_removed(chat_id, user_id, by);
        // The one removed hears of it too.
        self.deps.pipeline.publish_to_chat(chat_id, event, &[user_id]).await
    }

    /// The owner removes anyone, an admin removes plain members.
    pub async fn remove_member(&self, caller: UserId, chat_id: ChatId, user_id: UserId) -> ServiceResult<()> {
        let (chat, me) = membership(&self.deps, chat_id, caller).await?;
        if user_id == caller {
            return Err(ServiceError::Invalid("leave the chat instead of removing yourself".into()));
        }
        let target = self
            .deps
            .store
            .member(chat_id, user_id)
            .await?
            .ok_or_else(|| ServiceError::NotMember(format!("user {user_id} is not a member")))?;
        let allowed = chat.kind == ChatKind::Group
            && match me.role {
                MemberRole::Owner => true,
                MemberRole::Admin => target.role == MemberRole::Member,
                MemberRole::Member => false,
            };
        if !allowed {
            return Err(ServiceError::Forbidden("you may not remove this member".into()));
        }
        self.drop_member(chat_id, user_id, caller).await
    }

    /// The caller leaves. An owner who leaves hands the group to the
    /// longest-standing admin, or else the longest-standing member.
    pub async fn leave(&self, caller: UserId, chat_id: ChatId) -> ServiceResult<()> {
        let (_, me) = membership(&self.deps, chat_id, caller).await?;
        if me.role == MemberRole::Owner {
            let members = self.deps.store.members(chat_id).await?;
            let heir = members
                .iter()
                .filter(|member| member.user_id != caller)
                .min_by_key(|member| (member.role != MemberRole::Admin, member.joined_at, member.user_id));
            if let Some(heir) = heir {
                self.deps.store.set_member_role(chat_id, heir.user_id, MemberRole::Owner).await?;
            }
        }
        self.drop_member(chat_id, caller, caller).await
    }

    /// The owner makes members admins (`admin`) or back (`member`).
    pub async fn set_role(&self, caller: UserId, chat_id: ChatId, user_id: UserId, role: &str) -> ServiceResult<()> {
        let new_role = match role {
            "admin" => MemberRole::Admin,
            "member" => MemberRole::Member,
            _ => return Err(ServiceError::Invalid("role must be admin or member".into())),
        };
        let (chat, me) = membership(&self.deps, chat_id, caller).await?;
        if chat.kind != ChatKind::Group || me.role != MemberRole::Owner || user_id == caller {
            return Err(ServiceError::Forbidden("only the owner sets other members' roles".into()));
        }
        if !self.deps.store.set_member_role(chat_id, user_id, new_role).await? {
            return Err(ServiceError::NotMember(format!("user {user_id} is not a member")));
        }
        let event = events::role_changed(chat_id, user_id, role, caller);
        self.deps.pipeline.publish_to_chat(chat_id, event, &[]).await
    }

    /// The caller's own pin and mute of a chat.
    pub async fn settings(
        &self,
        caller: UserId,
        chat_id: ChatId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
    ) -> ServiceResult<ChatView> {
        let (chat, _) = membership(&self.deps, chat_id, caller).await?;
        let me = self
            .deps
            .store
            .set_member_flags(chat_id, caller, is_pinned, is_muted)
            .await?
            .ok_or_else(ServiceError::not_member)?;
        self.view(&chat, &me).await
    }

    /// Who should see `user_id` typing in `chat_id`: its other members.
    /// The typist must be a member (20001 / 20002 otherwise).
    pub async fn typing_audience(&self, chat_id: ChatId, user_id: UserId) -> ServiceResult<Vec<UserId>> {
        let members = self.deps.store.members(chat_id).await?;
        if !members.iter().any(|member| member.user_id == user_id) {
            membership(&self.deps, chat_id, user_id).await?;
        }
        Ok(members.iter().map(|member| member.user_id).filter(|&member| member != user_id).collect())
    }
}
