//! Profiles and presence: who a user is, and whether they are online, as
//! far as the asker may know.

use protocol::time::{Millis, now_millis};
use protocol::views::{UserPrivate, UserPublic};
use storage::model::{GroupInvites, UserId, UserUpdate};

use crate::{Deps, ServiceError, ServiceResult, events, validate, views};

/// Most users one presence query names.
pub(crate) const PRESENCE_QUERY_MAX: usize = 100;

/// One user's presence as a query answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceState {
    pub user_id: UserId,
    pub is_online: bool,
    pub last_seen: Option<Millis>,
}

/// A profile change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub bio: Option<String>,
    pub avatar: Option<String>,
    pub language: Option<String>,
    pub theme: Option<String>,
    /// `male`, `female`, `other`, or empty to clear.
    pub gender: Option<String>,
    /// `YYYY-MM-DD` (a real, past date), or empty to clear.
    pub birthday: Option<String>,
    /// The user's client preferences: a JSON object of at most 4 KiB.
    pub preferences: Option<serde_json::Map<String, serde_json::Value>>,
    /// Who may put them in a group: `everyone`, `contacts` or `nobody`.
    pub group_invites: Option<String>,
}

/// The largest preferences object kept, serialised.
const MAX_PREFERENCES_BYTES: usize = 4096;

/// Whether each of `users` is online anywhere. A registry that cannot
/// answer (Redis down) answers "offline" rather than fail a profile read.
pub(crate) async fn online_of(deps: &Deps, users: &[UserId]) -> Vec<bool> {
    match deps.presence.online(users).await {
        Ok(online) => online,
        Err(error) => {
            tracing::warn!(%error, "presence registry unavailable; reporting users offline");
            vec![false; users.len()]
        }
    }
}

/// Whether `viewer` may know `subject`'s presence: themselves, or someone
/// `subject` has not blocked who is a mutual contact or shares a chat
/// with them. (The live `presence` events go to fewer: mutual contacts and
/// private-chat peers, never someone blocked.)
pub(crate) async fn may_see_presence(deps: &Deps, viewer: UserId, subject: UserId) -> ServiceResult<bool> {
    if viewer == subject {
        return Ok(true);
    }
    Ok(!deps.store.presence_visible(viewer, &[subject]).await?.is_empty())
}

/// User use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Users {
    deps: Deps,
}

impl Users {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// The caller's own profile.
    pub async fn me(&self, caller: UserId) -> ServiceResult<UserPrivate> {
        let user = self.deps.store.user(caller).await?.ok_or_else(|| ServiceError::user_not_found(caller))?;
        let online = online_of(&self.deps, &[caller]).await.first().copied().unwrap_or(false);
        Ok(views::user_private(&user, online))
    }

    /// Changes the caller's profile; answers it as it is now.
    pub async fn update_me(&self, caller: UserId, change: ProfileUpdate) -> ServiceResult<UserPrivate> {
        if let Some(username) = &change.username {
            validate::username(username)?;
        }
        if let Some(nickname) = &change.nickname {
            validate::text("nickname", nickname, 64)?;
            if nickname.trim().is_empty() {
                return Err(ServiceError::Invalid("nickname must not be empty".into()));
            }
        }
        validate::text("bio", change.bio.as_deref().unwrap_or_default(), 500)?;
        validate::text("avatar", change.avatar.as_deref().unwrap_or_default(), 1024)?;
        validate::text("language", change.language.as_deref().unwrap_or_default(), 16)?;
        if let Some(theme) = &change.theme {
            validate::theme(theme)?;
        }
        if let Some(gender) = &change.gender
            && !matches!(gender.as_str(), "" | "male" | "female" | "other")
        {
            return Err(ServiceError::Invalid("gender must be male, female or other".into()));
        }
        if let Some(birthday) = change.birthday.as_deref().filter(|birthday| !birthday.is_empty()) {
            validate::birthday(birthday, now_millis())?;
        }
        let preferences = match change.preferences {
            None => None,
            Some(preferences) => {
                let text = serde_json::Value::Object(preferences).to_string();
                if text.len() > MAX_PREFERENCES_BYTES {
                    return Err(ServiceError::Invalid(format!(
                        "preferences may be at most {MAX_PREFERENCES_BYTES} bytes of JSON"
                    )));
                }
                Some(text)
            }
        };
        let group_invites =
            match change.group_invites.as_deref() {
                None => None,
                Some(setting) => Some(GroupInvites::parse(setting).ok_or_else(|| {
                    ServiceError::Invalid("group_invites must be everyone, contacts or nobody".into())
                })?),
            };
        let update = UserUpdate {
            username: change.username,
            nickname: change.nickname,
            bio: change.bio,
            avatar: change.avatar,
            language: change.language,
            theme: change.theme,
            gender: change.gender,
            birthday: change.birthday,
            preferences,
            group_invites,
            is_disabled: None,
            updated_at: now_millis(),
        };
        let user =
            self.deps.store.update_user(caller, update).await?.ok_or_else(|| ServiceError::user_not_found(caller))?;
        let online = online_of(&self.deps, &[caller]).await.first().copied().unwrap_or(false);
        Ok(views::user_private(&user, online))
    }

