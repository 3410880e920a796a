//! [`crate::AccountStore`] for [`SqliteStore`].

use super::{
    AccountStore, Millis, NewUser, OptionalExtension, RefreshRotation, RefreshToken, SqliteStore, StoreError,
    StoreResult, USER_COLUMNS, User, UserId, UserUpdate, async_trait, constraint_message, params, rotate, rows,
    user_by,
};
use crate::model::{DeviceSeen, email_key};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        new.check_identity()?;
        let email = new.email.as_deref().map(email_key);
        self.write(move |conn| {
            // The phone is the account: when both clash, that is the error to report.
            if !new.phone.is_empty()
                && conn.prepare_cached("SELECT 1 FROM users WHERE phone = ?1")?.exists([&new.phone])?
            {
                return Err(StoreError::PhoneTaken);
            }
            let phone = match (&email, &new.external_id, new.phone.is_empty()) {
                (Some(email), _, true) => rows::phone_placeholder(email),
                (None, Some(external_id), true) => rows::phone_placeholder(&format!("@{external_id}")),
                _ => new.phone.clone(),
            };
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO users (phone, username, nickname, language, theme, created_at, updated_at, email, \
                     external_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)",
                )?
                .execute(params![
                    phone,
                    new.username,
                    new.nickname,
                    NewUser::DEFAULT_LANGUAGE,
                    NewUser::DEFAULT_THEME,
                    new.created_at,
                    email,
                    new.external_id,
                ]);
            if let Err(error) = inserted {
                return Err(match constraint_message(&error) {
                    Some(text) if text.contains("users.email") => StoreError::EmailTaken,
                    Some(text) if text.contains("users.external_id") => StoreError::ExternalIdTaken,
                    // A placeholder of an external id clashes only when the id does.
                    Some(text) if text.contains("users.phone") && new.phone.is_empty() && email.is_none() => {
                        StoreError::ExternalIdTaken
                    }
                    // A placeholder clashes only when the email does.
                    Some(text) if text.contains("users.phone") && new.phone.is_empty() => StoreError::EmailTaken,
                    Some(text) if text.contains("users.phone") => StoreError::PhoneTaken,
                    Some(text) if text.contains("users.username") => StoreError::UsernameTaken,
                    _ => error.into(),
                });
            }
            let id = conn.last_insert_rowid();
            if let Some(hash) = new.password_hash {
                conn.prepare_cached(
                    "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, hash, new.created_at])?;
            }
            user_by(conn, "id", &id)?.ok_or(StoreError::UserNotFound(id))
        })
        .await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.read(move |conn| user_by(conn, "id", &id)).await
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?;
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = statement.query_row([id], rows::user).optional()? {
                    users.push(user);
                }
            }
            Ok(users)
        })
        .await
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<User>> {
        let phone = phone.to_owned();
        self.read(move |conn| user_by(conn, "phone", &phone)).await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let username = username.to_owned();
        self.read(move |conn| user_by(conn, "username", &username)).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email_key(email);
        if email.is_empty() {
            return Ok(None);
        }
        self.read(move |conn| user_by(conn, "email", &email)).await
    }

    async fn user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>> {
        let external_id = external_id.to_owned();
        self.read(move |conn| user_by(conn, "external_id", &external_id)).await
    }

    async fn set_external_id(&self, id: UserId, external_id: &str) -> StoreResult<()> {
        let external_id = external_id.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE users SET external_id = ?1 WHERE id = ?2")?
                .execute(params![external_id, id]);
            match changed {
                Ok(0) => Err(StoreError::UserNotFound(id)),
                Ok(_) => Ok(()),
                Err(error) if constraint_message(&error).is_some_and(|t| t.contains("users.external_id")) => {
                    Err(StoreError::ExternalIdTaken)
                }
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn profile_fields(&self, id: UserId) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
        self.read(move |conn| {
            let fields: Option<String> = conn
                .prepare_cached("SELECT fields FROM profile_fields WHERE user_id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?;
            Ok(fields.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default())
        })
        .await
    }

    async fn set_profile_fields(
        &self,
        id: UserId,
        fields: serde_json::Map<String, serde_json::Value>,
        at: Millis,
    ) -> StoreResult<()> {
        let text = serde_json::Value::Object(fields).to_string();
        self.write(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO profile_fields (user_id, fields, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user_id) DO UPDATE SET fields = excluded.fields, updated_at = excluded.updated_at",
                )?
                .execute(params![id, text, at]);
            match written {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(id)),
                other => other.map(drop).map_err(Into::into),
            }
        })
        .await
    }

    async fn update_user(&self, id: UserId, update: UserUpdate) -> StoreResult<Option<User>> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE users SET username = COALESCE(?1, username), nickname = COALESCE(?2, nickname), \
                     bio = COALESCE(?3, bio), avatar = COALESCE(?4, avatar), language = COALESCE(?5, language), \
                     theme = COALESCE(?6, theme), is_disabled = COALESCE(?7, is_disabled), updated_at = ?8, \
                     gender = COALESCE(?10, gender), birthday = COALESCE(?11, birthday), \
                     preferences = COALESCE(?12, preferences), group_invites = COALESCE(?13, group_invites) \
                     WHERE id = ?9",
                )?
                .execute(params![
                    update.username,
                    update.nickname,
                    update.bio,
                    update.avatar,
                    update.language,
                    update.theme,
                    update.is_disabled,
                    update.updated_at,
                    id,
                    update.gender,
                    update.birthday,
                    update.preferences,
                    update.group_invites.map(crate::model::GroupInvites::as_str)
                ]);
            match changed {
                Ok(0) => Ok(None),
                Ok(_) => user_by(conn, "id", &id),
                Err(error) if constraint_message(&error).is_some_and(|t| t.contains("users.username")) => {
                    Err(StoreError::UsernameTaken)
                }
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn set_last_seen(&self, id: UserId, at: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE users SET last_seen = MAX(COALESCE(last_seen, 0), ?1) WHERE id = ?2")?
                .execute(params![at, id])?;
            Ok(())
        })
        .await
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT password_hash FROM credentials WHERE user_id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_password_hash(&self, id: UserId, hash: String, at: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            let result = conn
                .prepare_cached(
                    "INSERT INTO credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, \
                     updated_at = excluded.updated_at",
                )?
                .execute(params![id, hash, at]);
            match result {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(id)),
                other => other.map(drop).map_err(Into::into),
            }
        })
        .await
    }

    async fn record_device(&self, device: DeviceSeen) -> StoreResult<bool> {
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO user_devices (user_id, device_id, platform, first_seen, last_seen) \
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![device.user_id, device.device_id, device.platform, device.at]);
            let inserted = match inserted {
                Ok(rows) => rows,
                Err(error) if constraint_message(&error).is_some() => {
                    return Err(StoreError::UserNotFound(device.user_id));
                }
                Err(error) => return Err(error.into()),
            };
            if inserted == 0 {
                conn.prepare_cached(
                    "UPDATE user_devices SET last_seen = MAX(last_seen, ?3), \
                     platform = CASE WHEN ?4 = '' THEN platform ELSE ?4 END WHERE user_id = ?1 AND device_id = ?2",
                )?
                .execute(params![device.user_id, device.device_id, device.at, device.platform])?;
            }
            Ok(inserted == 1)
        })
        .await
    }

    async fn insert_refresh_token(&self, token: RefreshToken) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                token.token_hash,
                token.user_id,
                token.family_id,
                token.expires_at,
                token.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: String,
        next_expires_at: Millis,
        now: Millis,
        grace_since: Millis,
    ) -> StoreResult<RefreshRotation> {
        let presented = presented_hash.to_owned();
        self.write(move |conn| rotate(conn, &presented, &next_hash, next_expires_at, now, grace_since)).await
    }

    async fn revoke_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<bool> {
        let hash = token_hash.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, ?1) WHERE token_hash = ?2",
                )?
                .execute(params![now, hash])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn live_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token_hash, user_id, family_id, expires_at, created_at FROM refresh_tokens \
                     WHERE token_hash = ?1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2",
                )?
                .query_row(params![hash, now], |row| {
                    Ok(RefreshToken {
                        token_hash: row.get(0)?,
                        user_id: row.get(1)?,
                        family_id: row.get(2)?,
                        expires_at: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: Millis) -> StoreResult<u64> {
        let family = family_id.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE refresh_tokens SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![now, family])?;
            Ok(changed as u64)
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Millis, now: Millis) -> StoreResult<()> {
        let jti = jti.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM revoked_access_tokens WHERE expires_at <= ?1")?.execute([now])?;
            conn.prepare_cached("INSERT OR REPLACE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)")?
                .execute(params![jti, expires_at])?;
            Ok(())
        })
        .await
    }

    async fn revoked_access_tokens(&self, now: Millis) -> StoreResult<Vec<(String, Millis)>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached("SELECT jti, expires_at FROM revoked_access_tokens WHERE expires_at > ?1")?
                .query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}
