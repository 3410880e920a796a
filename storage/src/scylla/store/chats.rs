//! [`crate::ChatStore`] for [`ScyllaStore`].

use super::{
    Chat, ChatId, ChatStore, ChatSummary, ChatUpdate, LIST_CONCURRENCY, Member, MemberLock, MemberRole, Millis,
    NewChat, ScyllaStore, StoreError, StoreResult, UserId, async_trait, try_join, try_join_all,
};
use std::collections::HashSet;

use crate::model::{ChatKind, Joining, private_pair_key};

#[async_trait]
impl ChatStore for ScyllaStore {
    async fn create_chat(&self, new: NewChat) -> StoreResult<(Chat, bool)> {
        let _open = self.open_guard().await?;
        let pair = new.private_key()?;
        let others = new.others();
        if let Some(missing) = self.missing_user(&[new.created_by]).await?.or(self.missing_user(&others).await?) {
            return Err(StoreError::UserNotFound(missing));
        }
        if let Some(pair) = &pair
            && let Some(existing) = self.private_chat_id(pair).await?
        {
            return self.rejoin_private(existing, &new, &others).await;
        }
        if new.kind == ChatKind::Group {
            self.admit(Joining { by: new.added_by, max_members: None }, 1, &others).await?;
        }
        let id = self.inner.ids.next_id();
        let values = (
            id,
            new.kind.as_str(),
            new.name.as_str(),
            new.description.as_str(),
            new.avatar.as_str(),
            new.created_by,
            true,
            new.created_at,
            new.created_at,
        );
        // chat_seqs at write time 0, so every real seq (written at its own
        // seq as the time) supersedes it.
        try_join(self.run(&self.st().insert_chat, values), self.run(&self.st().init_last_seq, (id, 0_i64))).await?;
        if let Some(pair) = &pair
            && !self.applied(&self.st().claim_private, (pair.as_str(), id)).await?
        {
            // Another request created the pair's chat first: use theirs.
            self.run(&self.st().delete_chat, (id,)).await?;
            let existing = self.private_chat_id(pair).await?.ok_or(StoreError::ChatNotFound(id))?;
            return self.rejoin_private(existing, &new, &others).await;
        }
        self.join(id, new.kind, new.created_by, MemberRole::Owner, new.created_at).await?;
        for &user in &others {
            self.join(id, new.kind, user, MemberRole::Member, new.created_at).await?;
        }
        let chat = self.load_chat(id).await?.ok_or(StoreError::ChatNotFound(id))?;
        Ok((chat, true))
    }

