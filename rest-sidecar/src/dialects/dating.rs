//! Seed 000 (the dating app) under `/v1`: its auth (section 2) and its
//! messaging module (section 5), in its envelope `{code, message, data,
//! timestamp (ms), request_id}` with section 1.3's codes. Matching,
//! profiles, events and real-name verification are the app backend's.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use protocol::ErrorCode;
use protocol::dialect::dating;
use protocol::time::{now_millis, to_iso};
use protocol::views::MessageView;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service::{HistoryQuery, MessageReceipts};
use storage::model::{ChatKind, Cursor, FileKind, User as StoredUser};

use super::{Body, Failure, Path, Query, Shape, User};
use crate::extract::ClientAddr;
use crate::routes::files;
use crate::sms::CodePurpose;
use crate::{ApiFailure, SidecarState, accounts};

/// Seed 000's shape.
#[derive(Debug)]
pub(crate) struct Dating;

impl Shape for Dating {
    fn failure(failure: ApiFailure) -> Response {
        let code = failure.code();
        let detail = failure.error.error;
        let field = super::field_of(&detail);
        let errors = if code == ErrorCode::BadRequest {
            field.map(|field| vec![json!({ "field": field, "message": detail })]).unwrap_or_default()
        } else {
            Vec::new()
        };
        let (status, mut body) = dating::error_body(code, &detail, &errors, &super::request_id());
        if code == ErrorCode::BadRequest && super::is_missing(&detail) {
            body["code"] = dating::MISSING_PARAMETER.into();
        }
        super::failure_response(status, body, failure.retry_after)
    }
}

type Fail = Failure<Dating>;
type Reply = Result<Json<Value>, Fail>;

/// Section 1.2's success envelope.
fn ok(message: &str, data: impl Serialize) -> Reply {
    let data = super::data_value(data)?;
    Ok(Json(json!({
        "code": 200,
        "message": message,
        "data": data,
        "timestamp": now_millis(),
        "request_id": super::request_id(),
    })))
}

