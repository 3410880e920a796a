//! What app backends do through the server API: manage users (create or
//! update them, link their own ids, set profile fields, disable them),
//! close sessions, open chats, post messages, publish transient events
//! and read presence and node stats. The caller is trusted (it holds an
//! API key), so nothing here asks who may do it; every input is still
//! checked, as a backend is a client too.

use protocol::ServerEvent;
use protocol::commands::SendMessage;
use protocol::server::{CustomEvent, Disconnect};
use protocol::time::{Millis, now_millis};
use protocol::views::{MessageView, UserPrivate};
use router::{Delivery, NodeReport};
use storage::model::{ChatId, NewUser, User, UserId, UserUpdate};

use crate::{Deps, ServiceError, ServiceResult, validate, views};

/// The close code of a session ended by the server API (seed 002's
/// "authentication failed" code: the client must sign in again).
pub const DISCONNECT_CODE: u16 = 4001;
/// Most users one publish or presence call names.
pub const TARGET_MAX_USERS: usize = 1_000;
/// Longest data of a custom event, in bytes of JSON.
pub const CUSTOM_DATA_MAX: usize = 16 * 1024;
/// Most profile fields per user, and their longest JSON, in bytes.
pub const PROFILE_FIELDS_MAX: usize = 64;
pub const PROFILE_FIELDS_MAX_BYTES: usize = 8 * 1024;

/// A user as a backend creates or updates them; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UpsertUser {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub external_id: Option<String>,
}

/// What [`Admin::upsert_user`] did.
#[derive(Debug, Clone)]
pub struct Upserted {
    pub user: UserPrivate,
    /// The backend's id for the user, as it stands now.
    pub external_id: Option<String>,
    /// Whether the call made the user.
    pub created: bool,
}

/// Which user a backend means: ours or theirs.
#[derive(Debug, Clone)]
pub enum UserRef {
    Id(UserId),
    External(String),
}

/// One user's presence as the server API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePresence {
    pub user_id: UserId,
    pub online: bool,
    pub devices: u32,
    pub last_seen: Option<Millis>,
}

/// Who a custom event goes to.
#[derive(Debug, Clone)]
pub enum Audience {
    Users(Vec<UserId>),
    Chat(ChatId),
}

/// Server API use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admin {
    deps: Deps,
}

fn external_id(text: &str) -> ServiceResult<&str> {
    let ok = (1..=128).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(text)
    } else {
        Err(ServiceError::Invalid("external_id must be 1 to 128 printable ASCII characters".into()))
    }
}

impl Admin {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// The user a backend names, or 10004.
    pub async fn find(&self, user: &UserRef) -> ServiceResult<User> {
        let store = &self.deps.store;
        match user {
            UserRef::Id(id) => store.user(*id).await?.ok_or_else(|| ServiceError::user_not_found(*id)),
            UserRef::External(id) => store
                .user_by_external_id(external_id(id)?)
                .await?
                .ok_or_else(|| ServiceError::UserNotFound(format!("no user has external_id {id:?}"))),
        }
    }

    /// Creates the user, or updates the one already known by its
    /// `external_id` (else its phone, else its email); answers them and
    /// whether they are new. A phone or email that belongs to someone else
    /// is a conflict.
    pub async fn upsert_user(&self, upsert: UpsertUser) -> ServiceResult<Upserted> {
        let phone = upsert.phone.as_deref().map(validate::phone).transpose()?.map(str::to_owned);
        if let Some(email) = &upsert.email {
            validate::email(email)?;
        }
        if let Some(username) = &upsert.username {
            validate::username(username)?;
        }
        if let Some(id) = &upsert.external_id {
            external_id(id)?;
        }
        validate::text("nickname", upsert.nickname.as_deref().unwrap_or(""), 64)?;
        validate::text("avatar", upsert.avatar.as_deref().unwrap_or(""), 1024)?;
        let store = &self.deps.store;
        let by_external = match &upsert.external_id {
            Some(id) => store.user_by_external_id(id).await?,
            None => None,
        };
        let by_phone = match &phone {
            Some(phone) => store.user_by_phone(phone).await?,
            None => None,
        };
        let by_email = match &upsert.email {
            Some(email) => store.user_by_email(email).await?,
            None => None,
        };
        let existing = by_external.clone().or_else(|| by_phone.clone()).or_else(|| by_email.clone());
        let now = now_millis();
        let Some(existing) = existing else {
            if phone.is_none() && upsert.email.is_none() && upsert.external_id.is_none() {
                return Err(ServiceError::Invalid("a new user needs a phone, an email or an external_id".into()));
            }
            let created = store
                .create_user(NewUser {
                    phone: phone.unwrap_or_default(),
                    email: upsert.email,
                    external_id: upsert.external_id,
                    username: upsert.username,
                    nickname: upsert.nickname.unwrap_or_default(),
                    password_hash: None,
                    created_at: now,
                })
                .await?;
            let user = match upsert.avatar {
                Some(avatar) => store
                    .update_user(
                        created.id,
                        UserUpdate { avatar: Some(avatar), updated_at: now, ..UserUpdate::default() },
                    )
                    .await?
                    .unwrap_or(created),
                None => created,
            };
            tracing::info!(user_id = user.id, "user created by an app backend");
            let external_id = user.external_id.clone();
            return Ok(Upserted { user: views::user_private(&user, false), external_id, created: true });
        };
        for (other, what) in [(&by_phone, "phone"), (&by_email, "email")] {
            if other.as_ref().is_some_and(|other| other.id != existing.id) {
                return Err(ServiceError::Conflict(format!("this {what} belongs to another user")));
            }
        }
        if phone.as_ref().is_some_and(|phone| by_phone.is_none() && *phone != existing.phone)
            || upsert.email.is_some() && by_email.is_none()
        {
            return Err(ServiceError::Conflict("a user's phone or email can't be changed here".into()));
        }
        if let Some(id) = &upsert.external_id {
            store.set_external_id(existing.id, id).await?;
        }
        let update = UserUpdate {
            username: upsert.username,
            nickname: upsert.nickname,
            avatar: upsert.avatar,
            updated_at: now,
            ..UserUpdate::default()
        };
        let user =
            store.update_user(existing.id, update).await?.ok_or_else(|| ServiceError::user_not_found(existing.id))?;
        let online = crate::users::online_of(&self.deps, &[user.id]).await.first().copied().unwrap_or(false);
        // Read back after the link above, so it is the id as it stands now.
        let external_id = user.external_id.clone();
        Ok(Upserted { user: views::user_private(&user, online), external_id, created: false })
    }

