//! Pairs of users (seed 004's couples): one user invites with a short
//! code, the other accepts it, and the two are bound until either unbinds.
//! A pair shares its private chat; its `board` messages are the pair's
//! board. Unbinding closes that chat for new messages and keeps its
//! history readable; binding the same two again opens it again.

use protocol::commands::SendMessage;
use protocol::time::{now_millis, to_iso};
use protocol::views::MessageView;
use rand::Rng;
use storage::StoreError;
use storage::model::{ChatKind, ChatUpdate, Couple, InvitationClaim, MessageKind, PairInvitation, UserId};

use crate::notifications::NewNotice;
use crate::{CreateChat, Deps, HistoryQuery, Notifications, Sent, ServiceError, ServiceResult, validate};

/// Characters of an invitation code: no 0/O, 1/I/L to misread.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a code.
pub const CODE_LENGTH: usize = 6;
/// How long a code may be used.
pub const INVITATION_TTL_MS: i64 = 24 * 3_600 * 1_000;
/// Most live (unused, unexpired) codes one user may hold.
pub const MAX_LIVE_INVITATIONS: u64 = 5;
/// Most posts one board read answers.
pub const BOARD_PAGE: u32 = 100;
/// Longest board post, and longest signature.
const BOARD_POST_CHARS: usize = 1_000;
const BOARD_NICKNAME_CHARS: usize = 32;

/// Pair use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pairs {
    deps: Deps,
}

/// A code typed by a person, normalised: trimmed, upper case.
fn normalise(code: &str) -> ServiceResult<String> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() != CODE_LENGTH || !code.bytes().all(|byte| CODE_ALPHABET.contains(&byte)) {
        return Err(ServiceError::Invalid(format!("invite_code must be {CODE_LENGTH} letters and digits")));
    }
    Ok(code)
}

/// A new pair's id: 53 random bits (exact in a JSON number, too).
fn pair_id() -> i64 {
    i64::try_from(rand::random::<u64>() >> 11).unwrap_or(1).max(1)
}

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LENGTH).map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())])).collect()
}

impl Pairs {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    fn notifications(&self) -> Notifications {
        Notifications::new(self.deps.clone())
    }

    /// `user`'s pair, if they have one.
    pub async fn of(&self, user: UserId) -> ServiceResult<Option<Couple>> {
        Ok(self.deps.store.pair_of(user).await?)
    }

