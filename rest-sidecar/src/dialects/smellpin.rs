//! Seed 003 (SmellPin) under `/api/v1`, beside seed 001 (their paths do
//! not collide): SMS-code sign-in, the profile, direct upload, health,
//! system info and client config. The envelope is `{code, message, data,
//! timestamp, requestId}` with the HTTP status as `code`; errors are
//! `{code, message, error: {type, details[{field, message}]}, timestamp,
//! requestId}` with the document's named types. Ids are strings.
//!
//! Annotations, LBS, payments and `users/stats` are the SmellPin
//! backend's: they answer 404 saying so.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use hmac::{Hmac, Mac};
use protocol::ErrorCode;
use protocol::time::{now_millis, to_iso};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service::ProfileUpdate;
use sha2::Sha256;
use storage::model::{FileKind, User as StoredUser};

use super::{Body, Failure, Shape, User};
use crate::extract::ClientAddr;
use crate::rate_limit::Class;
use crate::routes::files::{self, Received, TempGuard};
use crate::sms::CodePurpose;
use crate::{ApiFailure, SidecarState, accounts};

/// Seed 003's shape.
#[derive(Debug)]
pub(crate) struct SmellPin;

/// The document's error type and number for a canonical code.
fn error_type(code: ErrorCode) -> (&'static str, u32) {
    match code {
        ErrorCode::Unauthorized
        | ErrorCode::WrongPassword
        | ErrorCode::WrongCode
        | ErrorCode::TokenExpired
        | ErrorCode::TokenInvalid => ("AUTHENTICATION_FAILED", 1002),
        ErrorCode::Forbidden
        | ErrorCode::UserDisabled
        | ErrorCode::NotChatMember
        | ErrorCode::MessageForbidden
        | ErrorCode::BlockedByRecipient => ("AUTHORIZATION_FAILED", 1003),
        ErrorCode::NotFound
        | ErrorCode::UserNotFound
        | ErrorCode::ChatNotFound
        | ErrorCode::MessageNotFound
        | ErrorCode::FileNotFound => ("RESOURCE_NOT_FOUND", 1004),
        ErrorCode::Conflict | ErrorCode::PhoneExists | ErrorCode::UsernameExists => ("DUPLICATE_RESOURCE", 1005),
        ErrorCode::TooManyRequests => ("RATE_LIMIT_EXCEEDED", 1006),
        ErrorCode::FileTypeUnsupported | ErrorCode::FileTooLarge => ("FILE_UPLOAD_ERROR", 2003),
        ErrorCode::Unavailable => ("EXTERNAL_SERVICE_ERROR", 2002),
        ErrorCode::Internal => ("INTERNAL_SERVER_ERROR", 5000),
        _ => ("VALIDATION_ERROR", 1001),
    }
}

/// The document's error body for `code` with `detail`.
pub(crate) fn error_body(code: ErrorCode, detail: &str) -> (u16, Value) {
    let status = code.http_status();
    let (kind, number) = error_type(code);
    let details: Vec<Value> = super::field_of(detail)
        .filter(|_| kind == "VALIDATION_ERROR")
        .map(|field| vec![json!({ "field": field, "message": detail })])
        .unwrap_or_default();
    let body = json!({
        "code": status,
        "message": detail,
        "error": { "type": kind, "code": number, "details": details },
        "timestamp": to_iso(now_millis()),
        "requestId": super::request_id(),
    });
    (status, body)
}

impl Shape for SmellPin {
    fn failure(failure: ApiFailure) -> Response {
        let (status, body) = error_body(failure.code(), &failure.error.error);
        super::failure_response(status, body, failure.retry_after)
    }
}

type Fail = Failure<SmellPin>;
type Reply = Result<Response, Fail>;

