//! `/api` user routes: adapters over `service::Users`.

use axum::Json;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::views::{UserPrivate, UserPublic};
use serde::Deserialize;

use super::ok;
use crate::extract::{Body, Caller, Path};
use crate::{ApiFailure, SidecarState};

/// `GET /api/users/me`.
pub(crate) async fn me(
    State(state): State<SidecarState>,
    caller: Caller,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    Ok(ok("获取用户信息成功", state.services.users.me(caller.user_id).await?))
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
    group_invites: Option<String>,
}

/// `PUT /api/users/me`: answers the updated profile.
pub(crate) async fn update_me(
    State(state): State<SidecarState>,
    caller: Caller,
    Body(body): Body<ProfileUpdate>,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    let change = service::ProfileUpdate {
        username: body.username,
        nickname: body.nickname,
        bio: body.bio,
        avatar: body.avatar,
        language: body.language,
        theme: body.theme,
        group_invites: body.group_invites,
        ..service::ProfileUpdate::default()
    };
    Ok(ok("用户信息更新成功", state.services.users.update_me(caller.user_id, change).await?))
}

/// `GET /api/users/{id}`: public fields only; `online` as far as the
/// caller may know it.
pub(crate) async fn user(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<UserPublic>>, ApiFailure> {
    Ok(ok("获取用户信息成功", state.services.users.user(caller.user_id, id).await?))
}
