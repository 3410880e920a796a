//! [`crate::PairStore`] for [`ScyllaStore`]: codes are used once with a
//! conditional update; each side of a pair is claimed with
//! `INSERT ... IF NOT EXISTS`, and a half-made pair is released again.

use super::{Millis, ScyllaStore, StoreError, StoreResult, UserId, async_trait, try_join_all};
use crate::PairStore;
use crate::model::{Couple, InvitationClaim, PairInvitation};

/// An expired code is kept this long (so it reads as expired, not unknown).
const KEEP_EXPIRED_SECS: i64 = 86_400;

type InvitationRow = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
type PairRow = (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

fn couple_of(row: PairRow) -> Option<Couple> {
    let (user_id, partner_id, id, chat_id, since) = row;
    Some(Couple { id: id?, user_id, partner_id: partner_id?, chat_id: chat_id?, since: since.unwrap_or(0) })
}

#[async_trait]
impl PairStore for ScyllaStore {
    async fn create_invitation(&self, invitation: PairInvitation) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        self.require_user(invitation.inviter).await?;
        let live_secs = (invitation.expires_at - invitation.created_at).max(1000) / 1000;
        let ttl = i32::try_from(live_secs + KEEP_EXPIRED_SECS).unwrap_or(i32::MAX);
        let PairInvitation { code, inviter, expires_at, created_at } = &invitation;
        let values = (code.as_str(), *inviter, *expires_at, *created_at, ttl);
        if !self.applied(&self.st().insert_invitation, values).await? {
            return Err(StoreError::CodeTaken);
        }
        self.run(&self.st().insert_invitation_of_inviter, (*inviter, code.as_str(), *expires_at, ttl)).await
    }

    async fn live_invitations(&self, inviter: UserId, now: Millis) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        let codes = self.rows::<(String, Option<i64>)>(&self.st().invitations_of_inviter, (inviter,)).await?;
        let unexpired = codes.iter().filter(|(_, expires_at)| expires_at.is_some_and(|at| at > now));
        let rows = try_join_all(
            unexpired.map(|(code, _)| self.row::<InvitationRow>(&self.st().select_invitation, (code.as_str(),))),
        )
        .await?;
        // Unused, and still this inviter's (a code is unique while it lives).
        Ok(rows.into_iter().flatten().filter(|row| row.1 == Some(inviter) && row.3.is_none()).count() as u64)
    }

    async fn claim_invitation(&self, code: &str, claimer: UserId, now: Millis) -> StoreResult<InvitationClaim> {
        let _open = self.open_guard().await?;
        let Some((_, inviter, expires_at, used_by, _)) =
            self.row::<InvitationRow>(&self.st().select_invitation, (code,)).await?
        else {
            return Ok(InvitationClaim::Unknown);
        };
        let (Some(inviter), Some(expires_at)) = (inviter, expires_at) else { return Ok(InvitationClaim::Unknown) };
        if used_by.is_some() {
            return Ok(InvitationClaim::Used);
        }
        if expires_at <= now {
            return Ok(InvitationClaim::Expired);
        }
        if self.applied(&self.st().use_invitation, (claimer, code)).await? {
            Ok(InvitationClaim::Claimed(inviter))
        } else {
            Ok(InvitationClaim::Used)
        }
    }

    async fn invitation(&self, code: &str) -> StoreResult<Option<PairInvitation>> {
        let _open = self.open_guard().await?;
        let row = self.row::<InvitationRow>(&self.st().select_invitation, (code,)).await?;
        Ok(row.and_then(|(code, inviter, expires_at, _, created_at)| {
            Some(PairInvitation {
                code,
                inviter: inviter?,
                expires_at: expires_at?,
                created_at: created_at.unwrap_or(0),
            })
        }))
    }

    async fn bind_pair(&self, couple: Couple) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        for user in [couple.user_id, couple.partner_id] {
            self.require_user(user).await?;
        }
        let claim = |user: UserId, partner: UserId| {
            self.applied(&self.st().claim_pair, (user, partner, couple.id, couple.chat_id, couple.since))
        };
        if !claim(couple.user_id, couple.partner_id).await? {
            return Err(StoreError::AlreadyPaired(couple.user_id));
        }
        if !claim(couple.partner_id, couple.user_id).await? {
            self.applied(&self.st().release_pair, (couple.user_id, couple.id)).await?;
            return Err(StoreError::AlreadyPaired(couple.partner_id));
        }
        Ok(())
    }

    async fn pair_of(&self, user: UserId) -> StoreResult<Option<Couple>> {
        let _open = self.open_guard().await?;
        Ok(self.row::<PairRow>(&self.st().select_pair, (user,)).await?.and_then(couple_of))
    }

    async fn unbind_pair(&self, user: UserId) -> StoreResult<Option<Couple>> {
        let _open = self.open_guard().await?;
        let Some(pair) = self.row::<PairRow>(&self.st().select_pair, (user,)).await?.and_then(couple_of) else {
            return Ok(None);
        };
        if !self.applied(&self.st().release_pair, (user, pair.id)).await? {
            return Ok(None); // unbound meanwhile
        }
        self.applied(&self.st().release_pair, (pair.partner_id, pair.id)).await?;
        Ok(Some(pair))
    }
}