/// The document's success envelope (its examples answer 200 throughout).
fn ok(message: &str, data: impl Serialize) -> Reply {
    let status = StatusCode::OK;
    let data = super::data_value(data)?;
    let body = json!({
        "code": status.as_u16(),
        "message": message,
        "data": data,
        "timestamp": to_iso(now_millis()),
        "requestId": super::request_id(),
    });
    Ok((status, Json(body)).into_response())
}

/// The `/api/v1` routes of seed 003.
pub(crate) fn routes(body_limit: usize, upload_limit: usize) -> axum::Router<SidecarState> {
    use axum::extract::DefaultBodyLimit;
    let json_routes = axum::Router::new()
        .route("/api/v1/auth/send-code", post(send_code))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/users/profile", get(profile).put(update_profile))
        .route("/api/v1/upload/token", post(upload_token))
        .route("/api/v1/upload/complete", post(upload_complete))
        .route("/api/v1/health", get(health))
        .route("/api/v1/health/info", get(info))
        .route("/api/v1/config", get(config))
        .route("/api/v1/users/stats", any(not_served))
        .route("/api/v1/annotations", any(not_served))
        .route("/api/v1/annotations/{*rest}", any(not_served))
        .route("/api/v1/lbs/{*rest}", any(not_served))
        .route("/api/v1/payments/{*rest}", any(not_served))
        .layer(DefaultBodyLimit::max(body_limit));
    let uploads = axum::Router::new()
        .route("/api/v1/upload/direct", post(upload_direct).put(upload_direct))
        .layer(DefaultBodyLimit::max(upload_limit));
    json_routes.merge(uploads)
}

async fn not_served() -> Fail {
    Fail::new(ErrorCode::NotFound, "served by the SmellPin backend, not by the messaging engine")
}

#[derive(Debug, Deserialize)]
struct SendCodeBody {
    phone: String,
    #[serde(rename = "type")]
    purpose: CodePurpose,
}

/// `POST /api/v1/auth/send-code`.
async fn send_code(State(state): State<SidecarState>, addr: ClientAddr, body: Body<SendCodeBody, SmellPin>) -> Reply {
    let body = body.0;
    let sent = accounts::send_code(&state, &addr, &body.phone, body.purpose).await?;
    let mut data = json!({ "expires_in": sent.expires_in_secs, "retry_after": sent.retry_after_secs });
    if state.config.dev {
        data["debug_code"] = sent.code.into();
    }
    ok("验证码发送成功", data)
}

/// Profile fields the SmellPin backend sets through the server API and
/// the profile shows; `level` and `balance` have the document's defaults.
const BACKEND_FIELDS: [&str; 7] =
    ["level", "balance", "experience", "total_earnings", "total_spent", "annotations_count", "discoveries_count"];

fn backend_field(fields: &Map<String, Value>, name: &str) -> Value {
    fields.get(name).cloned().unwrap_or_else(|| match name {
        "level" => json!(1),
        "balance" => json!(0.0),
        _ => Value::Null,
    })
}

/// The user as the login answer shows it.
fn login_user(user: &StoredUser, fields: &Map<String, Value>) -> Value {
    json!({
        "id": user.id.to_string(),
        "phone": user.phone,
        "nickname": user.nickname,
        "avatar": user.avatar,
        "level": backend_field(fields, "level"),
        "balance": backend_field(fields, "balance"),
        "created_at": to_iso(user.created_at),
    })
}

/// The profile as `GET /users/profile` shows it.
fn profile_of(user: &StoredUser, fields: &Map<String, Value>) -> Value {
    let mut shown = json!({
        "id": user.id.to_string(),
        "phone": user.phone,
        "nickname": user.nickname,
        "avatar": user.avatar,
        "gender": user.gender,
        "birthday": user.birthday,
        "created_at": to_iso(user.created_at),
        "updated_at": to_iso(user.updated_at),
    });
    for name in BACKEND_FIELDS {
        let value = backend_field(fields, name);
        if !value.is_null() {
            shown[name] = value;
        }
    }
    shown
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    phone: String,
    code: String,
}

