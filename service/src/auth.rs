//! Access and refresh tokens: the one auth module both servers use (the
//! sidecar issues and revokes, the gateway verifies, every process follows
//! revocations made by the others).
//!
//! Access tokens are HS256 JWTs with a `jti`; logout denies the `jti`
//! until the token would have expired (kept in the store, so a restart
//! does not un-revoke it, and in memory, so checking costs no I/O).
//! Refresh tokens are opaque strings stored only as SHA-256 hashes,
//! rotated on every use; presenting a spent one revokes its whole family,
//! and the family's access tokens with it (each names its family). The
//! same refresh token presented again within a short grace window (an
//! honest client's two concurrent refreshes) gets the same successor and
//! an access token, on whichever process of a cluster it lands: a first
//! token is random, and each successor is a keyed hash of the token it
//! replaces, so every process names the same one, and the store says
//! whether the spend was recent.
//!
//! Whoever holds open sessions (the gateway) watches [`TokenService::changes`]
//! and re-checks them with [`TokenService::still_valid`].

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
pub use protocol::Claims;
use protocol::ErrorCode;
use protocol::time::now_millis;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use storage::model::{RefreshRotation, RefreshToken, UserId};
use storage::{Store, StoreError};

/// A freshly issued pair.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token expired")]
    Expired,
    #[error("refresh token invalid")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues, verifies and revokes tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
}

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// Revoked `jti` (or `fam:<family>`) -> when the entry may go (ms):
    /// the token's expiry plus the validation leeway.
    denied: DashMap<String, i64>,
    store: Arc<dyn Store>,
    /// The key successors of refresh tokens are derived with.
    successor_key: Vec<u8>,
    reuse_grace_ms: i64,
    /// Bumped whenever a token or family is revoked here or found revoked
    /// by another process.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Seconds of clock skew a token's expiry is allowed.
const LEEWAY_SECS: u64 = 5;

/// How long the same refresh token may be presented again and get the same
/// new pair (an honest client's concurrent refreshes) by default.
pub const DEFAULT_REUSE_GRACE: Duration = Duration::from_secs(10);