    async fn chat(&self, id: ChatId) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        self.load_chat(id).await
    }

    async fn private_chat_between(&self, a: UserId, b: UserId) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        match self.private_chat_id(&private_pair_key(a, b)).await? {
            Some(id) => self.load_chat(id).await,
            None => Ok(None),
        }
    }

    async fn update_chat(&self, id: ChatId, update: ChatUpdate) -> StoreResult<Option<Chat>> {
        let _open = self.open_guard().await?;
        let Some(mut chat) = self.load_chat(id).await? else { return Ok(None) };
        for (field, value) in [
            (&mut chat.name, update.name),
            (&mut chat.description, update.description),
            (&mut chat.avatar, update.avatar),
        ] {
            if let Some(value) = value {
                *field = value;
            }
        }
        chat.updated_at = update.updated_at;
        chat.is_active = update.is_active.unwrap_or(chat.is_active);
        let values =
            (chat.name.as_str(), chat.description.as_str(), chat.avatar.as_str(), chat.updated_at, chat.is_active, id);
        self.run(&self.st().update_chat, values).await?;
        Ok(Some(chat))
    }

    async fn chats_of_user(
        &self,
        user_id: UserId,
        limit: u32,
        offset: u32,
        now: Millis,
    ) -> StoreResult<Vec<ChatSummary>> {
        let _open = self.open_guard().await?;
        let ids: Vec<ChatId> = self.chats_of(user_id).await?.into_iter().map(|(chat, _)| chat).collect();
        // The order needs every chat and membership; the expensive parts
        // (latest message, unread count) are read for the page only.
        let mut listed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CONCURRENCY) {
            let pairs =
                try_join_all(chunk.iter().map(|&chat| try_join(self.load_chat(chat), self.load_member(chat, user_id))));
            listed.extend(pairs.await?.into_iter().filter_map(|(chat, member)| Some((chat?, member?))));
        }
        listed.sort_unstable_by(|(a, am), (b, bm)| {
            (bm.is_pinned, b.updated_at, b.id).cmp(&(am.is_pinned, a.updated_at, a.id))
        });
        let page = listed.into_iter().skip(offset as usize).take(limit as usize);
        let summaries = page.map(|(chat, member)| async move {
            let (last_message, unread_count) =
                try_join(self.latest(chat.id, now), self.unread(chat.id, user_id, now)).await?;
            Ok::<_, StoreError>(ChatSummary { chat, member, last_message, unread_count })
        });
        try_join_all(summaries).await
    }

    async fn count_chats_of_user(&self, user_id: UserId) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.count(&self.st().chat_ids_of_user, (user_id,)).await
    }

    async fn add_members(
        &self,
        chat_id: ChatId,
        users: &[UserId],
        role: MemberRole,
        at: Millis,
        joining: Joining,
    ) -> StoreResult<Vec<Member>> {
        let _open = self.open_guard().await?;
        let chat = self.load_chat(chat_id).await?.ok_or(StoreError::ChatNotFound(chat_id))?;
        chat.check_takes_members()?;
        if let Some(missing) = self.missing_user(users).await? {
            return Err(StoreError::UserNotFound(missing));
        }
        // The cap is a count, and on CQL counting and inserting are not one
        // write: additions to a capped chat go one at a time.
        let lock = match joining.max_members {
            Some(_) => Some(self.lock_members(chat_id).await?),
            None => None,
        };
        let added = self.add_fresh(&chat, users, role, at, joining, lock.as_ref()).await;
        if let Some(lock) = lock {
            self.unlock_members(chat_id, lock.holder).await;
        }
        added
    }

    async fn remove_member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let removed = self.applied(&self.st().delete_member, (chat_id, user_id)).await?;
        self.run(&self.st().delete_chat_of_user, (user_id, chat_id)).await?;
        Ok(removed)
    }

    async fn set_member_role(&self, chat_id: ChatId, user_id: UserId, role: MemberRole) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().set_member_role, (role.as_str(), chat_id, user_id)).await
    }

    async fn set_member_flags(
        &self,
        chat_id: ChatId,
        user_id: UserId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
    ) -> StoreResult<Option<Member>> {
        let _open = self.open_guard().await?;
        let Some(mut member) = self.load_member(chat_id, user_id).await? else { return Ok(None) };
        member.is_pinned = is_pinned.unwrap_or(member.is_pinned);
        member.is_muted = is_muted.unwrap_or(member.is_muted);
        let values = (member.is_pinned, member.is_muted, chat_id, user_id);
        Ok(self.applied(&self.st().set_member_flags, values).await?.then_some(member))
    }

    async fn member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
        let _open = self.open_guard().await?;
        self.load_member(chat_id, user_id).await
    }

    async fn members(&self, chat_id: ChatId) -> StoreResult<Vec<Member>> {
        let _open = self.open_guard().await?;
        self.load_members(chat_id).await
    }
}

impl ScyllaStore {
    /// Adds those of `users` who are not members yet, within the cap and
    /// with their consent. With a cap, `lock` is the chat's member lock.
    async fn add_fresh(
        &self,
        chat: &Chat,
        users: &[UserId],
        role: MemberRole,
        at: Millis,
        joining: Joining,
        lock: Option<&MemberLock>,
    ) -> StoreResult<Vec<Member>> {
        let chat_id = chat.id;
        let members: HashSet<UserId> = self.load_members(chat_id).await?.iter().map(|member| member.user_id).collect();
        let mut fresh: Vec<UserId> = Vec::new();
        for &user in users {
            if !members.contains(&user) && !fresh.contains(&user) {
                fresh.push(user);
            }
        }
        self.admit(joining, members.len(), &fresh).await?;
        if lock.is_some_and(|lock| !lock.fresh()) {
            return Err(StoreError::Unavailable(format!("chat {chat_id}'s members took too long to count")));
        }
        let mut added = Vec::new();
        for &user_id in &fresh {
            if self.join(chat_id, chat.kind, user_id, role, at).await? {
                added.push(Member {
                    chat_id,
                    user_id,
                    role,
                    is_pinned: false,
                    is_muted: false,
                    last_read_seq: 0,
                    joined_at: at,
                });
            }
        }
        Ok(added)
    }
}