    /// The user's profile fields with `changes` merged in (a null value
    /// removes its key); answers them.
    pub async fn set_profile_fields(
        &self,
        user_id: UserId,
        changes: serde_json::Map<String, serde_json::Value>,
    ) -> ServiceResult<serde_json::Map<String, serde_json::Value>> {
        if changes.keys().any(|key| key.is_empty() || key.chars().count() > 64) {
            return Err(ServiceError::Invalid("field names must be 1 to 64 characters".into()));
        }
        let store = &self.deps.store;
        // An unknown user reads as no fields; the write below refuses them (10001).
        let mut fields = store.profile_fields(user_id).await?;
        for (key, value) in changes {
            if value.is_null() {
                fields.remove(&key);
            } else {
                fields.insert(key, value);
            }
        }
        if fields.len() > PROFILE_FIELDS_MAX {
            return Err(ServiceError::Invalid(format!("a user has at most {PROFILE_FIELDS_MAX} profile fields")));
        }
        if serde_json::Value::Object(fields.clone()).to_string().len() > PROFILE_FIELDS_MAX_BYTES {
            return Err(ServiceError::Invalid(format!(
                "profile fields may be at most {PROFILE_FIELDS_MAX_BYTES} bytes of JSON"
            )));
        }
        store.set_profile_fields(user_id, fields.clone(), now_millis()).await?;
        Ok(fields)
    }

    /// Disables or enables the user. A disabled user can't sign in or
    /// refresh, and their open sessions are closed at once.
    pub async fn set_disabled(&self, user_id: UserId, disabled: bool) -> ServiceResult<UserPrivate> {
        let update = UserUpdate { is_disabled: Some(disabled), updated_at: now_millis(), ..UserUpdate::default() };
        let user =
            self.deps.store.update_user(user_id, update).await?.ok_or_else(|| ServiceError::user_not_found(user_id))?;
        if disabled {
            self.close_sessions(user_id, "account disabled").await?;
        }
        tracing::info!(user_id, disabled, "account state changed by an app backend");
        Ok(views::user_private(&user, false))
    }

    /// Closes every session of the user, on every node, with 4001 and `reason`.
    pub async fn disconnect(&self, user_id: UserId, reason: &str) -> ServiceResult<()> {
        // A close frame's reason is at most 123 bytes.
        if reason.len() > 123 {
            return Err(ServiceError::Invalid("reason must be at most 123 bytes".into()));
        }
        self.find(&UserRef::Id(user_id)).await?;
        self.close_sessions(user_id, reason).await
    }

    /// Tells every node to close the user's connections.
    async fn close_sessions(&self, user_id: UserId, reason: &str) -> ServiceResult<()> {
        let event = ServerEvent::Disconnect(Disconnect { code: DISCONNECT_CODE, reason: reason.to_owned() });
        self.deps
            .router
            .publish(Delivery::new(vec![user_id], event))
            .await
            .map_err(|error| ServiceError::Unavailable(error.to_string()))
    }

