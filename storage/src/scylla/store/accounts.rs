//! [`crate::AccountStore`] for [`ScyllaStore`].

use super::{
    AccountStore, Millis, NewUser, RefreshRotation, RefreshToken, SHARDS, ScyllaStore, StoreError, StoreResult,
    TokenRow, User, UserId, UserUpdate, async_trait, shard_of, try_join, try_join_all,
};
use crate::model::{DeviceSeen, email_key};

#[async_trait]
impl AccountStore for ScyllaStore {
    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        new.check_identity()?;
        let _open = self.open_guard().await?;
        let id = self.inner.ids.next_id();
        let email = new.email.as_deref().map(email_key);
        let has_phone = !new.phone.is_empty();
        if has_phone && !self.applied(&self.st().claim_phone, (new.phone.as_str(), id)).await? {
            return Err(StoreError::PhoneTaken);
        }
        // Each claim made is given back when a later one fails.
        let release_phone = async {
            if has_phone {
                self.applied(&self.st().release_phone, (new.phone.as_str(), id)).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Some(email) = email.as_deref()
            && !self.applied(&self.st().claim_email, (email, id)).await?
        {
            release_phone.await?;
            return Err(StoreError::EmailTaken);
        }
        let release_email = async {
            if let Some(email) = email.as_deref() {
                self.applied(&self.st().release_email, (email, id)).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Some(external_id) = new.external_id.as_deref()
            && !self.applied(&self.st().claim_external_id, (external_id, id)).await?
        {
            release_phone.await?;
            release_email.await?;
            return Err(StoreError::ExternalIdTaken);
        }
        if let Some(username) = new.username.as_deref()
            && !self.applied(&self.st().claim_username, (username, id)).await?
        {
            release_phone.await?;
            release_email.await?;
            if let Some(external_id) = new.external_id.as_deref() {
                self.applied(&self.st().release_external_id, (external_id, id)).await?;
            }
            return Err(StoreError::UsernameTaken);
        }
        let values = (
            id,
            new.phone.as_str(),
            new.username.as_deref(),
            new.nickname.as_str(),
            "",
            "",
            NewUser::DEFAULT_LANGUAGE,
            NewUser::DEFAULT_THEME,
            false,
            0_i64,
            new.password_hash.as_deref(),
            new.created_at,
            new.created_at,
            email.as_deref(),
            new.external_id.as_deref(),
        );
        self.run(&self.st().insert_user, values).await?;
        self.load_user(id).await?.ok_or(StoreError::UserNotFound(id))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.load_user(id).await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let _open = self.open_guard().await?;
        Ok(try_join_all(ids.iter().map(|&id| self.load_user(id))).await?.into_iter().flatten().collect())
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_phone, phone).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_username, username).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email_key(email);
        if email.is_empty() {
            return Ok(None);
        }
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_email, &email).await
    }

