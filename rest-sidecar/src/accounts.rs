//! The account flows every HTTP contract shares: sending a code,
//! registering, logging in and refreshing. The canonical `/api/auth`
//! routes and each dialect's auth routes decode their own bodies and shape
//! their own replies; the rules (who may register, what a login checks)
//! are written here once.

use protocol::ErrorCode;
use protocol::time::now_millis;
use service::auth::{IssuedTokens, RefreshError};
use service::validate;
use storage::StoreError;
use storage::model::{DeviceSeen, NewUser, User};

use crate::extract::ClientAddr;
use crate::rate_limit::Class;
use crate::sms::{CodePurpose, SendCodeError, SentCode};
use crate::{ApiFailure, SidecarState, passwords};

/// Sends a code of `purpose` to `phone`, under the per-address send limit;
/// the answer never says whether the number is registered.
pub(crate) async fn send_code(
    state: &SidecarState,
    addr: &ClientAddr,
    phone: &str,
    purpose: CodePurpose,
) -> Result<SentCode, ApiFailure> {
    let phone = validate::phone(phone)?;
    state.limits.check(Class::SendCode, &addr.key())?;
    // Registered or not, the answer is the same: a `register` code for a
    // taken number reaches its owner, and registering with it says "taken"
    // only to whoever holds the phone.
    state.sms.send(phone, purpose, now_millis()).await.map_err(|error| match error {
        SendCodeError::TooSoon(wait) | SendCodeError::TooMany(wait) => ApiFailure::too_many(error.to_string(), wait),
        SendCodeError::Delivery(_) => ApiFailure::new(ErrorCode::Unavailable, error.to_string()),
    })
}

/// What registering takes, whichever contract asked.
#[derive(Debug, Default)]
pub(crate) struct Registration {
    /// Required unless there is an email.
    pub(crate) phone: String,
    pub(crate) email: Option<String>,
    pub(crate) password: String,
    pub(crate) username: Option<String>,
    pub(crate) nickname: Option<String>,
    /// A `register` SMS code, when the contract verifies the phone at sign-up.
    pub(crate) code: Option<String>,
}

/// Registers a user: the fields checked, the code (if given) verified, the
/// password hashed; a taken phone or username is refused by the store.
pub(crate) async fn register(state: &SidecarState, new: Registration) -> Result<User, ApiFailure> {
    let phone = match (&new.email, new.phone.is_empty()) {
        (Some(_), true) => String::new(),
        _ => validate::phone(&new.phone)?.to_owned(),
    };
    if let Some(email) = &new.email {
        validate::email(email)?;
    }
    validate::password(&new.password)?;
    if let Some(username) = &new.username {
        validate::username(username)?;
    }
    let nickname = match new.nickname {
        Some(nickname) => {
            validate::text("nickname", &nickname, 64)?;
            nickname
        }
        None => new.username.clone().unwrap_or_else(|| default_nickname(&phone)),
    };
    if state.config.require_phone_code && !phone.is_empty() && new.code.is_none() {
        return Err(ApiFailure::bad_request(
            "code: registering a phone number needs the code sent to it (send-code with type register)",
        ));
    }
    if let Some(code) = &new.code
        && !state.sms.verify(&phone, CodePurpose::Register, code, now_millis())
    {
        return Err(ApiFailure::new(ErrorCode::WrongCode, "the code is wrong or expired"));
    }
    // What the store would refuse is refused before the costly hash.
    // (The store's own refusals, so either check answers alike.)
    if !phone.is_empty() && state.store.user_by_phone(&phone).await?.is_some() {
        return Err(StoreError::PhoneTaken.into());
    }
    if let Some(username) = &new.username
        && state.store.user_by_username(username).await?.is_some()
    {
        return Err(StoreError::UsernameTaken.into());
    }
    if let Some(email) = &new.email
        && state.store.user_by_email(&storage::model::email_key(email)).await?.is_some()
    {
        return Err(StoreError::EmailTaken.into());
    }
    let hash = passwords::hash(new.password).await?;
    let new = NewUser {
        phone,
        username: new.username,
        nickname,
        password_hash: Some(hash),
        created_at: now_millis(),
        email: new.email,
        external_id: None,
    };
    let user = state.store.create_user(new).await?;
    tracing::info!(user_id = user.id, "user registered");
    Ok(user)
}

