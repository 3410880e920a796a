//! Emoji reactions on messages: members only, on messages that are
//! neither deleted nor expired, one of each emoji per user and a bounded
//! number of distinct emoji per message. Every member hears of each
//! change as `message.reaction`.

use protocol::ServerEvent;
use protocol::server::{MessageReaction, ReactionAction};
use protocol::time::now_millis;
use router::{Delivery, DeviceRef, Devices};
use storage::model::{MessageId, UserId};
use unicode_segmentation::UnicodeSegmentation;

use crate::{Deps, ServiceError, ServiceResult};

/// Most grapheme clusters in one reaction.
pub const EMOJI_MAX_GRAPHEMES: usize = 8;
/// Most distinct reactions on one message.
pub const DISTINCT_REACTIONS_MAX: usize = 20;

/// Reaction use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reactions {
    deps: Deps,
}

/// An emoji as kept: 1 to [`EMOJI_MAX_GRAPHEMES`] grapheme clusters, no
/// whitespace or control characters.
fn emoji(text: &str) -> ServiceResult<&str> {
    let count = text.graphemes(true).count();
    let clean = !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if (1..=EMOJI_MAX_GRAPHEMES).contains(&count) && clean {
        Ok(text)
    } else {
        Err(ServiceError::Invalid(format!("emoji must be 1 to {EMOJI_MAX_GRAPHEMES} characters without spaces")))
    }
}

impl Reactions {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// Adds the caller's reaction. Adding one already there changes
    /// nothing and tells no one. `origin` is the device that asked: it
    /// gets the answer, its user's other devices the event.
    pub async fn add(
        &self,
        caller: UserId,
        message_id: MessageId,
        text: &str,
        origin: Option<DeviceRef>,
    ) -> ServiceResult<MessageReaction> {
        let text = emoji(text)?;
        let (chat_id, members) = self.reactable(caller, message_id).await?;
        let present = self.deps.store.reactions(&[message_id]).await?;
        let mut distinct: Vec<&str> = present.iter().map(|reaction| reaction.emoji.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if !distinct.contains(&text) && distinct.len() >= DISTINCT_REACTIONS_MAX {
            return Err(ServiceError::Conflict(format!(
                "a message may carry at most {DISTINCT_REACTIONS_MAX} different reactions"
            )));
        }
        let added = self.deps.store.add_reaction(message_id, caller, text.to_owned(), now_millis()).await?;
        let event = MessageReaction {
            message_id,
            chat_id,
            user_id: caller,
            emoji: text.to_owned(),
            action: ReactionAction::Add,
        };
        if added {
            self.publish(members, &event, origin).await;
        }
        Ok(event)
    }

    /// Removes the caller's reaction; one that was not there is 404.
    pub async fn remove(
        &self,
        caller: UserId,
        message_id: MessageId,
        text: &str,
        origin: Option<DeviceRef>,
    ) -> ServiceResult<MessageReaction> {
        let text = emoji(text)?;
        let (chat_id, members) = self.reactable(caller, message_id).await?;
        if !self.deps.store.remove_reaction(message_id, caller, text).await? {
            return Err(ServiceError::NotFound("you have not reacted with this emoji".into()));
        }
        let event = MessageReaction {
            message_id,
            chat_id,
            user_id: caller,
            emoji: text.to_owned(),
            action: ReactionAction::Remove,
        };
        self.publish(members, &event, origin).await;
        Ok(event)
    }

    /// The message's chat and its members, when the caller is one of them
    /// and the message may still be reacted to.
    async fn reactable(&self, caller: UserId, id: MessageId) -> ServiceResult<(i64, Vec<UserId>)> {
        let store = &self.deps.store;
        let message = store.message(id).await?.ok_or(ServiceError::MessageNotFound(id))?;
        let members = store.members(message.chat_id).await?;
        if !members.iter().any(|member| member.user_id == caller) {
            // Outsiders learn nothing of the message.
            return Err(ServiceError::MessageNotFound(id));
        }
        let expired = message.expires_at.is_some_and(|at| at <= now_millis());
        if message.is_deleted || expired || message.seq == 0 {
            return Err(ServiceError::MessageForbidden(format!("message {id} can no longer be reacted to")));
        }
        Ok((message.chat_id, members.iter().map(|member| member.user_id).collect()))
    }

    async fn publish(&self, members: Vec<UserId>, event: &MessageReaction, origin: Option<DeviceRef>) {
        let devices = origin.map_or(Devices::All, Devices::AllBut);
        let delivery = Delivery { devices, ..Delivery::new(members, ServerEvent::MessageReaction(event.clone())) };
        if let Err(error) = self.deps.router.publish(delivery).await {
            // Stored: clients see it in the message's reactions.
            tracing::warn!(%error, "message.reaction not published");
        }
    }
}