    /// Posts a message in a chat, sequenced, stored and fanned out like any
    /// other: `system` has no sender, `text` is sent as `sender_id` (a
    /// member, under every rule of a send).
    pub async fn post(
        &self,
        chat_id: ChatId,
        kind: &str,
        content: String,
        sender_id: Option<UserId>,
        extra: Option<serde_json::Value>,
    ) -> ServiceResult<MessageView> {
        if extra.as_ref().is_some_and(|extra| !extra.is_object()) {
            return Err(ServiceError::Invalid("extra must be a JSON object".into()));
        }
        match kind {
            "system" => {
                if sender_id.is_some() {
                    return Err(ServiceError::Invalid("a system message has no sender_id".into()));
                }
                let max = self.deps.config.send.max_content_chars;
                if content.trim().is_empty() || content.chars().count() > max {
                    return Err(ServiceError::Invalid(format!("content must be 1 to {max} characters")));
                }
                let media = match extra {
                    Some(extra) => {
                        let text = serde_json::json!({ "extra": extra }).to_string();
                        if text.len() > 4 * 1024 {
                            return Err(ServiceError::Invalid("extra may be at most 4096 bytes of JSON".into()));
                        }
                        text
                    }
                    None => String::new(),
                };
                self.deps.store.chat(chat_id).await?.ok_or(ServiceError::ChatNotFound(chat_id))?;
                let message = self.deps.pipeline.post_system_with(chat_id, 0, content, media).await?;
                Ok(views::message(&message, None, false, &[]))
            }
            "text" => {
                let sender =
                    sender_id.ok_or_else(|| ServiceError::Invalid("a text message needs a sender_id".into()))?;
                let command: SendMessage =
                    serde_json::from_value(serde_json::json!({ "type": "text", "content": content, "extra": extra }))
                        .map_err(|error| ServiceError::Invalid(error.to_string()))?;
                let request = crate::new_message(command, chat_id, sender)?;
                Ok(std::sync::Arc::unwrap_or_clone(self.deps.pipeline.send(request).await?.view))
            }
            other => Err(ServiceError::Invalid(format!("type must be system or text, not {other:?}"))),
        }
    }

    /// Sends a transient `custom` event to live devices; nothing is stored.
    /// Answers how many users it was addressed to.
    pub async fn publish(&self, audience: Audience, event: &str, data: serde_json::Value) -> ServiceResult<usize> {
        if event.is_empty() || event.chars().count() > 64 {
            return Err(ServiceError::Invalid("event must be 1 to 64 characters".into()));
        }
        if data.to_string().len() > CUSTOM_DATA_MAX {
            return Err(ServiceError::Invalid(format!("data may be at most {CUSTOM_DATA_MAX} bytes of JSON")));
        }
        let recipients = match audience {
            Audience::Users(mut users) => {
                users.sort_unstable();
                users.dedup();
                if users.is_empty() || users.len() > TARGET_MAX_USERS {
                    return Err(ServiceError::Invalid(format!("user_ids must name 1 to {TARGET_MAX_USERS} users")));
                }
                users
            }
            Audience::Chat(chat_id) => {
                self.deps.store.chat(chat_id).await?.ok_or(ServiceError::ChatNotFound(chat_id))?;
                self.deps.store.members(chat_id).await?.iter().map(|member| member.user_id).collect()
            }
        };
        let count = recipients.len();
        let custom = ServerEvent::Custom(CustomEvent { event: event.to_owned(), data });
        self.deps
            .router
            .publish(Delivery::new(recipients, custom))
            .await
            .map_err(|error| ServiceError::Unavailable(error.to_string()))?;
        Ok(count)
    }

    /// Online state, device count and `last_seen` of each known user.
    pub async fn presence(&self, user_ids: &[UserId]) -> ServiceResult<Vec<DevicePresence>> {
        if user_ids.is_empty() || user_ids.len() > TARGET_MAX_USERS {
            return Err(ServiceError::Invalid(format!("user_ids must name 1 to {TARGET_MAX_USERS} users")));
        }
        let users = self.deps.store.users(user_ids).await?;
        let ids: Vec<UserId> = user_ids.iter().copied().filter(|id| users.iter().any(|user| user.id == *id)).collect();
        let online = crate::users::online_of(&self.deps, &ids).await;
        let devices =
            self.deps.presence.devices(&ids).await.map_err(|error| ServiceError::Unavailable(error.to_string()))?;
        Ok(ids
            .iter()
            .zip(online.iter().zip(devices))
            .map(|(&user_id, (&online, devices))| DevicePresence {
                user_id,
                online,
                devices: if online { devices.max(1) } else { 0 },
                last_seen: users.iter().find(|user| user.id == user_id).and_then(|user| user.last_seen),
            })
            .collect())
    }

    /// The latest report of every live gateway node.
    pub async fn stats(&self) -> ServiceResult<Vec<NodeReport>> {
        let mut reports =
            self.deps.presence.reports().await.map_err(|error| ServiceError::Unavailable(error.to_string()))?;
        reports.sort_by_key(|report| report.node_id);
        Ok(reports)
    }
}