/// A new account's nickname until its owner picks one: `用户` and the
/// phone's last four digits.
fn default_nickname(phone: &str) -> String {
    match phone.len() {
        4.. => format!("用户{}", &phone[phone.len() - 4..]),
        _ => "用户".to_owned(),
    }
}

/// Logs in with an SMS code, registering the number on its first login
/// (the code proves it): the one way in of contracts without passwords
/// (seed 003). Under the login limit; a disabled account is refused.
pub(crate) async fn login_or_register_by_code(
    state: &SidecarState,
    addr: &ClientAddr,
    phone: &str,
    code: &str,
) -> Result<User, ApiFailure> {
    let phone = validate::phone(phone)?;
    admit_login(state, phone, addr).await?;
    let now = now_millis();
    if let Some(user) = state.store.user_by_phone(phone).await? {
        let passed = state.sms.verify(phone, CodePurpose::Login, code, now);
        return conclude(state, phone, Some(user), passed).into_result(wrong_code);
    }
    if !state.sms.verify(phone, CodePurpose::Register, code, now)
        && !state.sms.verify(phone, CodePurpose::Login, code, now)
    {
        state.login_backoff.failed(phone);
        return Err(wrong_code());
    }
    let new =
        NewUser { phone: phone.to_owned(), nickname: default_nickname(phone), created_at: now, ..NewUser::default() };
    match state.store.create_user(new).await {
        Ok(user) => {
            tracing::info!(user_id = user.id, "user registered by code");
            Ok(user)
        }
        // Registered meanwhile by a concurrent login with the same code.
        Err(StoreError::PhoneTaken) => state
            .store
            .user_by_phone(phone)
            .await?
            .ok_or_else(|| ApiFailure::new(ErrorCode::Internal, "internal error")),
        Err(error) => Err(error.into()),
    }
}

/// One answer for an unknown account and a wrong password, so a login
/// never tells whether a number or address is registered.
fn wrong_credentials() -> ApiFailure {
    ApiFailure::new(ErrorCode::WrongPassword, "wrong account or password")
}

fn wrong_code() -> ApiFailure {
    ApiFailure::new(ErrorCode::WrongCode, "the code is wrong or expired")
}