    /// A new one-use code for the caller to hand to their partner-to-be.
    pub async fn invite(&self, caller: UserId) -> ServiceResult<PairInvitation> {
        let store = &self.deps.store;
        if store.pair_of(caller).await?.is_some() {
            return Err(ServiceError::Conflict("you already have a partner; unbind first".into()));
        }
        let now = now_millis();
        if store.live_invitations(caller, now).await? >= MAX_LIVE_INVITATIONS {
            return Err(ServiceError::Invalid(format!(
                "you hold {MAX_LIVE_INVITATIONS} unused invitations already; use one or let them expire"
            )));
        }
        // 31^6 codes: a clash is rare, and another draw settles it.
        for _ in 0..5 {
            let invitation = PairInvitation {
                code: new_code(),
                inviter: caller,
                expires_at: now + INVITATION_TTL_MS,
                created_at: now,
            };
            match store.create_invitation(invitation.clone()).await {
                Ok(()) => {
                    metrics::counter!("switchboard_pair_invitations_total").increment(1);
                    return Ok(invitation);
                }
                Err(StoreError::CodeTaken) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(ServiceError::Unavailable("no free invitation code was found; try again".into()))
    }

    /// Accepts `code`: the caller and its inviter become a pair sharing a
    /// private chat, and the inviter is notified (stored and live).
    pub async fn accept(&self, caller: UserId, code: &str) -> ServiceResult<Couple> {
        let code = normalise(code)?;
        let store = &self.deps.store;
        let invitation =
            store.invitation(&code).await?.ok_or_else(|| ServiceError::NotFound("no such invitation code".into()))?;
        let inviter = invitation.inviter;
        if inviter == caller {
            return Err(ServiceError::Invalid("this is your own invitation code".into()));
        }
        if store.pair_of(caller).await?.is_some() {
            return Err(ServiceError::Conflict("you already have a partner; unbind first".into()));
        }
        if store.pair_of(inviter).await?.is_some() {
            return Err(ServiceError::Conflict("the inviter already has a partner".into()));
        }
        let now = now_millis();
        match store.claim_invitation(&code, caller, now).await? {
            InvitationClaim::Claimed(_) => {}
            InvitationClaim::Unknown => return Err(ServiceError::NotFound("no such invitation code".into())),
            InvitationClaim::Expired => return Err(ServiceError::Invalid("this invitation code has expired".into())),
            InvitationClaim::Used => return Err(ServiceError::Invalid("this invitation code was already used".into())),
        }
        let chats = crate::Chats::new(self.deps.clone());
        let new = CreateChat {
            kind: ChatKind::Private.as_str().into(),
            members: vec![inviter],
            rejoin_everyone: true,
            ..CreateChat::default()
        };
        let chat = chats.create(caller, new).await?;
        // The same two bound again: their chat opens again.
        let reopen = ChatUpdate { is_active: Some(true), updated_at: now, ..ChatUpdate::default() };
        store.update_chat(chat.id, reopen).await?;
        let couple = Couple { id: pair_id(), user_id: caller, partner_id: inviter, chat_id: chat.id, since: now };
        store.bind_pair(couple.clone()).await?;
        metrics::counter!("switchboard_pairs_bound_total").increment(1);
        tracing::info!(pair = couple.id, user = caller, partner = inviter, "pair bound");
        let name = store.user(caller).await?.map(|user| user.nickname).unwrap_or_default();
        self.notify(inviter, "couple_bound", format!("{name} accepted your invitation: you are now a couple"), &couple)
            .await;
        Ok(couple)
    }

    /// Unbinds the caller and their partner: their chat (and board) takes
    /// no new messages, its history stays; the partner is notified.
    pub async fn unbind(&self, caller: UserId) -> ServiceResult<Couple> {
        let store = &self.deps.store;
        let couple =
            store.unbind_pair(caller).await?.ok_or_else(|| ServiceError::Invalid("you have no partner".into()))?;
        let close = ChatUpdate { is_active: Some(false), updated_at: now_millis(), ..ChatUpdate::default() };
        store.update_chat(couple.chat_id, close).await?;
        metrics::counter!("switchboard_pairs_unbound_total").increment(1);
        tracing::info!(pair = couple.id, user = caller, partner = couple.partner_id, "pair unbound");
        let name = store.user(caller).await?.map(|user| user.nickname).unwrap_or_default();
        self.notify(couple.partner_id, "couple_unbound", format!("{name} ended your couple binding"), &couple).await;
        Ok(couple)
    }

    /// Best effort: the binding stands even if its notice is not stored.
    async fn notify(&self, user: UserId, kind: &str, body: String, couple: &Couple) {
        let notice = NewNotice {
            user_ids: vec![user],
            kind: kind.into(),
            title: String::new(),
            body,
            data: serde_json::json!({ "couple_id": couple.id.to_string(), "since": to_iso(couple.since) }),
            related_resource_type: Some("couple".into()),
            related_resource_id: Some(couple.id.to_string()),
        };
        if let Err(error) = self.notifications().send(notice).await {
            tracing::warn!(%error, user, kind, "pair notification not sent");
        }
    }

    /// The caller's pair, or 403: the board is the two partners' only.
    async fn bound(&self, caller: UserId) -> ServiceResult<Couple> {
        self.of(caller).await?.ok_or_else(|| ServiceError::Forbidden("the board is a bound couple's only".into()))
    }

    /// Posts to the pair's board: a `board` message of their chat, signed
    /// with `nickname`, sequenced and pushed live like any message.
    pub async fn post(&self, caller: UserId, message: String, nickname: String) -> ServiceResult<Sent> {
        let couple = self.bound(caller).await?;
        if message.trim().is_empty() {
            return Err(ServiceError::Invalid("message must not be empty".into()));
        }
        validate::text("message", &message, BOARD_POST_CHARS)?;
        validate::text("nickname", &nickname, BOARD_NICKNAME_CHARS)?;
        let command = SendMessage {
            kind: MessageKind::Board.as_str().into(),
            content: message,
            extra: Some(serde_json::json!({ "nickname": nickname })),
            ..SendMessage::default()
        };
        let request = crate::new_message(command, couple.chat_id, caller)?;
        self.deps.pipeline.send(request).await
    }

    /// The pair's board: pinned posts first, then the rest, oldest first
    /// (the latest [`BOARD_PAGE`]).
    pub async fn board(&self, caller: UserId) -> ServiceResult<Vec<MessageView>> {
        let couple = self.bound(caller).await?;
        let query = HistoryQuery {
            limit: BOARD_PAGE,
            kind: Some(MessageKind::Board.as_str().into()),
            ..HistoryQuery::default()
        };
        let mut posts = crate::Messages::new(self.deps.clone()).history(caller, couple.chat_id, query).await?.messages;
        posts.retain(|post| !post.is_deleted);
        posts.sort_by_key(|post| !post.is_pinned);
        Ok(posts)
    }
}

#[cfg(test)]
mod tests {
    use super::{CODE_ALPHABET, CODE_LENGTH, new_code, normalise};

    #[test]
    fn codes_are_six_unambiguous_characters() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LENGTH);
            assert!(code.bytes().all(|byte| CODE_ALPHABET.contains(&byte)), "{code}");
        }
        assert!(!CODE_ALPHABET.iter().any(|byte| b"01OIL".contains(byte)));
        assert_eq!(normalise(" a8c3f9 ").unwrap(), "A8C3F9");
        assert!(normalise("A8C3F").is_err() && normalise("A8C3F0").is_err() && normalise("A8C3F9X").is_err());
    }
}