/// The `/v1` routes (the WebSocket at `/v1` itself is the gateway's).
pub(crate) fn routes(body_limit: usize, upload_limit: usize) -> axum::Router<SidecarState> {
    use axum::extract::DefaultBodyLimit;
    let json_routes = axum::Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/auth/sms-code/send", post(send_code))
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/conversations", get(conversations))
        .route("/v1/conversations/{id}/messages", get(history).post(send))
        .route("/v1/conversations/{id}/read", put(read))
        .route("/v1/messages/{id}/recall", put(recall))
        .route("/v1/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(body_limit));
    let uploads =
        axum::Router::new().route("/v1/messages/upload", post(upload)).layer(DefaultBodyLimit::max(upload_limit));
    json_routes.merge(uploads)
}

const OPENAPI: &str = include_str!("../../openapi/v1.json");

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found() -> Fail {
    Fail::new(ErrorCode::NotFound, "no such endpoint under /v1")
}

/// `138****8000`.
fn masked(phone: &str) -> String {
    if phone.len() < 7 || !phone.is_ascii() {
        return "****".into();
    }
    format!("{}****{}", &phone[..3], &phone[phone.len() - 4..])
}

/// The profile fields section 2 names, which the app backend sets
/// through the server API; absent until it does.
const BACKEND_FIELDS: [&str; 2] = ["vip_level", "profile_completion_rate"];

/// The user as section 2 shows it, with the backend's `fields`.
fn user(user: &StoredUser, fields: &serde_json::Map<String, Value>) -> Value {
    let mut shown = json!({
        "id": user.id,
        "phone": masked(&user.phone),
        "status": i32::from(!user.is_disabled),
        "nickname": user.nickname,
        "avatar_url": user.avatar,
        "created_at": to_iso(user.created_at),
    });
    for name in BACKEND_FIELDS {
        if let Some(value) = fields.get(name) {
            shown[name] = value.clone();
        }
    }
    shown
}

#[derive(Debug, Deserialize)]
struct SendCodeBody {
    phone: String,
    #[serde(rename = "type")]
    purpose: CodePurpose,
}

/// `POST /v1/auth/sms-code/send`.
async fn send_code(State(state): State<SidecarState>, addr: ClientAddr, body: Body<SendCodeBody, Dating>) -> Reply {
    let body = body.0;
    let sent = accounts::send_code(&state, &addr, &body.phone, body.purpose).await?;
    let mut data = json!({ "expire_seconds": sent.expires_in_secs, "send_interval": sent.retry_after_secs });
    if state.config.dev {
        data["debug_code"] = sent.code.into();
    }
    ok("验证码发送成功", data)
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    phone: String,
    code: String,
    password: String,
    #[serde(default)]
    #[allow(dead_code, reason = "invitations are the app backend's; accepted and not used")]
    invite_code: Option<String>,
}

/// The session section 2 answers with.
async fn session(state: &SidecarState, stored: &StoredUser, is_new_device: Option<bool>) -> Result<Value, Fail> {
    let tokens = accounts::issue(state, stored).await?;
    let fields = state.store.profile_fields(stored.id).await?;
    let mut data = json!({
        "user_id": stored.id,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in": tokens.expires_in,
        "user": user(stored, &fields),
    });
    if let Some(is_new_device) = is_new_device {
        data["is_new_device"] = is_new_device.into();
    }
    Ok(data)
}

/// Section 1.1's `X-Device-ID` and `X-Platform`, recorded with the
/// sessions they open or renew.
#[derive(Debug)]
struct DeviceHeaders {
    device_id: Option<String>,
    platform: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for DeviceHeaders {
    type Rejection = Fail;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Fail> {
        let header = |name: &str| -> Result<Option<String>, Fail> {
            match parts.headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map(|text| Some(text.trim().to_owned()).filter(|text| !text.is_empty()))
                    .map_err(|_| Fail::new(ErrorCode::BadRequest, format!("{name} must be printable ASCII"))),
            }
        };
        Ok(Self { device_id: header("x-device-id")?, platform: header("x-platform")? })
    }
}

/// Records the session's device, if one is named; answers whether it is new.
async fn note_device(
    state: &SidecarState,
    user_id: i64,
    device_id: Option<&str>,
    platform: Option<&str>,
) -> Result<Option<bool>, Fail> {
    match device_id {
        Some(device) => Ok(Some(accounts::record_device(state, user_id, device, platform.unwrap_or("")).await?)),
        None => Ok(None),
    }
}

/// `POST /v1/auth/register`: the code is required.
async fn register(State(state): State<SidecarState>, device: DeviceHeaders, body: Body<RegisterBody, Dating>) -> Reply {
    let body = body.0;
    let registration = accounts::Registration {
        phone: body.phone,
        password: body.password,
        username: None,
        nickname: None,
        code: Some(body.code),
        email: None,
    };
    let stored = accounts::register(&state, registration).await?;
    note_device(&state, stored.id, device.device_id.as_deref(), device.platform.as_deref()).await?;
    ok("注册成功", session(&state, &stored, None).await?)
}

#[derive(Debug, Default, Deserialize)]
struct DeviceInfo {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    device_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    phone: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    device_info: Option<DeviceInfo>,
}

/// `POST /v1/auth/login`: `is_new_device` from `device_info.device_id`
/// (or `X-Device-ID`), kept per user in the store.
async fn login(
    State(state): State<SidecarState>,
    addr: ClientAddr,
    headers: DeviceHeaders,
    body: Body<LoginBody, Dating>,
) -> Reply {
    let body = body.0;
    let stored = accounts::login_by_phone(&state, &addr, &body.phone, body.password, body.code).await?;
    let info = body.device_info.unwrap_or_default();
    let device = info.device_id.filter(|id| !id.is_empty()).or(headers.device_id);
    let platform = headers.platform.or(info.device_type);
    let is_new_device = note_device(&state, stored.id, device.as_deref(), platform.as_deref()).await?;
    ok("登录成功", session(&state, &stored, is_new_device).await?)
}

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/auth/refresh`.
async fn refresh(State(state): State<SidecarState>, device: DeviceHeaders, body: Body<RefreshBody, Dating>) -> Reply {
    let (user_id, tokens) = accounts::refresh(&state, &body.0.refresh_token).await?;
    note_device(&state, user_id, device.device_id.as_deref(), device.platform.as_deref()).await?;
    let data = json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in": tokens.expires_in,
    });
    ok("令牌刷新成功", data)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default = "first_page")]
    page: u32,
    #[serde(default = "default_page_size")]
    page_size: u32,
}

fn first_page() -> u32 {
    1
}

fn default_page_size() -> u32 {
    20
}

/// Most chats read to list a user's conversations.
const MAX_CONVERSATIONS: u32 = 1_000;

/// `GET /v1/conversations`: the caller's private chats (a dating
/// conversation is between two people), with the peer's live presence,
/// paged as section 1.4 says, and `total_unread` over all of them.
async fn conversations(
    State(state): State<SidecarState>,
    caller: User<Dating>,
    query: Query<PageQuery, Dating>,
) -> Reply {
    let PageQuery { page, page_size } = query.0;
    if page == 0 || !(1..=100).contains(&page_size) {
        return Err(Fail::new(ErrorCode::BadRequest, "page starts at 1; page_size must be 1 to 100"));
    }
    let me = caller.id();
    // Each private chat with its other member, as the list found them.
    let mut chats = Vec::new();
    let mut offset = 0;
    loop {
        let list = state.services.chats.list(me, 100, offset).await?;
        offset += 100;
        let private =
            list.chats.into_iter().zip(list.peers).filter(|(chat, _)| chat.kind == ChatKind::Private.as_str());
        chats.extend(private);
        if !list.has_more || offset >= MAX_CONVERSATIONS {
            break;
        }
    }
    let total_unread: u64 = chats.iter().filter_map(|(chat, _)| chat.unread_count).sum();
    let total = chats.len() as u64;
    let start = usize::try_from(u64::from(page - 1) * u64::from(page_size)).unwrap_or(usize::MAX);
    let (shown, peers): (Vec<_>, Vec<_>) = chats.into_iter().skip(start).take(page_size as usize).unzip();
    let ids: Vec<i64> = peers.iter().flatten().copied().collect();
    let users = state.store.users(&ids).await?;
    let presence = state.services.users.presence(me, &ids).await?;
    let items: Vec<Value> = shown
        .iter()
        .zip(&peers)
        .map(|(chat, peer)| {
            let peer_user = peer.and_then(|peer| users.iter().find(|user| user.id == peer));
            let online = peer.is_some_and(|peer| presence.iter().any(|state| state.user_id == peer && state.is_online));
            let last = chat.last_message.as_ref().map(|last| {
                json!({
                    "message_id": last.id,
                    "type": last.kind,
                    "content": last.content,
                    "time": last.created_at,
                    "is_me": last.sender_id == me,
                })
            });
            json!({
                "conversation_id": chat.id,
                "user": {
                    "user_id": peer,
                    "nickname": peer_user.map(|user| user.nickname.clone()).unwrap_or_default(),
                    "avatar": peer_user.map(|user| user.avatar.clone()).unwrap_or_default(),
                    "is_online": online,
                },
                "last_message": last,
                "unread_count": chat.unread_count.unwrap_or(0),
                "is_pinned": chat.is_pinned,
                "is_muted": chat.is_muted,
            })
        })
        .collect();
    let total_pages = total.div_ceil(u64::from(page_size));
    let data = json!({
        "items": items,
        "total_unread": total_unread,
        "pagination": {
            "page": page,
            "page_size": page_size,
            "total": total,
            "total_pages": total_pages,
            "has_next": u64::from(page) < total_pages,
            "has_prev": page > 1,
        },
    });
    ok("success", data)
}

/// A message as section 5 shows it to `me`, with its `status` from the
/// receipts: mine are `read` (with `read_at`) once the other side read
/// them, `delivered` once one of their devices had them, `sent` before;
/// theirs are `read` once I read them, `delivered` before (I have them).
fn message(view: &MessageView, me: i64, receipts: Option<&MessageReceipts>) -> Value {
    let value = serde_json::to_value(view).unwrap_or_default();
    let mut out = dating::message(&value);
    let mine = view.sender_id == me;
    let receipts = receipts.map_or(&[][..], |receipts| receipts.receipts.as_slice());
    let others = || receipts.iter().filter(|receipt| receipt.user_id != me);
    let (status, at) = if mine {
        if others().any(|receipt| receipt.read) {
            ("read", others().filter_map(|receipt| receipt.read_at).min())
        } else if others().any(|receipt| receipt.delivered) {
            ("delivered", others().filter_map(|receipt| receipt.delivered_at).min())
        } else {
            ("sent", None)
        }
    } else {
        match receipts.iter().find(|receipt| receipt.user_id == me && receipt.read) {
            Some(receipt) => ("read", receipt.read_at),
            None => ("delivered", None),
        }
    };
    out.insert("is_me".into(), mine.into());
    out.insert("status".into(), status.into());
    match (status, at) {
        ("read", Some(at)) => out.insert("read_at".into(), to_iso(at).into()),
        ("delivered", Some(at)) if mine => out.insert("delivered_at".into(), to_iso(at).into()),
        _ => None,
    };
    Value::Object(out)
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    #[serde(default)]
    before_id: Option<i64>,
    #[serde(default = "default_page_size")]
    page_size: u32,
}

/// `GET /v1/conversations/{id}/messages?before_id&page_size`: oldest first.
async fn history(
    State(state): State<SidecarState>,
    caller: User<Dating>,
    id: Path<i64, Dating>,
    query: Query<HistoryParams, Dating>,
) -> Reply {
    let HistoryParams { before_id, page_size } = query.0;
    let query =
        HistoryQuery { limit: page_size, before: before_id.map(Cursor::Id), receipts: true, ..HistoryQuery::default() };
    let page = state.services.messages.history(caller.id(), id.0, query).await?;
    let items: Vec<Value> = page
        .messages
        .iter()
        .zip(&page.receipts)
        .map(|(view, receipts)| message(view, caller.id(), Some(receipts)))
        .collect();
    ok("success", json!({ "items": items, "has_more": page.has_more }))
}

/// `POST /v1/conversations/{id}/messages`: a retry with the same
/// `client_message_id` answers the original.
async fn send(
    State(state): State<SidecarState>,
    caller: User<Dating>,
    id: Path<i64, Dating>,
    body: Body<dating::MessageBody, Dating>,
) -> Reply {
    let command = body.0.into_command(id.0);
    let sent = state.services.messages.send(caller.id(), id.0, command).await?;
    ok("success", message(&sent.view, caller.id(), None))
}

/// Seed 000 names audio `voice`.
fn upload_kind(text: &str) -> Option<FileKind> {
    match text {
        "voice" => Some(FileKind::Audio),
        "image" | "video" => FileKind::parse(text),
        _ => None,
    }
}

/// `POST /v1/messages/upload` (multipart `file`, `type` image | voice |
/// video, and `duration` in seconds for voice and video, which is taken
/// as the client says: the server does not parse audio or video).
async fn upload(
    State(state): State<SidecarState>,
    caller: User<Dating>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply {
    let uploaded = files::store_upload(&state, caller.id(), multipart, upload_kind, &["duration"]).await?;
    let duration = match uploaded.fields.iter().find(|(name, _)| name == "duration") {
        Some((_, text)) => text
            .trim()
            .parse::<u32>()
            .map_err(|_| Fail::new(ErrorCode::BadRequest, "duration must be a whole number of seconds"))?,
        None => 0,
    };
    let file = &uploaded.file;
    let data = json!({
        "url": files::url(file),
        "thumbnail": files::thumbnail_url(file),
        "width": uploaded.width.unwrap_or(0),
        "height": uploaded.height.unwrap_or(0),
        "duration": if file.kind == FileKind::Image { 0 } else { duration },
        "size": file.size,
    });
    ok("上传成功", data)
}

#[derive(Debug, Deserialize)]
struct ReadBody {
    last_read_message_id: i64,
}

/// `PUT /v1/conversations/{id}/read`.
async fn read(
    State(state): State<SidecarState>,
    caller: User<Dating>,
    id: Path<i64, Dating>,
    body: Body<ReadBody, Dating>,
) -> Reply {
    let marker = state.services.messages.read(caller.id(), Some(id.0), body.0.last_read_message_id).await?;
    let data = json!({
        "conversation_id": marker.chat_id,
        "last_read_message_id": body.0.last_read_message_id,
        "last_read_seq": marker.last_read_seq,
    });
    ok("success", data)
}

/// `PUT /v1/messages/{id}/recall`: the sender, within 2 minutes.
async fn recall(State(state): State<SidecarState>, caller: User<Dating>, id: Path<i64, Dating>) -> Reply {
    state.services.messages.recall(caller.id(), id.0).await?;
    ok("撤回成功", json!({ "message_id": id.0, "status": "recalled" }))
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn phones_are_masked_as_section_two_shows() {
        assert_eq!(masked("13800138000"), "138****8000");
        assert_eq!(masked("123"), "****");
    }
}