    async fn user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        self.user_by_key(&self.st().user_by_external_id, external_id).await
    }

    async fn set_external_id(&self, id: UserId, external_id: &str) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        let user = self.load_user(id).await?.ok_or(StoreError::UserNotFound(id))?;
        if user.external_id.as_deref() == Some(external_id) {
            return Ok(());
        }
        if !self.applied(&self.st().claim_external_id, (external_id, id)).await? {
            return Err(StoreError::ExternalIdTaken);
        }
        self.run(&self.st().set_external_id, (external_id, id)).await?;
        if let Some(previous) = user.external_id.as_deref() {
            self.applied(&self.st().release_external_id, (previous, id)).await?;
        }
        Ok(())
    }

    async fn profile_fields(&self, id: UserId) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
        let _open = self.open_guard().await?;
        let row = self.row::<(Option<String>,)>(&self.st().select_profile_fields, (id,)).await?;
        Ok(row.and_then(|(text,)| text).and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default())
    }

    async fn set_profile_fields(
        &self,
        id: UserId,
        fields: serde_json::Map<String, serde_json::Value>,
        at: Millis,
    ) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        self.require_user(id).await?;
        let text = serde_json::Value::Object(fields).to_string();
        self.run(&self.st().upsert_profile_fields, (id, text, at)).await
    }

    async fn update_user(&self, id: UserId, update: UserUpdate) -> StoreResult<Option<User>> {
        let _open = self.open_guard().await?;
        let Some(mut user) = self.load_user(id).await? else { return Ok(None) };
        let renamed = update.username.filter(|name| user.username.as_ref() != Some(name));
        if let Some(name) = renamed.as_deref()
            && !self.applied(&self.st().claim_username, (name, id)).await?
        {
            return Err(StoreError::UsernameTaken);
        }
        let previous_name = if renamed.is_some() { user.username.take() } else { None };
        if renamed.is_some() {
            user.username = renamed;
        }
        let merge = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        merge(&mut user.nickname, update.nickname);
        merge(&mut user.bio, update.bio);
        merge(&mut user.avatar, update.avatar);
        merge(&mut user.language, update.language);
        merge(&mut user.theme, update.theme);
        merge(&mut user.gender, update.gender);
        merge(&mut user.birthday, update.birthday);
        merge(&mut user.preferences, update.preferences);
        user.group_invites = update.group_invites.unwrap_or(user.group_invites);
        user.is_disabled = update.is_disabled.unwrap_or(user.is_disabled);
        user.updated_at = update.updated_at;
        let values = (
            user.username.as_deref(),
            user.nickname.as_str(),
            user.bio.as_str(),
            user.avatar.as_str(),
            user.language.as_str(),
            user.theme.as_str(),
            user.is_disabled,
            user.updated_at,
            user.gender.as_str(),
            user.birthday.as_str(),
            user.preferences.as_str(),
            user.group_invites.as_str(),
            id,
        );
        self.run(&self.st().update_user, values).await?;
        if let Some(previous) = previous_name {
            self.applied(&self.st().release_username, (previous.as_str(), id)).await?;
        }
        Ok(Some(user))
    }

    async fn set_last_seen(&self, id: UserId, at: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        // Not applied: a later moment is already there (or no such user).
        self.applied(&self.st().set_last_seen, (at, id, at)).await?;
        Ok(())
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        let _open = self.open_guard().await?;
        let row = self.row::<(Option<String>, Option<i64>)>(&self.st().select_password, (id,)).await?;
        Ok(row.and_then(|(hash, created_at)| created_at.and(hash)))
    }

    async fn set_password_hash(&self, id: UserId, hash: String, _at: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        if self.applied(&self.st().set_password, (hash, id)).await? {
            Ok(())
        } else {
            Err(StoreError::UserNotFound(id))
        }
    }

    async fn record_device(&self, device: DeviceSeen) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.load_user(device.user_id).await?.is_none() {
            return Err(StoreError::UserNotFound(device.user_id));
        }
        let DeviceSeen { user_id, device_id, platform, at } = device;
        let claim = (user_id, device_id.as_str(), platform.as_str(), at, at);
        if self.applied(&self.st().claim_device, claim).await? {
            return Ok(true);
        }
        if platform.is_empty() {
            self.run(&self.st().touch_device, (at, user_id, device_id.as_str())).await?;
        } else {
            self.run(&self.st().touch_device_platform, (at, platform.as_str(), user_id, device_id.as_str())).await?;
        }
        Ok(false)
    }

    async fn insert_refresh_token(&self, token: RefreshToken) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        let values =
            (token.token_hash.as_str(), token.user_id, token.family_id.as_str(), token.expires_at, token.created_at);
        try_join(
            self.run(&self.st().insert_refresh, values),
            self.run(&self.st().insert_family_member, (token.family_id.as_str(), token.token_hash.as_str())),
        )
        .await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: String,
        next_expires_at: Millis,
        now: Millis,
        grace_since: Millis,
    ) -> StoreResult<RefreshRotation> {
        let _open = self.open_guard().await?;
        let Some((_, Some(user_id), Some(family_id), Some(expires_at), created_at, used_at, revoked_at)) =
            self.row::<TokenRow>(&self.st().select_refresh, (presented_hash,)).await?
        else {
            return Ok(RefreshRotation::Unknown);
        };
        // Spent by a rotation within the grace window, and not revoked: when.
        let recent = |used_at: Option<Millis>, revoked_at: Option<Millis>| match (revoked_at, used_at) {
            (None, Some(used_at)) if used_at >= grace_since => Some(used_at),
            _ => None,
        };
        if let Some(used_at) = recent(used_at, revoked_at) {
            return Ok(RefreshRotation::Recent { user_id, family_id, used_at });
        }
        let reused = used_at.is_some() || revoked_at.is_some();
        if !reused && expires_at <= now {
            return Ok(RefreshRotation::Expired);
        }
        // Spent only if nobody spent or revoked it first: two rotations of
        // one token cannot both succeed.
        if reused || !self.applied(&self.st().spend_refresh, (now, presented_hash)).await? {
            // Lost to a concurrent rotation just now: that one stands.
            if !reused
                && let Some((_, _, _, _, _, used_at, revoked_at)) =
                    self.row::<TokenRow>(&self.st().select_refresh, (presented_hash,)).await?
                && let Some(used_at) = recent(used_at, revoked_at)
            {
                return Ok(RefreshRotation::Recent { user_id, family_id, used_at });
            }
            self.revoke_family(&family_id, now).await?;
            return Ok(RefreshRotation::Reused { user_id, family_id });
        }
        let values = (next_hash.as_str(), user_id, family_id.as_str(), next_expires_at, now);
        try_join(
            self.run(&self.st().insert_refresh, values),
            self.run(&self.st().insert_family_member, (family_id.as_str(), next_hash.as_str())),
        )
        .await?;
        Ok(RefreshRotation::Rotated {
            previous: RefreshToken {
                token_hash: presented_hash.to_owned(),
                user_id,
                family_id,
                expires_at,
                created_at: created_at.unwrap_or(0),
            },
        })
    }

    async fn revoke_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.row::<TokenRow>(&self.st().select_refresh, (token_hash,)).await?.is_none() {
            return Ok(false);
        }
        // Not applied means it was revoked already: the first time stands.
        self.applied(&self.st().revoke_refresh, (now, token_hash)).await?;
        Ok(true)
    }

    async fn live_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<Option<RefreshToken>> {
        let _open = self.open_guard().await?;
        let row = self.row::<TokenRow>(&self.st().select_refresh, (token_hash,)).await?;
        Ok(row.and_then(|(token_hash, user_id, family_id, expires_at, created_at, used_at, revoked_at)| {
            let live = used_at.is_none() && revoked_at.is_none() && expires_at.is_some_and(|at| at > now);
            live.then_some(RefreshToken {
                token_hash,
                user_id: user_id?,
                family_id: family_id?,
                expires_at: expires_at?,
                created_at: created_at.unwrap_or(0),
            })
        }))
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: Millis) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.revoke_family(family_id, now).await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Millis, now: Millis) -> StoreResult<()> {
        let _open = self.open_guard().await?;
        // The row lives until the token would have expired anyway (a TTL
        // of whole seconds, rounded up; CQL caps a TTL at 20 years).
        let left = expires_at - now;
        if left <= 0 {
            return Ok(());
        }
        let ttl = ((left + 999) / 1000).min(630_720_000) as i32;
        self.run(&self.st().deny_access, (shard_of(jti), jti, expires_at, ttl)).await
    }

    async fn revoked_access_tokens(&self, now: Millis) -> StoreResult<Vec<(String, Millis)>> {
        let _open = self.open_guard().await?;
        let shards = (0..SHARDS).map(|shard| self.rows::<(String, Option<i64>)>(&self.st().denied_access, (shard,)));
        let mut denied: Vec<(String, Millis)> = try_join_all(shards)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|(jti, expires_at)| expires_at.filter(|&at| at > now).map(|at| (jti, at)))
            .collect();
        denied.sort_unstable();
        Ok(denied)
    }
}