/// The denylist key of a refresh family.
fn family_key(family: &str) -> String {
    format!("fam:{family}")
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").field("access_ttl", &self.inner.access_ttl).finish_non_exhaustive()
    }
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// The stored form of a refresh token.
fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl TokenService {
    /// A service signing with `secret`, loading revoked tokens from `store`.
    pub async fn load(
        store: Arc<dyn Store>,
        secret: &[u8],
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Self, StoreError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        // `sub` is a numeric user id here; the library checks only string
        // subjects, so presence of `sub` is enforced by deserialising Claims.
        validation.set_required_spec_claims(&["exp"]);
        let denied = DashMap::new();
        for (jti, expires_at) in store.revoked_access_tokens(now_millis()).await? {
            denied.insert(jti, expires_at);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                access_ttl,
                refresh_ttl,
                denied,
                store,
                successor_key: secret.to_vec(),
                reuse_grace_ms: i64::try_from(DEFAULT_REUSE_GRACE.as_millis()).unwrap_or(i64::MAX),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The same service with another reuse grace window (must be set
    /// before the service is shared).
    #[must_use]
    pub fn with_reuse_grace(mut self, grace: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.reuse_grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        }
        self
    }

    /// A receiver that changes whenever a revocation becomes known here.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|count| *count += 1);
    }

    /// Whether a session opened with `claims` may go on at `now_secs`: not
    /// expired, not revoked, its family not revoked.
    pub fn still_valid(&self, claims: &Claims, now_secs: i64) -> bool {
        claims.exp > now_secs && !self.is_denied(claims)
    }

    fn is_denied(&self, claims: &Claims) -> bool {
        self.inner.denied.contains_key(&claims.jti)
            || claims.fam.as_ref().is_some_and(|family| self.inner.denied.contains_key(&family_key(family)))
    }

    /// When a denylist entry for a token expiring at `exp` (seconds) may go.
    fn deny_until(exp_secs: i64) -> i64 {
        (exp_secs + LEEWAY_SECS as i64) * 1000
    }

    /// Denies `key` until `until` (ms), here and, through the store, everywhere.
    async fn deny(&self, key: String, until: i64) -> Result<(), StoreError> {
        self.inner.store.revoke_access_token(&key, until, now_millis()).await?;
        self.inner.denied.insert(key, until);
        self.changed();
        Ok(())
    }

    /// Seconds an access token lives.
    pub fn access_ttl_secs(&self) -> u64 {
        self.inner.access_ttl.as_secs()
    }

    fn access_token(&self, user_id: UserId, family: &str) -> String {
        self.access_token_as(user_id, family, random_token(16), now_millis())
    }

    /// An access token with this `jti`, issued at `issued_at` (ms): the
    /// same arguments sign the same token.
    fn access_token_as(&self, user_id: UserId, family: &str, jti: String, issued_at: i64) -> String {
        let iat = issued_at / 1000;
        let claims = Claims {
            sub: user_id,
            jti,
            iat,
            exp: iat + self.inner.access_ttl.as_secs() as i64,
            fam: Some(family.to_owned()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    async fn new_refresh(&self, user_id: UserId, family_id: String) -> Result<String, StoreError> {
        let token = random_token(32);
        let now = now_millis();
        self.inner
            .store
            .insert_refresh_token(RefreshToken {
                token_hash: hash(&token),
                user_id,
                family_id,
                expires_at: now + self.inner.refresh_ttl.as_millis() as i64,
                created_at: now,
            })
            .await?;
        Ok(token)
    }

    /// A new login: an access token and the first refresh token of a new family.
    pub async fn issue(&self, user_id: UserId) -> Result<IssuedTokens, StoreError> {
        let family = random_token(16);
        let refresh_token = self.new_refresh(user_id, family.clone()).await?;
        Ok(IssuedTokens {
            access_token: self.access_token(user_id, &family),
            refresh_token,
            expires_in: self.access_ttl_secs(),
        })
    }

    /// Checks signature, expiry and revocation.
    pub fn verify(&self, token: &str) -> Result<Claims, ErrorCode> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => ErrorCode::TokenExpired,
                _ => ErrorCode::TokenInvalid,
            })?
            .claims;
        if self.is_denied(&claims) {
            return Err(ErrorCode::TokenInvalid);
        }
        Ok(claims)
    }

    /// Spends `presented` and issues its successor in the same family. The
    /// same token again within the grace window gets the same pair; after
    /// it, reuse revokes the family and its access tokens.
    pub async fn refresh(&self, presented: &str) -> Result<(UserId, IssuedTokens), RefreshError> {
        let presented_hash = hash(presented);
        let now = now_millis();
        let next = self.derived("refresh", presented, 32);
        let expires_at = now + self.inner.refresh_ttl.as_millis() as i64;
        let grace_since = now - self.inner.reuse_grace_ms;
        let rotation =
            self.inner.store.rotate_refresh_token(&presented_hash, hash(&next), expires_at, now, grace_since).await?;
        let (user_id, family_id, spent_at) = match rotation {
            RefreshRotation::Rotated { previous } => (previous.user_id, previous.family_id, now),
            // Spent moments ago (here or on another process): the same
            // successor, if it is still good (not logged out, not spent).
            RefreshRotation::Recent { user_id, family_id, used_at } => {
                if !self.successor_stands(&next, now).await? {
                    // The store left the family alone for a recent spend.
                    self.inner.store.revoke_refresh_family(&family_id, now).await?;
                    return Err(self.reused(user_id, &family_id, now).await?);
                }
                metrics::counter!("switchboard_auth_refresh_grace_total").increment(1);
                (user_id, family_id, used_at)
            }
            RefreshRotation::Reused { user_id, family_id } => {
                return Err(self.reused(user_id, &family_id, now).await?);
            }
            RefreshRotation::Expired => return Err(RefreshError::Expired),
            RefreshRotation::Unknown => return Err(RefreshError::Invalid),
        };
        // The access token too is the one the rotation handed out: its id
        // derived like the successor, its time the spend's.
        let jti = self.derived("access", presented, 16);
        let tokens = IssuedTokens {
            access_token: self.access_token_as(user_id, &family_id, jti, spent_at),
            refresh_token: next,
            expires_in: self.access_ttl_secs(),
        };
        Ok((user_id, tokens))
    }

    /// What replaces `presented` (`purpose`: its refresh token, its access
    /// token's id), `bytes` long: a keyed hash of it, so every process
    /// derives the same and nobody without the key can.
    fn derived(&self, purpose: &str, presented: &str, bytes: usize) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.inner.successor_key).expect("HMAC takes a key of any length");
        mac.update(b"switchboard rotation\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(presented.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..bytes.min(32)])
    }

    /// Whether `next`, stored by a rotation moments ago, is still live. On
    /// a store whose rotation is not one write (ScyllaDB), the winner may
    /// not have stored it yet: a few short waits cover that.
    async fn successor_stands(&self, next: &str, now: i64) -> Result<bool, StoreError> {
        let next_hash = hash(next);
        for attempt in 0..5 {
            if self.inner.store.live_refresh_token(&next_hash, now).await?.is_some() {
                return Ok(true);
            }
            if attempt < 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(false)
    }

    /// A spent refresh token presented again, its family's refresh tokens
    /// revoked in the store: the family's access tokens are denied too.
    async fn reused(&self, user_id: UserId, family_id: &str, now: i64) -> Result<RefreshError, StoreError> {
        tracing::warn!(user_id, family_id, "refresh token reused: family and its access tokens revoked");
        metrics::counter!("switchboard_auth_refresh_reuse_total").increment(1);
        self.deny_family(family_id, now).await?;
        Ok(RefreshError::Invalid)
    }

    /// Denies every access token of `family_id` handed out until `now`
    /// (the newest expires an access lifetime later).
    async fn deny_family(&self, family_id: &str, now: i64) -> Result<(), StoreError> {
        let until = Self::deny_until(now / 1000 + self.inner.access_ttl.as_secs() as i64);
        self.deny(family_key(family_id), until).await
    }

    /// A new access token for a live refresh token, which stays as it is
    /// (no rotation): for contracts whose refresh answers only an access
    /// token (seed 003), so their clients keep the refresh token they hold.
    pub async fn renew_access(&self, presented: &str) -> Result<(UserId, String), RefreshError> {
        let now = now_millis();
        match self.inner.store.live_refresh_token(&hash(presented), now).await? {
            Some(token) => Ok((token.user_id, self.access_token(token.user_id, &token.family_id))),
            None => Err(RefreshError::Invalid),
        }
    }

    /// Logout: denies the access token until it expires and revokes the
    /// refresh token, if given.
    pub async fn revoke(&self, claims: &Claims, refresh_token: Option<&str>) -> Result<(), StoreError> {
        // Kept past expiry by the leeway, which verification still allows.
        self.deny(claims.jti.clone(), Self::deny_until(claims.exp)).await?;
        if let Some(token) = refresh_token {
            self.inner.store.revoke_refresh_token(&hash(token), now_millis()).await?;
        }
        Ok(())
    }

    /// Logout of a whole sign-in, for contracts whose logout names no
    /// refresh token (seed 003): the access token, its family's refresh
    /// tokens and every access token of that family are refused from now on.
    pub async fn end_session(&self, claims: &Claims) -> Result<(), StoreError> {
        self.revoke(claims, None).await?;
        if let Some(family_id) = &claims.fam {
            let now = now_millis();
            self.inner.store.revoke_refresh_family(family_id, now).await?;
            self.deny_family(family_id, now).await?;
        }
        Ok(())
    }

    /// Reloads the denylist from the store every `every` until `shutdown`,
    /// so a token revoked by another process of a cluster is refused here
    /// too; entries of tokens expired anyway are dropped on the way.
    pub async fn follow_revocations(&self, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.prune();
            match self.reload_denied().await {
                Ok(0) => {}
                Ok(added) => tracing::debug!(added, "revocations from other processes"),
                Err(error) => tracing::warn!(%error, "reloading revoked tokens failed"),
            }
        }
    }

    /// Adds the revocations other processes of a cluster wrote to the store
    /// since this one loaded; answers how many were new here.
    async fn reload_denied(&self) -> Result<usize, StoreError> {
        let mut added = 0;
        for (jti, expires_at) in self.inner.store.revoked_access_tokens(now_millis()).await? {
            if self.inner.denied.insert(jti, expires_at).is_none() {
                added += 1;
            }
        }
        if added > 0 {
            self.changed();
        }
        Ok(added)
    }

    /// Drops denylist entries whose tokens have expired anyway.
    pub fn prune(&self) {
        let now = now_millis();
        self.inner.denied.retain(|_, expires_at| *expires_at > now);
    }
}

/// The signing secret kept in `path`: read if it exists, otherwise made
/// (32 random bytes) and written readable by the owner only, so tokens
/// outlive a restart without anyone configuring a secret.
pub fn secret_from_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => return Err(std::io::Error::other(format!("{} holds fewer than 32 bytes", path.display()))),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        Err(_) => {}
    }
    let secret = random_token(32).into_bytes();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, &secret)?;
    Ok(secret)
}
