//! [`crate::MessageStore`] for [`ScyllaStore`].

use super::{
    Appended, ChatId, Filter, IdClaim, Message, MessageId, MessageQuery, MessageRow, MessageStore, Millis, NewMessage,
    Reaction, ReactionRow, ScheduledRow, ScyllaStore, Seq, StoreError, StoreResult, UserId, async_trait, shard_of_id,
    try_join, try_join_all, visible,
};
use crate::model::{ReceiptKind, ReceiptMark};

#[async_trait]
impl MessageStore for ScyllaStore {
    async fn append_message(&self, message: NewMessage) -> StoreResult<Appended> {
        let _open = self.open_guard().await?;
        self.append(message).await
    }

    /// Each chat's messages in their order, the chats side by side: a
    /// message waits only for those before it in its own chat.
    async fn append_messages(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<Appended>>> {
        let _open = self.open_guard().await?;
        let mut chats: Vec<(ChatId, Vec<(usize, NewMessage)>)> = Vec::new();
        for (at, message) in messages.into_iter().enumerate() {
            match chats.iter_mut().find(|(chat, _)| *chat == message.chat_id) {
                Some((_, queue)) => queue.push((at, message)),
                None => chats.push((message.chat_id, vec![(at, message)])),
            }
        }
        let runs = chats.into_iter().map(|(_, queue)| async move {
            let mut outcomes = Vec::with_capacity(queue.len());
            for (at, message) in queue {
                outcomes.push((at, self.append(message).await));
            }
            outcomes
        });
        let mut outcomes: Vec<(usize, StoreResult<Appended>)> =
            futures_util::future::join_all(runs).await.into_iter().flatten().collect();
        outcomes.sort_unstable_by_key(|(at, _)| *at);
        Ok(outcomes.into_iter().map(|(_, outcome)| outcome).collect())
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.load_message(id).await
    }

    async fn messages_by_id(&self, ids: &[MessageId]) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        let found = try_join_all(ids.iter().map(|&id| self.load_message(id))).await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn messages(&self, chat_id: ChatId, query: MessageQuery) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        let after = match query.after {
            Some(cursor) => match self.cursor_seq(chat_id, cursor).await? {
                Some(seq) => Some(seq),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let before = match query.before {
            Some(cursor) => match self.cursor_seq(chat_id, cursor).await? {
                Some(seq) => Some(seq),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        // Anchored at the newest end unless only `after` is given.
        let ascending = after.is_some() && before.is_none();
        let before = if let Some(seq) = before {
            seq
        } else {
            let Some(top) = self.top_seq(chat_id).await? else { return Ok(Vec::new()) };
            top + 1
        };
        let filter = Filter::of(&query);
        let mut page = self
            .walk(chat_id, after.unwrap_or(0), before, ascending, &filter, query.offset as usize, query.limit as usize)
            .await?;
        page.sort_unstable_by_key(|message| message.seq);
        Ok(page)
    }

    async fn latest_message(&self, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.latest(chat_id, now).await
    }

    async fn edit_message(&self, id: MessageId, content: String, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        message.check_editable()?;
        let bucket = self.inner.buckets.of(message.seq) as i64;
        let values = (content.as_str(), true, at, message.chat_id, bucket, message.seq as i64);
        self.run(&self.st().edit_message, values).await?;
        message.content = content;
        message.is_edited = true;
        message.updated_at = at;
        Ok(Some(message))
    }

    async fn delete_message(&self, id: MessageId, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        self.erase(&message, at).await?;
        message.deleted_at = Some(message.deleted_at.unwrap_or(at));
        message.updated_at = at;
        message.is_deleted = true;
        message.is_pinned = false;
        message.content.clear();
        message.file_name.clear();
        message.file_size = 0;
        message.file_url.clear();
        message.thumbnail.clear();
        Ok(Some(message))
    }

    async fn set_message_pinned(&self, id: MessageId, pinned: bool, at: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(mut message) = self.load_message(id).await? else { return Ok(None) };
        message.check_pinnable(pinned)?;
        let (chat, seq) = (message.chat_id, message.seq as i64);
        let bucket = self.inner.buckets.of(message.seq) as i64;
        let pin = async {
            if pinned {
                self.run(&self.st().insert_pin, (chat, seq, id)).await
            } else {
                self.run(&self.st().delete_pin, (chat, seq)).await
            }
        };
        try_join(self.run(&self.st().pin_message, (pinned, at, chat, bucket, seq)), pin).await?;
        message.is_pinned = pinned;
        message.updated_at = at;
        Ok(Some(message))
    }

    async fn pinned_messages(&self, chat_id: ChatId, now: Millis) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        let seqs = self.rows::<(i64,)>(&self.st().select_pins, (chat_id,)).await?;
        let buckets = self.inner.buckets;
        let rows = try_join_all(seqs.iter().map(|&(seq,)| {
            self.row::<MessageRow>(&self.st().select_message, (chat_id, buckets.of(seq as u64) as i64, seq))
        }))
        .await?;
        let mut pinned: Vec<Message> = rows
            .into_iter()
            .flatten()
            .filter_map(MessageRow::into_message)
            .filter(|message| message.is_pinned && visible(message, now))
            .collect();
        pinned.sort_unstable_by_key(|message| message.seq);
        Ok(pinned)
    }

    async fn schedule_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let _open = self.open_guard().await?;
        let send_at = new.due_at()?;
        if self.recorded_seq(new.chat_id).await?.is_none() {
            return Err(StoreError::ChatNotFound(new.chat_id));
        }
        let id = self.inner.ids.next_id();
        if let Some(client_id) = new.client_message_id.as_deref()
            && let Err(original) = self.claim_client_id(new.sender_id, client_id, id).await?
        {
            return Ok(Appended::Duplicate(original));
        }
        let row = ScheduledRow::new(id, &new, send_at);
        try_join(
            self.run(&self.st().insert_scheduled, row),
            self.run(&self.st().insert_due, (shard_of_id(id), send_at, id, new.chat_id)),
        )
        .await?;
        self.load_scheduled(id).await?.map(Appended::New).ok_or(StoreError::MessageNotFound(id))
    }

    async fn scheduled_message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        self.load_scheduled(id).await
    }

    async fn due_scheduled(&self, now: Millis, limit: u32) -> StoreResult<Vec<Message>> {
        let _open = self.open_guard().await?;
        self.due(now, limit).await
    }

    async fn release_scheduled(&self, id: MessageId, now: Millis) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(held) = self.load_scheduled(id).await? else { return Ok(None) };
        let new = held.clone().release(now);
        let recorded = self.recorded_seq(new.chat_id).await?.ok_or(StoreError::ChatNotFound(new.chat_id))?;
        let turn = self.turn(new.chat_id).await;
        let released = self.place_next(id, &new, recorded, IdClaim::Release).await;
        drop(turn);
        let released = released?;
        self.unschedule(&held).await?;
        Ok(released)
    }

