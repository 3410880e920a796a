use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::views::UserPrivate;
use serde::{Deserialize, Serialize};

use super::{Empty, ok};
use crate::accounts::{self, Registration};
use crate::extract::{Body, Caller, ClientAddr};
use crate::sms::CodePurpose;

use crate::{ApiFailure, SidecarState};

#[derive(Debug, Deserialize)]
pub(crate) struct SendCodeBody {
    phone: String,
    #[serde(rename = "type")]
    purpose: CodePurpose,
}

#[derive(Debug, Serialize)]
pub(crate) struct SendCodeReply {
    expires_in: u64,
    retry_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug_code: Option<String>,
}

/// `POST /api/auth/send-code` (seeds 000/003).
pub(crate) async fn send_code(
    State(state): State<SidecarState>,
    addr: ClientAddr,
    Body(body): Body<SendCodeBody>,
) -> Result<Json<ApiResponse<SendCodeReply>>, ApiFailure> {
    let sent = accounts::send_code(&state, &addr, &body.phone, body.purpose).await?;
    let reply = SendCodeReply {
        expires_in: sent.expires_in_secs,
        retry_after: sent.retry_after_secs,
        debug_code: state.config.dev.then_some(sent.code),
    };
    Ok(ok("验证码发送成功", reply))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegisterBody {
    phone: String,
    password: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    /// A `register` SMS code, when the app verifies the phone at sign-up.
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Session {
    user: UserPrivate,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

async fn session(state: &SidecarState, user: &storage::model::User) -> Result<Session, ApiFailure> {
    let tokens = accounts::issue(state, user).await?;
    Ok(Session {
        user: service::views::user_private(user, false),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in,
    })
}

/// `POST /api/auth/register`.
pub(crate) async fn register(
    State(state): State<SidecarState>,
    Body(body): Body<RegisterBody>,
) -> Result<Json<ApiResponse<Session>>, ApiFailure> {
    let registration = Registration {
        phone: body.phone,
        password: body.password,
        username: body.username,
        nickname: body.nickname,
        code: body.code,
        email: None,
    };
    let user = accounts::register(&state, registration).await?;
    Ok(ok("注册成功", session(&state, &user).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginBody {
    phone: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// `POST /api/auth/login`: phone + password, or phone + SMS code.
pub(crate) async fn login(
    State(state): State<SidecarState>,
    addr: ClientAddr,
    Body(body): Body<LoginBody>,
) -> Result<Json<ApiResponse<Session>>, ApiFailure> {
    let user = accounts::login_by_phone(&state, &addr, &body.phone, body.password, body.code).await?;
    Ok(ok("登录成功", session(&state, &user).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Refreshed {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// `POST /api/auth/refresh`: rotates the refresh token.
pub(crate) async fn refresh(
    State(state): State<SidecarState>,
    Body(body): Body<RefreshBody>,
) -> Result<Json<ApiResponse<Refreshed>>, ApiFailure> {
    let (_, tokens) = accounts::refresh(&state, &body.refresh_token).await?;
    let reply = Refreshed {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in,
    };
    Ok(ok("令牌刷新成功", reply))
}

#[derive(Debug, Deserialize)]
struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /api/auth/logout`: revokes the access token (and the refresh
/// token, when the body names it).
pub(crate) async fn logout(
    State(state): State<SidecarState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    let body: LogoutBody = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutBody { refresh_token: None }
    } else {
        serde_json::from_slice(&body).map_err(|error| ApiFailure::bad_request(format!("invalid JSON: {error}")))?
    };
    state.tokens.revoke(&caller.claims, body.refresh_token.as_deref()).await?;
    Ok(ok("登出成功", Empty {}))
}
