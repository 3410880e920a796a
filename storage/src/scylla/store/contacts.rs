//! [`crate::ContactStore`] for [`ScyllaStore`].

use super::{
    ChatId, ChatKind, Contact, ContactRow, ContactStore, ContactUpdate, HashSet, Millis, ScyllaStore, StoreError,
    StoreResult, UserId, async_trait, blockers_among, try_join, try_join_all,
};

#[async_trait]
impl ContactStore for ScyllaStore {
    async fn add_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        nickname: String,
        at: Millis,
    ) -> StoreResult<Contact> {
        let _open = self.open_guard().await?;
        crate::model::check_contact(user_id, contact_id)?;
        if let Some(missing) = self.missing_user(&[user_id, contact_id]).await? {
            return Err(StoreError::UserNotFound(missing));
        }
        let id = self.inner.ids.next_id();
        let values = (user_id, contact_id, id, nickname.as_str(), false, false, at, at);
        if !self.applied(&self.st().insert_contact, values).await? {
            return Err(StoreError::ContactExists);
        }
        self.run(&self.st().insert_contact_reverse, (contact_id, user_id, false)).await?;
        Ok(Contact {
            id,
            user_id,
            contact_id,
            nickname,
            is_blocked: false,
            is_muted: false,
            created_at: at,
            updated_at: at,
        })
    }

    async fn contacts(&self, user_id: UserId) -> StoreResult<Vec<Contact>> {
        let _open = self.open_guard().await?;
        let rows = self.rows::<ContactRow>(&self.st().select_contacts, (user_id,)).await?;
        let mut contacts: Vec<Contact> = rows.into_iter().filter_map(ContactRow::into_contact).collect();
        contacts.sort_unstable_by_key(|contact| contact.id);
        Ok(contacts)
    }

    async fn contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<Option<Contact>> {
        let _open = self.open_guard().await?;
        self.load_contact(user_id, contact_id).await
    }

    async fn update_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        update: ContactUpdate,
    ) -> StoreResult<Option<Contact>> {
        let _open = self.open_guard().await?;
        let Some(mut contact) = self.load_contact(user_id, contact_id).await? else { return Ok(None) };
        if let Some(nickname) = update.nickname {
            contact.nickname = nickname;
        }
        contact.is_blocked = update.is_blocked.unwrap_or(contact.is_blocked);
        contact.is_muted = update.is_muted.unwrap_or(contact.is_muted);
        contact.updated_at = update.updated_at;
        let values =
            (contact.nickname.as_str(), contact.is_blocked, contact.is_muted, contact.updated_at, user_id, contact_id);
        try_join(
            self.run(&self.st().update_contact, values),
            self.run(&self.st().insert_contact_reverse, (contact_id, user_id, contact.is_blocked)),
        )
        .await?;
        Ok(Some(contact))
    }

    async fn delete_contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let existed = self.load_contact(user_id, contact_id).await?.is_some();
        try_join(
            self.run(&self.st().delete_contact, (user_id, contact_id)),
            self.run(&self.st().delete_contact_reverse, (contact_id, user_id)),
        )
        .await?;
        Ok(existed)
    }

    async fn is_blocked(&self, blocker: UserId, target: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        Ok(self.load_contact(blocker, target).await?.is_some_and(|contact| contact.is_blocked))
    }

    async fn blockers_of(&self, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>> {
        let _open = self.open_guard().await?;
        Ok(blockers_among(self.contact_holders(sender).await?, among))
    }

    /// Three reads about the viewer (who holds them as a contact, and with
    /// a block; whom they hold; their chats), then, at once, the chats of
    /// each subject the contacts did not settle.
    async fn presence_visible(&self, viewer: UserId, subjects: &[UserId]) -> StoreResult<Vec<UserId>> {
        let _open = self.open_guard().await?;
        let (holders, (own, chats)) = try_join(
            self.contact_holders(viewer),
            try_join(self.rows::<ContactRow>(&self.st().select_contacts, (viewer,)), self.chats_of(viewer)),
        )
        .await?;
        let blocking: HashSet<UserId> =
            holders.iter().filter(|(_, blocks)| blocks.unwrap_or(false)).map(|(holder, _)| *holder).collect();
        let holding: HashSet<UserId> = holders.iter().map(|(holder, _)| *holder).collect();
        let mine: HashSet<UserId> =
            own.into_iter().filter_map(ContactRow::into_contact).map(|c| c.contact_id).collect();
        let my_chats: HashSet<ChatId> = chats.into_iter().map(|(chat, _)| chat).collect();
        let mutual = |subject: &UserId| mine.contains(subject) && holding.contains(subject);
        let open: Vec<UserId> = subjects
            .iter()
            .copied()
            .filter(|subject| *subject != viewer && !blocking.contains(subject) && !mutual(subject))
            .collect();
        let their_chats = try_join_all(open.iter().map(|&subject| self.chats_of(subject))).await?;
        let sharing: HashSet<UserId> = open
            .iter()
            .zip(their_chats)
            .filter(|(_, chats)| chats.iter().any(|(chat, _)| my_chats.contains(chat)))
            .map(|(&subject, _)| subject)
            .collect();
        Ok(subjects
            .iter()
            .copied()
            .filter(|subject| {
                *subject == viewer || (!blocking.contains(subject) && (mutual(subject) || sharing.contains(subject)))
            })
            .collect())
    }

    async fn presence_audience(&self, user_id: UserId) -> StoreResult<Vec<UserId>> {
        let _open = self.open_guard().await?;
        let (holders, chats) = try_join(self.contact_holders(user_id), self.chats_of(user_id)).await?;
        let own = self.rows::<ContactRow>(&self.st().select_contacts, (user_id,)).await?;
        let own: Vec<Contact> = own.into_iter().filter_map(ContactRow::into_contact).collect();
        let blocked: HashSet<UserId> = own.iter().filter(|c| c.is_blocked).map(|c| c.contact_id).collect();
        let mine: HashSet<UserId> = own.iter().filter(|c| !c.is_blocked).map(|c| c.contact_id).collect();
        // Mutual contacts (neither blocking the other), and private-chat
        // peers the user has not blocked.
        let mut audience: HashSet<UserId> = holders
            .into_iter()
            .filter(|(holder, blocks)| !blocks.unwrap_or(false) && mine.contains(holder))
            .map(|(holder, _)| holder)
            .collect();
        let private = chats.into_iter().filter(|(_, kind)| kind.as_deref() == Some(ChatKind::Private.as_str()));
        for members in try_join_all(private.map(|(chat, _)| self.load_members(chat))).await? {
            audience
                .extend(members.iter().map(|m| m.user_id).filter(|&peer| peer != user_id && !blocked.contains(&peer)));
        }
        Ok(audience.into_iter().collect())
    }

    async fn share_a_chat(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        let (mine, theirs) = try_join(self.chats_of(a), self.chats_of(b)).await?;
        let mine: HashSet<ChatId> = mine.into_iter().map(|(chat, _)| chat).collect();
        Ok(theirs.iter().any(|(chat, _)| mine.contains(chat)))
    }
}