/// `POST /api/v1/auth/login`: phone and SMS code; the first login of a
/// number registers it.
async fn login(State(state): State<SidecarState>, addr: ClientAddr, body: Body<LoginBody, SmellPin>) -> Reply {
    let body = body.0;
    let user = accounts::login_or_register_by_code(&state, &addr, &body.phone, &body.code).await?;
    let tokens = accounts::issue(&state, &user).await?;
    let fields = state.store.profile_fields(user.id).await?;
    ok(
        "登录成功",
        json!({
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": tokens.expires_in,
            "user": login_user(&user, &fields),
        }),
    )
}

/// `POST /api/v1/auth/refresh` with `Authorization: Bearer <refresh
/// token>` and no body: a new access token; the refresh token stays valid.
async fn refresh(State(state): State<SidecarState>, request: Request) -> Reply {
    let (parts, _) = request.into_parts();
    let token = crate::extract::bearer(&parts)
        .ok_or_else(|| Fail::new(ErrorCode::Unauthorized, "send the refresh token as Authorization: Bearer"))?;
    let (_, access_token) = accounts::renew_access(&state, token).await?;
    ok("令牌刷新成功", json!({ "access_token": access_token, "expires_in": state.tokens.access_ttl_secs() }))
}

/// `POST /api/v1/auth/logout` names only the access token, and the document
/// says the tokens end: the sign-in's refresh token and every access token
/// it gave are refused from now on.
async fn logout(State(state): State<SidecarState>, caller: User<SmellPin>) -> Reply {
    state.tokens.end_session(&caller.0.claims).await.map_err(ApiFailure::from)?;
    ok("登出成功", Value::Null)
}

async fn stored(state: &SidecarState, user: i64) -> Result<StoredUser, Fail> {
    state.store.user(user).await?.ok_or_else(|| Fail::new(ErrorCode::NotFound, "no such user"))
}

/// `GET /api/v1/users/profile`.
async fn profile(State(state): State<SidecarState>, caller: User<SmellPin>) -> Reply {
    let user = stored(&state, caller.id()).await?;
    let fields = state.store.profile_fields(user.id).await?;
    ok("获取成功", profile_of(&user, &fields))
}

#[derive(Debug, Deserialize)]
struct ProfileBody {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    birthday: Option<String>,
    #[serde(default)]
    avatar: Option<String>,
}

/// `PUT /api/v1/users/profile`: nickname, gender, birthday, avatar.
async fn update_profile(
    State(state): State<SidecarState>,
    caller: User<SmellPin>,
    body: Body<ProfileBody, SmellPin>,
) -> Reply {
    let body = body.0;
    let change = ProfileUpdate {
        nickname: body.nickname,
        gender: body.gender,
        birthday: body.birthday,
        avatar: body.avatar,
        ..ProfileUpdate::default()
    };
    state.services.users.update_me(caller.id(), change).await?;
    let user = stored(&state, caller.id()).await?;
    ok(
        "更新成功",
        json!({
            "id": user.id.to_string(),
            "nickname": user.nickname,
            "gender": user.gender,
            "birthday": user.birthday,
            "avatar": user.avatar,
            "updated_at": to_iso(user.updated_at),
        }),
    )
}

// ---- direct upload ----

/// How long an upload URL may be used.
const UPLOAD_URL_TTL_MS: i64 = 15 * 60 * 1000;

/// What an upload URL allows, signed: one file of `size` bytes of `kind`
/// for `user`, under `key`, until `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Policy {
    key: String,
    user: i64,
    kind: String,
    size: u64,
    name: String,
    expires_at: i64,
}

