use axum::Json;
use axum::extract::State;
use protocol::time::now_millis;
use protocol::views::{UserPrivate, UserPublic};
use protocol::{ApiResponse, ErrorCode};
use serde::Deserialize;
use storage::model::UserUpdate;

use super::ok;
use crate::extract::{Body, Caller, Path};
use crate::{ApiFailure, SidecarState, validate};

/// `GET /api/users/me`.
pub(crate) async fn me(
    State(state): State<SidecarState>,
    caller: Caller,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    let user = state
        .store
        .user(caller.user_id)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::UserNotFound, "user not found"))?;
    Ok(ok("获取用户信息成功", router::views::user_private(&user, false)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileUpdate {
    username: Option<String>,
    nickname: Option<String>,
    bio: Option<String>,
    avatar: Option<String>,
    language: Option<String>,
    theme: Option<String>,
}

/// `PUT /api/users/me`: answers the updated profile.
pub(crate) async fn update_me(
    State(state): State<SidecarState>,
    caller: Caller,
    Body(body): Body<ProfileUpdate>,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    if let Some(username) = &body.username {
        validate::username(username)?;
    }
    if let Some(nickname) = &body.nickname {
        validate::text("nickname", nickname, 64)?;
        if nickname.trim().is_empty() {
            return Err(ApiFailure::bad_request("nickname must not be empty"));
        }
    }
    validate::text("bio", body.bio.as_deref().unwrap_or_default(), 500)?;
    validate::text("avatar", body.avatar.as_deref().unwrap_or_default(), 1024)?;
    validate::text("language", body.language.as_deref().unwrap_or_default(), 16)?;
    if let Some(theme) = &body.theme {
        validate::theme(theme)?;
    }
    let update = UserUpdate {
        username: body.username,
        nickname: body.nickname,
        bio: body.bio,
        avatar: body.avatar,
        language: body.language,
        theme: body.theme,
        is_disabled: None,
        updated_at: now_millis(),
    };
    let user = state
        .store
        .update_user(caller.user_id, update)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::UserNotFound, "user not found"))?;
    Ok(ok("用户信息更新成功", router::views::user_private(&user, false)))
}

/// `GET /api/users/{id}`: public fields only.
pub(crate) async fn user(
    State(state): State<SidecarState>,
    _caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<UserPublic>>, ApiFailure> {
    let user = state
        .store
        .user(id)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::UserNotFound, format!("user {id} not found")))?;
    Ok(ok("获取用户信息成功", router::views::user_public(&user, false)))
}