    async fn cancel_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let _open = self.open_guard().await?;
        let Some(held) = self.load_scheduled(id).await? else { return Ok(None) };
        self.unschedule(&held).await?;
        self.release_client_id(held.sender_id, held.client_message_id.as_deref(), id).await?;
        Ok(Some(held))
    }

    async fn add_reaction(
        &self,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
        at: Millis,
    ) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.load_message(message_id).await?.is_none_or(|message| message.is_deleted) {
            return Err(StoreError::MessageNotFound(message_id));
        }
        self.applied(&self.st().insert_reaction, (message_id, user_id, emoji, at)).await
    }

    async fn remove_reaction(&self, message_id: MessageId, user_id: UserId, emoji: &str) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        self.applied(&self.st().delete_reaction, (message_id, user_id, emoji)).await
    }

    async fn reactions(&self, message_ids: &[MessageId]) -> StoreResult<Vec<Reaction>> {
        let _open = self.open_guard().await?;
        let rows =
            try_join_all(message_ids.iter().map(|&id| self.rows::<ReactionRow>(&self.st().select_reactions, (id,))))
                .await?;
        let mut reactions: Vec<Reaction> = rows.into_iter().flatten().map(ReactionRow::into_reaction).collect();
        reactions.sort_by_key(|reaction| (reaction.message_id, reaction.created_at));
        Ok(reactions)
    }

    async fn mark_read(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq> {
        let _open = self.open_guard().await?;
        for _ in 0..8 {
            let (member, top) = try_join(self.load_member(chat_id, user_id), self.top_seq(chat_id)).await?;
            let Some(member) = member else { return Err(StoreError::NotMember { chat_id, user_id }) };
            let top = top.unwrap_or(0);
            let target = seq.min(top);
            if target <= member.last_read_seq {
                return Ok(member.last_read_seq);
            }
            let values = (target as i64, chat_id, user_id, target as i64);
            if self.applied(&self.st().raise_read_marker, values).await? {
                // Only the raise that applied keeps the advance: one row per seq.
                let advance = (chat_id, user_id, ReceiptKind::Read.as_str(), target as i64, at);
                self.run(&self.st().insert_receipt, advance).await?;
                return Ok(target);
            }
            // Someone moved it meanwhile (or the member left): read again.
        }
        Err(StoreError::Scylla(format!("the read marker of user {user_id} in chat {chat_id} kept moving")))
    }

    async fn mark_delivered(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq> {
        let _open = self.open_guard().await?;
        let (member, top) = try_join(self.load_member(chat_id, user_id), self.top_seq(chat_id)).await?;
        if member.is_none() {
            return Err(StoreError::NotMember { chat_id, user_id });
        }
        let kind = ReceiptKind::Delivered.as_str();
        let before = self.row::<(i64,)>(&self.st().top_receipt, (chat_id, user_id, kind)).await?;
        let before = before.map_or(0, |(seq,)| seq as u64);
        let target = seq.min(top.unwrap_or(0));
        if target <= before {
            return Ok(before);
        }
        // Racing advances each keep a row; a message's time is the earliest covering it.
        self.applied(&self.st().claim_receipt, (chat_id, user_id, kind, target as i64, at)).await?;
        Ok(target)
    }

    async fn receipts(&self, chat_id: ChatId, from: Seq, to: Seq) -> StoreResult<Vec<ReceiptMark>> {
        let _open = self.open_guard().await?;
        let members = self.load_members(chat_id).await?;
        let mut asks = Vec::new();
        for member in &members {
            for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
                // A read marker below the range has nothing in or past it.
                if kind == ReceiptKind::Read && member.last_read_seq < from {
                    continue;
                }
                asks.push((member.user_id, kind));
            }
        }
        let found = try_join_all(asks.into_iter().map(|(user_id, kind)| async move {
            let key = (chat_id, user_id, kind.as_str());
            let (within, after) = try_join(
                self.rows::<(i64, Option<i64>)>(
                    &self.st().receipts_within,
                    (key.0, key.1, key.2, from as i64, to as i64),
                ),
                self.rows::<(i64, Option<i64>)>(&self.st().receipt_after, (key.0, key.1, key.2, to as i64)),
            )
            .await?;
            let marks: Vec<ReceiptMark> = within
                .into_iter()
                .chain(after)
                .filter_map(|(seq, at)| Some(ReceiptMark { user_id, kind, seq: seq as u64, at: at? }))
                .collect();
            Ok::<_, StoreError>(marks)
        }))
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn unread_count(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.unread(chat_id, user_id, now).await
    }
}
