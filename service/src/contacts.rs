//! The caller's contact list: adding by phone number, aliases, blocks,
//! mutes. A block also stops the blocked user's messages to a private
//! chat and their calls (see the pipeline and the call rule).

use protocol::time::{now_millis, to_iso};
use protocol::views::ContactView;
use storage::model::{Contact, ContactUpdate, UserId};

use crate::{Deps, ServiceError, ServiceResult, validate, views};

/// Contact use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Contacts {
    deps: Deps,
}

impl Contacts {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// The entries of one owner's list with the contacts' public profiles,
    /// and whether each is online as far as the owner may know: one read of
    /// the users and one presence question for the whole list.
    async fn views(&self, contacts: Vec<Contact>) -> ServiceResult<Vec<ContactView>> {
        let ids: Vec<UserId> = contacts.iter().map(|contact| contact.contact_id).collect();
        let users = self.deps.store.users(&ids).await?;
        let online = crate::users::online_of(&self.deps, &ids).await;
        let mut views = Vec::with_capacity(contacts.len());
        for (contact, online) in contacts.into_iter().zip(online) {
            // Holding someone as an unblocked contact is what puts the owner in
            // their presence audience; a blocked one may still be a private-chat peer.
            let may_see = !contact.is_blocked
                || crate::users::may_see_presence(&self.deps, contact.user_id, contact.contact_id).await?;
            let user = users.iter().find(|user| user.id == contact.contact_id);
            views.push(ContactView {
                id: contact.id,
                user_id: contact.user_id,
                contact_id: contact.contact_id,
                nickname: contact.nickname,
                is_blocked: contact.is_blocked,
                is_muted: contact.is_muted,
                created_at: to_iso(contact.created_at),
                contact: user.map(|user| views::user_public(user, online && may_see)),
            });
        }
        Ok(views)
    }

    async fn view(&self, contact: Contact) -> ServiceResult<ContactView> {
        let mut views = self.views(vec![contact]).await?;
        views.pop().ok_or_else(|| ServiceError::NotFound("contact not found".into()))
    }

    pub async fn list(&self, caller: UserId) -> ServiceResult<Vec<ContactView>> {
        let contacts = self.deps.store.contacts(caller).await?;
        self.views(contacts).await
    }

    /// Adds the user with `phone` to the caller's list, never the caller.
    pub async fn add(&self, caller: UserId, phone: &str, nickname: String) -> ServiceResult<ContactView> {
        let phone = validate::phone(phone)?;
        validate::text("nickname", &nickname, 64)?;
        let other = self
            .deps
            .store
            .user_by_phone(phone)
            .await?
            .ok_or_else(|| ServiceError::UserNotFound("no user with this phone number".into()))?;
        let contact = self.deps.store.add_contact(caller, other.id, nickname, now_millis()).await?;
        self.view(contact).await
    }

    /// Sets a contact's alias, block or mute.
    pub async fn update(
        &self,
        caller: UserId,
        contact_id: UserId,
        nickname: Option<String>,
        is_blocked: Option<bool>,
        is_muted: Option<bool>,
    ) -> ServiceResult<ContactView> {
        validate::text("nickname", nickname.as_deref().unwrap_or_default(), 64)?;
        let update = ContactUpdate { nickname, is_blocked, is_muted, updated_at: now_millis() };
        let contact = self
            .deps
            .store
            .update_contact(caller, contact_id, update)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("user {contact_id} is not a contact")))?;
        self.view(contact).await
    }

    pub async fn remove(&self, caller: UserId, contact_id: UserId) -> ServiceResult<()> {
        if !self.deps.store.delete_contact(caller, contact_id).await? {
            return Err(ServiceError::NotFound(format!("user {contact_id} is not a contact")));
        }
        Ok(())
    }
}
