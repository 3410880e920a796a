use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use protocol::time::now_millis;
use protocol::views::UserPrivate;
use protocol::{ApiResponse, ErrorCode};
use serde::{Deserialize, Serialize};
use storage::model::NewUser;

use super::{Empty, ok};
use crate::extract::{Body, Caller, ClientAddr};
use crate::rate_limit::Class;
use crate::sms::{CodePurpose, SendCodeError};
use service::auth::RefreshError;
use service::validate;

use crate::{ApiFailure, SidecarState, passwords};

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
    let phone = validate::phone(&body.phone)?;
    state.limits.check(Class::SendCode, &addr.key())?;
    if body.purpose == CodePurpose::Register && state.store.user_by_phone(phone).await?.is_some() {
        return Err(ApiFailure::new(ErrorCode::PhoneExists, "this phone number is already registered"));
    }
    let sent = state.sms.send(phone, body.purpose, now_millis()).await.map_err(|error| match error {
        SendCodeError::TooSoon(wait) | SendCodeError::TooMany(wait) => ApiFailure::too_many(error.to_string(), wait),
        SendCodeError::Delivery(_) => ApiFailure::new(ErrorCode::Unavailable, error.to_string()),
    })?;
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
    let tokens = state.tokens.issue(user.id).await?;
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
    let phone = validate::phone(&body.phone)?.to_owned();
    validate::password(&body.password)?;
    if let Some(username) = &body.username {
        validate::username(username)?;
    }
    let nickname = match body.nickname {
        Some(nickname) => {
            validate::text("nickname", &nickname, 64)?;
            nickname
        }
        None => body.username.clone().unwrap_or_else(|| format!("用户{}", &phone[phone.len() - 4..])),
    };
    if let Some(code) = &body.code
        && !state.sms.verify(&phone, CodePurpose::Register, code, now_millis())
    {
        return Err(ApiFailure::new(ErrorCode::WrongCode, "the code is wrong or expired"));
    }
    let hash = passwords::hash(body.password).await.map_err(|error| {
        tracing::error!(%error, "password hashing failed");
        ApiFailure::new(ErrorCode::Internal, "internal error")
    })?;
    let new = NewUser { phone, username: body.username, nickname, password_hash: Some(hash), created_at: now_millis() };
    let user = state.store.create_user(new).await?;
    tracing::info!(user_id = user.id, "user registered");
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
    Body(body): Body<LoginBody>,
) -> Result<Json<ApiResponse<Session>>, ApiFailure> {
    let phone = validate::phone(&body.phone)?;
    if body.password.is_none() && body.code.is_none() {
        return Err(ApiFailure::bad_request("give a password or an SMS code"));
    }
    state.limits.check(Class::Login, phone)?;
    let user = state
        .store
        .user_by_phone(phone)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::UserNotFound, "no user with this phone number"))?;
    if user.is_disabled {
        return Err(ApiFailure::new(ErrorCode::UserDisabled, "this account is disabled"));
    }
    if let Some(password) = body.password {
        let stored = state.store.password_hash(user.id).await?;
        let matches = match stored {
            Some(stored) => passwords::verify(stored, password).await,
            None => false,
        };
        if !matches {
            return Err(ApiFailure::new(ErrorCode::WrongPassword, "wrong password"));
        }
    } else if let Some(code) = body.code
        && !state.sms.verify(phone, CodePurpose::Login, &code, now_millis())
    {
        return Err(ApiFailure::new(ErrorCode::WrongCode, "the code is wrong or expired"));
    }
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
    let (_, tokens) = state.tokens.refresh(&body.refresh_token).await.map_err(|error| match error {
        RefreshError::Expired => ApiFailure::new(ErrorCode::TokenExpired, "refresh token expired"),
        RefreshError::Invalid => ApiFailure::new(ErrorCode::TokenInvalid, "refresh token invalid"),
        RefreshError::Store(store) => store.into(),
    })?;
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