    /// Another user's public profile; `online` is true only when they have
    /// a live connection and the caller may know it.
    pub async fn user(&self, caller: UserId, id: UserId) -> ServiceResult<UserPublic> {
        let user = self.deps.store.user(id).await?.ok_or_else(|| ServiceError::user_not_found(id))?;
        let visible = may_see_presence(&self.deps, caller, id).await?;
        let online = visible && online_of(&self.deps, &[id]).await.first().copied().unwrap_or(false);
        let mut view = views::user_public(&user, online);
        if !visible {
            // Nor when they were last seen.
            view.last_seen = None;
        }
        Ok(view)
    }

    /// The presence of those of `user_ids` the caller may see (the others,
    /// and unknown ids, are left out).
    pub async fn presence(&self, caller: UserId, user_ids: &[UserId]) -> ServiceResult<Vec<PresenceState>> {
        if user_ids.len() > PRESENCE_QUERY_MAX {
            return Err(ServiceError::Invalid(format!("at most {PRESENCE_QUERY_MAX} user_ids at once")));
        }
        // One read for who may be seen, one for their rows.
        let allowed = self.deps.store.presence_visible(caller, user_ids).await?;
        let visible = self.deps.store.users(&allowed).await?;
        let ids: Vec<UserId> = visible.iter().map(|user| user.id).collect();
        let online = online_of(&self.deps, &ids).await;
        Ok(visible
            .iter()
            .zip(online)
            .map(|(user, is_online)| PresenceState { user_id: user.id, is_online, last_seen: user.last_seen })
            .collect())
    }

    /// Tells `user_id`'s audience they came online or went offline (and
    /// records `last_seen` when they went).
    pub async fn announce_presence(&self, user_id: UserId, online: bool) {
        let now = now_millis();
        if !online && let Err(error) = self.deps.store.set_last_seen(user_id, now).await {
            tracing::warn!(%error, user_id, "last_seen not recorded");
        }
        if self.deps.hooks.enabled() {
            let kind = if online { crate::hooks::types::USER_ONLINE } else { crate::hooks::types::USER_OFFLINE };
            self.deps.hooks.emit(kind, serde_json::json!({ "user_id": user_id, "at": now }));
        }
        let audience = match self.deps.store.presence_audience(user_id).await {
            Ok(audience) => audience,
            Err(error) => {
                tracing::warn!(%error, "presence audience unavailable");
                return;
            }
        };
        if audience.is_empty() {
            return;
        }
        let delivery = router::Delivery::new(audience, events::presence(user_id, online, now));
        if let Err(error) = self.deps.router.publish(delivery).await {
            tracing::warn!(%error, "presence not published");
        }
    }

    /// Whether `from` may call `to`: the presence rule (an existing user who
    /// has not blocked them, and a mutual contact or someone they share a
    /// chat with).
    pub async fn may_call(&self, from: UserId, to: UserId) -> ServiceResult<()> {
        if to == from {
            return Err(ServiceError::Invalid("you cannot call yourself".into()));
        }
        let store = &self.deps.store;
        if store.user(to).await?.is_none() {
            return Err(ServiceError::user_not_found(to));
        }
        // The presence rule, read once; a refusal then says which it was.
        if !store.presence_visible(from, &[to]).await?.is_empty() {
            return Ok(());
        }
        if store.is_blocked(to, from).await? {
            return Err(ServiceError::Blocked);
        }
        Err(ServiceError::Forbidden("you may only call mutual contacts and people you share a chat with".into()))
    }
}