fn sign(state: &SidecarState, policy: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&state.config.jwt_secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(b"switchboard upload policy\0");
    mac.update(policy.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The policy, if `signature` is its and it has not expired.
fn verify_policy(state: &SidecarState, policy: &str, signature: &str) -> Result<Policy, Fail> {
    let refused = || Fail::new(ErrorCode::Forbidden, "the upload URL is not valid");
    let expected = sign(state, policy);
    let matches: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into();
    if !matches {
        return Err(refused());
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(policy).map_err(|_| refused())?;
    let policy: Policy = serde_json::from_slice(&decoded).map_err(|_| refused())?;
    if policy.expires_at <= now_millis() {
        return Err(Fail::new(ErrorCode::Forbidden, "the upload URL has expired; ask for a new one"));
    }
    Ok(policy)
}

/// Where a direct upload waits for `complete`, and its record.
fn pending_paths(state: &SidecarState, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = state.config.files_dir.join("tmp");
    (dir.join(format!("direct-{key}")), dir.join(format!("direct-{key}.json")))
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    #[serde(rename = "file_type")]
    kind: String,
    #[serde(rename = "file_size")]
    size: u64,
    #[serde(rename = "file_name")]
    name: String,
}

/// `POST /api/v1/upload/token`: a one-use URL on this server, good for 15
/// minutes, for one file of the declared type and size.
async fn upload_token(
    State(state): State<SidecarState>,
    caller: User<SmellPin>,
    body: Body<TokenBody, SmellPin>,
) -> Reply {
    let body = body.0;
    if !matches!(body.kind.as_str(), "image" | "video" | "audio") {
        return Err(Fail::new(ErrorCode::BadRequest, "file_type must be image, video or audio"));
    }
    if body.size == 0 || body.size > state.config.upload_limit {
        return Err(Fail::new(
            ErrorCode::FileTooLarge,
            format!("file_size must be 1 to {} bytes", state.config.upload_limit),
        ));
    }
    let name: String = body.name.chars().filter(|c| !c.is_control()).take(255).collect();
    if name.trim().is_empty() {
        return Err(Fail::new(ErrorCode::BadRequest, "file_name must not be empty"));
    }
    state.limits.check(Class::Upload, &format!("user:{}", caller.id()))?;
    let expires_at = now_millis() + UPLOAD_URL_TTL_MS;
    let key = hex::encode(rand::random::<[u8; 16]>());
    let policy = Policy { key: key.clone(), user: caller.id(), kind: body.kind, size: body.size, name, expires_at };
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&policy).map_err(|_| Fail::new(ErrorCode::Internal, "internal error"))?);
    let signature = sign(&state, &encoded);
    ok(
        "获取成功",
        json!({
            "upload_url": format!("/api/v1/upload/direct?policy={encoded}&signature={signature}"),
            "file_key": key,
            // Known once the upload is complete (its answer has it).
            "access_url": Value::Null,
            "policy": encoded,
            "signature": signature,
            "expires_at": to_iso(expires_at),
        }),
    )
}

#[derive(Debug, Deserialize)]
struct DirectQuery {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// `POST` (multipart with a `file` part, as a form upload to a bucket) or
/// `PUT` (the raw bytes) to the upload URL: once, exactly the declared
/// size, and content of the declared type. Kept until `complete`.
async fn upload_direct(State(state): State<SidecarState>, request: Request) -> Reply {
    let query: DirectQuery = serde_urlencoded_query(request.uri().query())?;
    let (Some(policy), Some(signature)) = (query.policy, query.signature) else {
        return Err(Fail::new(ErrorCode::Unauthorized, "the upload URL needs its policy and signature"));
    };
    let policy = verify_policy(&state, &policy, &signature)?;
    let (data_path, record_path) = pending_paths(&state, &policy.key);
    if let Some(dir) = record_path.parent() {
        tokio::fs::create_dir_all(dir).await.ok();
    }
    // One use: the record is made first and only once.
    let mut record = match tokio::fs::OpenOptions::new().write(true).create_new(true).open(&record_path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Fail::new(ErrorCode::Conflict, "this upload URL was used already"));
        }
        Err(error) => {
            tracing::warn!(%error, "upload record not created");
            return Err(Fail::new(ErrorCode::Unavailable, "the upload could not start; try again"));
        }
    };
    let mut guard = TempGuard::default();
    let received = receive(&state, request, &policy, &mut guard).await;
    let received = match received {
        Ok(received) => received,
        Err(failure) => {
            // A failed attempt frees the URL for another try.
            drop(record);
            let _ = tokio::fs::remove_file(&record_path).await;
            return Err(failure);
        }
    };
    if received.size != policy.size {
        drop(record);
        let _ = tokio::fs::remove_file(&record_path).await;
        return Err(Fail::new(
            ErrorCode::BadRequest,
            format!("file_size: the upload is {} bytes, not the {} declared", received.size, policy.size),
        ));
    }
    tokio::fs::rename(&received.temp, &data_path).await.map_err(|error| {
        tracing::error!(%error, "direct upload not kept");
        Fail::new(ErrorCode::Internal, "internal error")
    })?;
    guard.0 = None;
    let kept = Received { temp: data_path, ..received };
    let text = serde_json::to_vec(&json!({ "policy": policy, "received": kept })).unwrap_or_default();
    tokio::io::AsyncWriteExt::write_all(&mut record, &text).await.map_err(|error| {
        tracing::error!(%error, "direct upload record not written");
        Fail::new(ErrorCode::Internal, "internal error")
    })?;
    record.sync_all().await.ok();
    ok("上传成功", json!({ "file_key": policy.key, "file_size": kept.size }))
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, Fail> {
    let uri: axum::http::Uri = format!("/?{}", query.unwrap_or_default())
        .parse()
        .map_err(|_| Fail::new(ErrorCode::BadRequest, "malformed query"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|axum::extract::Query(value)| value)
        .map_err(|rejection| Fail::from(ApiFailure::from(rejection)))
}

/// The upload's bytes: the `file` part of a multipart body, or the body.
async fn receive(
    state: &SidecarState,
    request: Request,
    policy: &Policy,
    guard: &mut TempGuard,
) -> Result<Received, Fail> {
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    // A byte more than declared is enough to refuse it.
    let limit = policy.size;
    if multipart {
        let multipart: Result<Multipart, MultipartRejection> = Multipart::from_request(request, state).await;
        let mut multipart = multipart.map_err(|rejection| ApiFailure::bad_request(rejection.body_text()))?;
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|error| ApiFailure::bad_request(format!("malformed multipart body: {error}")))?
        {
            if field.name() == Some("file") {
                let chunks = futures_util::StreamExt::map(&mut field, |chunk| {
                    chunk.map_err(|error| ApiFailure::bad_request(format!("malformed multipart body: {error}")))
                });
                return Ok(files::receive_stream(state, &policy.name, chunks, limit, guard).await?);
            }
        }
        return Err(Fail::new(ErrorCode::BadRequest, "file: a `file` part is required"));
    }
    let chunks = futures_util::StreamExt::map(request.into_body().into_data_stream(), |chunk| {
        chunk.map_err(|error| ApiFailure::bad_request(format!("the upload broke off: {error}")))
    });
    Ok(files::receive_stream(state, &policy.name, chunks, limit, guard).await?)
}

#[derive(Debug, Deserialize)]
struct CompleteBody {
    #[serde(rename = "file_key")]
    key: String,
    #[serde(rename = "file_size")]
    size: u64,
    /// `file_hash`: MD5 or SHA-256 of the bytes, hex; checked when given.
    #[serde(default, rename = "file_hash")]
    hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PendingRecord {
    policy: Policy,
    received: Received,
}

/// `POST /api/v1/upload/complete`: the uploaded bytes become the caller's
/// file, with the same checks as every upload (the content must really be
/// the declared type).
async fn upload_complete(
    State(state): State<SidecarState>,
    caller: User<SmellPin>,
    body: Body<CompleteBody, SmellPin>,
) -> Reply {
    let body = body.0;
    let unknown = || Fail::new(ErrorCode::NotFound, "no upload with this file_key is waiting");
    if body.key.len() != 32 || !body.key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let (data_path, record_path) = pending_paths(&state, &body.key);
    let text = tokio::fs::read(&record_path).await.map_err(|_| unknown())?;
    let record: PendingRecord = serde_json::from_slice(&text).map_err(|_| unknown())?;
    if record.policy.user != caller.id() || !tokio::fs::try_exists(&data_path).await.unwrap_or(false) {
        return Err(unknown());
    }
    if body.size != record.received.size {
        return Err(Fail::new(ErrorCode::BadRequest, "file_size does not match the uploaded bytes"));
    }
    if let Some(hash) = body.hash.as_deref().map(str::to_ascii_lowercase)
        && hash != record.received.md5
        && hash != record.received.sha256
    {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            "file_hash matches neither the MD5 nor the SHA-256 of the upload",
        ));
    }
    let declared = FileKind::parse(&record.policy.kind);
    // The record stays (empty) until it is pruned: the URL cannot be used again.
    let mut guard = TempGuard(Some(data_path.clone()));
    let (file, _, _) = files::keep(&state, caller.id(), record.received, declared).await?;
    guard.0 = None;
    let _ = tokio::fs::write(&record_path, b"{}").await;
    let thumbnail = files::thumbnail_url(&file);
    ok(
        "上传完成",
        json!({
            "file_id": file.id.to_string(),
            "access_url": files::url(&file),
            "thumbnail_url": if thumbnail.is_empty() { Value::Null } else { Value::String(thumbnail) },
        }),
    )
}