/// The login limit, per account and client address (one address cannot
/// lock an account out for everyone), then the account's backoff delay.
async fn admit_login(state: &SidecarState, account: &str, addr: &ClientAddr) -> Result<(), ApiFailure> {
    state.limits.check(Class::Login, &format!("{account}|{}", addr.key()))?;
    let delay = state.login_backoff.delay(account);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// Checks `password` against `user`'s hash; an unknown user costs the same
/// hash, so the time taken says nothing either.
async fn password_matches(state: &SidecarState, user: Option<&User>, password: String) -> Result<bool, ApiFailure> {
    let stored = match user {
        Some(user) => state.store.password_hash(user.id).await?,
        None => None,
    };
    let known = user.is_some() && stored.is_some();
    let matches = passwords::verify(stored.unwrap_or_else(|| passwords::DUMMY_HASH.to_owned()), password).await?;
    Ok(matches && known)
}

/// How a login that reached the credentials ended.
enum Outcome {
    Passed(Box<User>),
    /// The credentials were right, but the account is disabled.
    Disabled,
    Failed,
}

impl Outcome {
    fn into_result(self, refusal: fn() -> ApiFailure) -> Result<User, ApiFailure> {
        match self {
            Self::Passed(user) => Ok(*user),
            Self::Disabled => Err(ApiFailure::new(ErrorCode::UserDisabled, "this account is disabled")),
            Self::Failed => Err(refusal()),
        }
    }
}

/// A failure counts towards the account's backoff; a disabled account is
/// told so only once its credentials were right.
fn conclude(state: &SidecarState, account: &str, user: Option<User>, passed: bool) -> Outcome {
    match user {
        Some(user) if passed => {
            state.login_backoff.succeeded(account);
            if user.is_disabled { Outcome::Disabled } else { Outcome::Passed(Box::new(user)) }
        }
        _ => {
            state.login_backoff.failed(account);
            Outcome::Failed
        }
    }
}

/// Logs in by phone with a password or an SMS code, under the login limit
/// (per phone and client address) and the phone's backoff.
pub(crate) async fn login_by_phone(
    state: &SidecarState,
    addr: &ClientAddr,
    phone: &str,
    password: Option<String>,
    code: Option<String>,
) -> Result<User, ApiFailure> {
    let phone = validate::phone(phone)?;
    if password.is_none() && code.is_none() {
        return Err(ApiFailure::bad_request("give a password or an SMS code"));
    }
    admit_login(state, phone, addr).await?;
    let user = state.store.user_by_phone(phone).await?;
    if let Some(password) = password {
        let passed = password_matches(state, user.as_ref(), password).await?;
        return conclude(state, phone, user, passed).into_result(wrong_credentials);
    }
    let code = code.unwrap_or_default();
    let passed = state.sms.verify(phone, CodePurpose::Login, &code, now_millis());
    conclude(state, phone, user, passed).into_result(wrong_code)
}

/// Logs in by email and password, under the login limit (per address and
/// client address) and the address's backoff.
pub(crate) async fn login_by_email(
    state: &SidecarState,
    addr: &ClientAddr,
    email: &str,
    password: String,
) -> Result<User, ApiFailure> {
    validate::email(email)?;
    let key = storage::model::email_key(email);
    admit_login(state, &key, addr).await?;
    let user = state.store.user_by_email(&key).await?;
    let passed = password_matches(state, user.as_ref(), password).await?;
    conclude(state, &key, user, passed).into_result(wrong_credentials)
}

/// A new access and refresh pair for `user`.
pub(crate) async fn issue(state: &SidecarState, user: &User) -> Result<IssuedTokens, ApiFailure> {
    Ok(state.tokens.issue(user.id).await?)
}

/// Rotates a refresh token; answers whose it is and the new pair.
pub(crate) async fn refresh(state: &SidecarState, refresh_token: &str) -> Result<(i64, IssuedTokens), ApiFailure> {
    let (user_id, tokens) = state.tokens.refresh(refresh_token).await.map_err(|error| match error {
        RefreshError::Expired => ApiFailure::new(ErrorCode::TokenExpired, "refresh token expired"),
        RefreshError::Invalid => ApiFailure::new(ErrorCode::TokenInvalid, "refresh token invalid"),
        RefreshError::Store(store) => store.into(),
    })?;
    // A disabled account gets no new session (the rotated token is spent either way).
    if state.store.user(user_id).await?.is_none_or(|user| user.is_disabled) {
        return Err(ApiFailure::new(ErrorCode::UserDisabled, "this account is disabled"));
    }
    Ok((user_id, tokens))
}

/// A new access token for a live refresh token, which is not rotated
/// (seed 003's refresh answers only an access token).
pub(crate) async fn renew_access(state: &SidecarState, refresh_token: &str) -> Result<(i64, String), ApiFailure> {
    let (user_id, access_token) = state.tokens.renew_access(refresh_token).await.map_err(|error| match error {
        RefreshError::Expired | RefreshError::Invalid => {
            ApiFailure::new(ErrorCode::TokenInvalid, "refresh token invalid, expired or revoked")
        }
        RefreshError::Store(store) => store.into(),
    })?;
    if state.store.user(user_id).await?.is_none_or(|user| user.is_disabled) {
        return Err(ApiFailure::new(ErrorCode::UserDisabled, "this account is disabled"));
    }
    Ok((user_id, access_token))
}

/// Records the device a session was opened or renewed from; answers
/// whether it is new to the user. Ids and platforms are short printable
/// names, refused otherwise.
pub(crate) async fn record_device(
    state: &SidecarState,
    user_id: i64,
    device_id: &str,
    platform: &str,
) -> Result<bool, ApiFailure> {
    let printable = |text: &str, max: usize| text.chars().count() <= max && !text.chars().any(char::is_control);
    if device_id.is_empty() || !printable(device_id, 128) {
        return Err(ApiFailure::bad_request("device_id must be 1 to 128 printable characters"));
    }
    if !printable(platform, 32) {
        return Err(ApiFailure::bad_request("platform must be at most 32 printable characters"));
    }
    let device =
        DeviceSeen { user_id, device_id: device_id.to_owned(), platform: platform.to_owned(), at: now_millis() };
    Ok(state.store.record_device(device).await?)
}
