//! [`crate::PairStore`] for [`SqliteStore`]: each operation is one job of
//! the writer, so its checks and writes are atomic.

use rusqlite::OptionalExtension;

use super::{Millis, SqliteStore, StoreError, StoreResult, UserId, async_trait, constraint_message, params};
use crate::PairStore;
use crate::model::{Couple, InvitationClaim, PairInvitation};

fn pair_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Couple> {
    Ok(Couple {
        user_id: row.get(0)?,
        partner_id: row.get(1)?,
        id: row.get(2)?,
        chat_id: row.get(3)?,
        since: row.get(4)?,
    })
}

const PAIR_COLUMNS: &str = "user_id, partner_id, pair_id, chat_id, since";

fn pair_of(conn: &rusqlite::Connection, user: UserId) -> StoreResult<Option<Couple>> {
    let sql = format!("SELECT {PAIR_COLUMNS} FROM pairs WHERE user_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([user], pair_row).optional()?)
}

#[async_trait]
impl PairStore for SqliteStore {
    async fn create_invitation(&self, invitation: PairInvitation) -> StoreResult<()> {
        self.write(move |conn| {
            // A spent or expired code may be handed out again.
            conn.prepare_cached(
                "DELETE FROM pair_invitations WHERE code = ?1 AND (used_by IS NOT NULL OR expires_at <= ?2)",
            )?
            .execute(params![invitation.code, invitation.created_at])?;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO pair_invitations (code, inviter, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![invitation.code, invitation.inviter, invitation.expires_at, invitation.created_at]);
            match inserted {
                Ok(_) => Ok(()),
                Err(error) if constraint_message(&error).is_some_and(|text| text.contains("code")) => {
                    Err(StoreError::CodeTaken)
                }
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(invitation.inviter)),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn live_invitations(&self, inviter: UserId, now: Millis) -> StoreResult<u64> {
        self.read(move |conn| {
            let count: u64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM pair_invitations WHERE inviter = ?1 AND expires_at > ?2 AND used_by IS NULL",
                )?
                .query_row(params![inviter, now], |row| row.get(0))?;
            Ok(count)
        })
        .await
    }

    async fn claim_invitation(&self, code: &str, claimer: UserId, now: Millis) -> StoreResult<InvitationClaim> {
        let code = code.to_owned();
        self.write(move |conn| {
            let found: Option<(UserId, Millis, Option<UserId>)> = conn
                .prepare_cached("SELECT inviter, expires_at, used_by FROM pair_invitations WHERE code = ?1")?
                .query_row([&code], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?;
            Ok(match found {
                None => InvitationClaim::Unknown,
                Some((_, _, Some(_))) => InvitationClaim::Used,
                Some((_, expires_at, None)) if expires_at <= now => InvitationClaim::Expired,
                Some((inviter, _, None)) => {
                    conn.prepare_cached("UPDATE pair_invitations SET used_by = ?1 WHERE code = ?2")?
                        .execute(params![claimer, code])?;
                    InvitationClaim::Claimed(inviter)
                }
            })
        })
        .await
    }

    async fn invitation(&self, code: &str) -> StoreResult<Option<PairInvitation>> {
        let code = code.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT code, inviter, expires_at, created_at FROM pair_invitations WHERE code = ?1")?
                .query_row([&code], |row| {
                    Ok(PairInvitation {
                        code: row.get(0)?,
                        inviter: row.get(1)?,
                        expires_at: row.get(2)?,
                        created_at: row.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn bind_pair(&self, couple: Couple) -> StoreResult<()> {
        self.write(move |conn| {
            for user in [couple.user_id, couple.partner_id] {
                if pair_of(conn, user)?.is_some() {
                    return Err(StoreError::AlreadyPaired(user));
                }
            }
            let mut insert = conn.prepare_cached(
                "INSERT INTO pairs (user_id, partner_id, pair_id, chat_id, since) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (user, partner) in [(couple.user_id, couple.partner_id), (couple.partner_id, couple.user_id)] {
                let inserted = insert.execute(params![user, partner, couple.id, couple.chat_id, couple.since]);
                match inserted {
                    Ok(_) => {}
                    Err(error) if constraint_message(&error).is_some() => return Err(StoreError::UserNotFound(user)),
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(())
        })
        .await
    }

    async fn pair_of(&self, user: UserId) -> StoreResult<Option<Couple>> {
        self.read(move |conn| pair_of(conn, user)).await
    }

    async fn unbind_pair(&self, user: UserId) -> StoreResult<Option<Couple>> {
        self.write(move |conn| {
            let Some(pair) = pair_of(conn, user)? else { return Ok(None) };
            conn.prepare_cached("DELETE FROM pairs WHERE pair_id = ?1")?.execute([pair.id])?;
            Ok(Some(pair))
        })
        .await
    }
}