// ---- system ----

/// `GET /api/v1/health`: the body of `/health`.
async fn health(State(state): State<SidecarState>) -> Response {
    let probe = std::sync::Arc::new(crate::health_probe(&state));
    ops::health(State(probe)).await.into_response()
}

/// Resident memory of this process, in MiB (Linux), if known.
fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `GET /api/v1/health/info`: what is running where.
async fn info(State(state): State<SidecarState>) -> Reply {
    let config = &state.config;
    ok(
        "获取成功",
        json!({
            "app": {
                "name": "Switchboard",
                "version": config.version,
                "build": option_env!("SWITCHBOARD_BUILD").unwrap_or("dev"),
                "environment": if config.dev { "development" } else { "production" },
            },
            "system": {
                "platform": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "uptime": state.started.elapsed().as_secs(),
                "memory_usage": { "rss_mib": rss_mib() },
                "node_id": config.node_id,
            },
            "database": { "type": config.store_kind },
            "router": { "type": if state.redis.is_some() { "redis" } else { "memory" } },
        }),
    )
}

/// `GET /api/v1/config`: the limits and features a client needs to know.
async fn config(State(state): State<SidecarState>) -> Reply {
    let config = &state.config;
    let rate = |rate: crate::rate_limit::Rate| json!({ "count": rate.count, "window_seconds": rate.window.as_secs() });
    let send = state.services.pipeline().limits();
    ok(
        "获取成功",
        json!({
            "app": { "name": "Switchboard", "version": config.version, "min_version": config.version },
            "features": {
                "sms_login": true,
                "direct_upload": true,
                "websocket": true,
                "push_notifications": true,
            },
            "limits": {
                "max_upload_size": config.upload_limit,
                "max_image_size": config.upload_limit,
                "max_request_body": config.body_limit,
                "max_message_chars": send.max_content_chars,
                "max_group_members": state.services.config().max_group_members,
                "upload_url_ttl_seconds": UPLOAD_URL_TTL_MS / 1000,
            },
            "rate_limits": {
                "send_code": rate(config.rates.send_code),
                "login": rate(config.rates.login),
                "upload": rate(config.rates.upload),
                "other": rate(config.rates.other),
            },
            "upload": { "file_types": ["image", "video", "audio"] },
            "message_types": ["text", "image", "voice", "video", "file", "location"],
        }),
    )
}
