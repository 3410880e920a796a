//! The server API, `/api/server/…`, for app backends only: adapters over
//! `service::Admin`, `service::Notifications` and the token service.
//! Every call carries `Authorization: apikey <key>`, checked by
//! [`authenticate`] in constant time against the configured keys, logged
//! with the key's fingerprint and counted. With no key configured none of
//! these routes exists (404). A user's bearer token is refused here, and
//! an API key is refused everywhere else (the user extractor reads only
//! bearer tokens).

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::views::{ChatView, MessageView, UserPrivate};
use protocol::{ApiResponse, ErrorCode};
use serde::{Deserialize, Serialize};
use service::CreateChat;
use service::admin::{Audience, DevicePresence, UpsertUser, Upserted, UserRef};
use service::notifications::NewNotice;
use sha2::{Digest, Sha256};
use storage::model::UserId;
use subtle::ConstantTimeEq;

use super::{Empty, ok};
use crate::extract::{Body, Path, Query};
use crate::{ApiFailure, SidecarState};

/// The first 8 hex digits of the key's SHA-256: names a key in logs and
/// metrics without revealing it.
pub(crate) fn fingerprint(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..4])
}

/// The API key a request presents, if any.
fn presented(request: &Request) -> Option<&str> {
    let value = request.headers().get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("apikey").then(|| key.trim())
}

/// Whether `key` is one of `keys`: every key is compared (as digests, so
/// lengths never differ) whatever matched before.
fn known(keys: &[String], key: &str) -> bool {
    let digest = Sha256::digest(key.as_bytes());
    keys.iter().fold(false, |found, candidate| found | bool::from(Sha256::digest(candidate.as_bytes()).ct_eq(&digest)))
}

/// Lets through only requests with a configured API key; logs and counts each call.
pub(crate) async fn authenticate(State(state): State<SidecarState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let Some(key) = presented(&request).filter(|key| known(&state.config.server_api_keys, key)) else {
        let why = if presented(&request).is_some() { "unknown API key" } else { "needs Authorization: apikey <key>" };
        tracing::warn!(%method, route, why, "server API call refused");
        metrics::counter!("switchboard_server_api_requests_total", "route" => route, "key" => "none", "status" => "401")
            .increment(1);
        return ApiFailure::new(ErrorCode::Unauthorized, format!("the server API {why}")).into_response();
    };
    let key = fingerprint(key);
    let response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::info!(key, %method, route, status, "server API call");
    metrics::counter!("switchboard_server_api_requests_total", "route" => route, "key" => key, "status" => status.to_string())
        .increment(1);
    response
}

// ---- users and sessions ----

#[derive(Debug, Deserialize)]
pub(crate) struct UserBody {
    phone: Option<String>,
    email: Option<String>,
    username: Option<String>,
    nickname: Option<String>,
    avatar: Option<String>,
    external_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct UserReply {
    user: UserPrivate,
    external_id: Option<String>,
    /// Whether this call made the user.
    created: bool,
}

/// `POST /api/server/users`: creates the user, or updates the one known by
/// its external id (else phone, else email).
pub(crate) async fn upsert_user(
    State(state): State<SidecarState>,
    Body(body): Body<UserBody>,
) -> Result<Json<ApiResponse<UserReply>>, ApiFailure> {
    let upsert = UpsertUser {
        phone: body.phone,
        email: body.email,
        username: body.username,
        nickname: body.nickname,
        avatar: body.avatar,
        external_id: body.external_id,
    };
    let Upserted { user, external_id, created } = state.services.admin.upsert_user(upsert).await?;
    Ok(ok(if created { "用户已创建" } else { "用户已更新" }, UserReply { user, external_id, created }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    user_id: Option<UserId>,
    external_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenReply {
    user_id: UserId,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// `POST /api/server/tokens`: an access and refresh pair for a user the
/// backend signed in itself (`WeChat`, SSO).
pub(crate) async fn mint_tokens(
    State(state): State<SidecarState>,
    Body(body): Body<TokenBody>,
) -> Result<Json<ApiResponse<TokenReply>>, ApiFailure> {
    let user = match (body.user_id, body.external_id) {
        (Some(id), None) => UserRef::Id(id),
        (None, Some(id)) => UserRef::External(id),
        _ => return Err(ApiFailure::bad_request("give exactly one of user_id and external_id")),
    };
    let user = state.services.admin.find(&user).await?;
    if user.is_disabled {
        return Err(ApiFailure::new(ErrorCode::UserDisabled, "this account is disabled"));
    }
    let tokens = state.tokens.issue(user.id).await?;
    tracing::info!(user_id = user.id, "session minted by an app backend");
    Ok(ok(
        "令牌已签发",
        TokenReply {
            user_id: user.id,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
        },
    ))
}

#[derive(Debug, Serialize)]
pub(crate) struct FieldsReply {
    user_id: UserId,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// `PUT /api/server/users/{id}/profile-fields`: merges the body's fields
/// (a null removes one).
pub(crate) async fn profile_fields(
    State(state): State<SidecarState>,
    Path(user_id): Path<UserId>,
    Body(changes): Body<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<ApiResponse<FieldsReply>>, ApiFailure> {
    let fields = state.services.admin.set_profile_fields(user_id, changes).await?;
    Ok(ok("资料字段已更新", FieldsReply { user_id, fields }))
}

/// `POST /api/server/users/{id}/disable`: their sessions close at once.
pub(crate) async fn disable(
    State(state): State<SidecarState>,
    Path(user_id): Path<UserId>,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    Ok(ok("用户已禁用", state.services.admin.set_disabled(user_id, true).await?))
}

/// `POST /api/server/users/{id}/enable`.
pub(crate) async fn enable(
    State(state): State<SidecarState>,
    Path(user_id): Path<UserId>,
) -> Result<Json<ApiResponse<UserPrivate>>, ApiFailure> {
    Ok(ok("用户已启用", state.services.admin.set_disabled(user_id, false).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DisconnectBody {
    user_id: UserId,
    #[serde(default = "default_reason")]
    reason: String,
}

fn default_reason() -> String {
    "disconnected by the server".into()
}

/// `POST /api/server/disconnect`: every session of the user closes with 4001.
pub(crate) async fn disconnect(
    State(state): State<SidecarState>,
    Body(body): Body<DisconnectBody>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.admin.disconnect(body.user_id, &body.reason).await?;
    Ok(ok("会话已断开", Empty {}))
}

// ---- chats, messages, notifications, events ----

#[derive(Debug, Deserialize)]
pub(crate) struct ChatBody {
    #[serde(rename = "type")]
    kind: String,
    /// Private: the two users.
    #[serde(default)]
    user_ids: Vec<UserId>,
    /// Group: its name, owner and other members.
    #[serde(default)]
    name: String,
    owner_id: Option<UserId>,
    #[serde(default)]
    member_ids: Vec<UserId>,
}

/// `POST /api/server/chats`: gets or creates the private chat of two
/// users, or creates a group.
pub(crate) async fn open_chat(
    State(state): State<SidecarState>,
    Body(body): Body<ChatBody>,
) -> Result<Json<ApiResponse<ChatView>>, ApiFailure> {
    let (creator, members) = match (body.kind.as_str(), body.user_ids.as_slice()) {
        ("private", &[a, b]) if a != b => (a, vec![b]),
        ("private", _) => return Err(ApiFailure::bad_request("a private chat takes user_ids of two different users")),
        ("group", _) => {
            let owner = body.owner_id.ok_or_else(|| ApiFailure::bad_request("a group needs an owner_id"))?;
            if body.name.trim().is_empty() {
                return Err(ApiFailure::bad_request("a group needs a name"));
            }
            (owner, body.member_ids)
        }
        _ => return Err(ApiFailure::bad_request("type must be private or group")),
    };
    for &user in std::iter::once(&creator).chain(&members) {
        state.services.admin.find(&UserRef::Id(user)).await?;
    }
    let new = CreateChat {
        kind: body.kind,
        name: body.name,
        members,
        rejoin_everyone: true,
        by_backend: true,
        ..CreateChat::default()
    };
    Ok(ok("会话已就绪", state.services.chats.create(creator, new).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageBody {
    chat_id: i64,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    sender_id: Option<UserId>,
    extra: Option<serde_json::Value>,
}

/// `POST /api/server/messages`: a `system` message (no sender) or a `text`
/// one as a member, sequenced, stored and fanned out like any other.
pub(crate) async fn post_message(
    State(state): State<SidecarState>,
    Body(body): Body<MessageBody>,
) -> Result<Json<ApiResponse<MessageView>>, ApiFailure> {
    let view = state.services.admin.post(body.chat_id, &body.kind, body.content, body.sender_id, body.extra).await?;
    Ok(ok("消息已发送", view))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NotificationBody {
    user_ids: Vec<UserId>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    data: serde_json::Value,
    /// What it is about (seed 004 shows these), if anything.
    #[serde(default)]
    related_resource_type: Option<String>,
    #[serde(default)]
    related_resource_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    user_id: UserId,
    notification_id: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct NotifyReply {
    notifications: Vec<Sent>,
}

/// `POST /api/server/notifications`: one stored per user, pushed live as
/// `notification.new` (seed 000: `match_notification` / `system_notification`).
pub(crate) async fn notify(
    State(state): State<SidecarState>,
    Body(body): Body<NotificationBody>,
) -> Result<Json<ApiResponse<NotifyReply>>, ApiFailure> {
    let notice = NewNotice {
        user_ids: body.user_ids,
        kind: body.kind,
        title: body.title,
        body: body.body,
        data: body.data,
        related_resource_type: body.related_resource_type,
        related_resource_id: body.related_resource_id,
    };
    let sent = state.services.notifications.send(notice).await?;
    let notifications = sent.iter().map(|n| Sent { user_id: n.user_id, notification_id: n.id }).collect();
    Ok(ok("通知已发送", NotifyReply { notifications }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PublishBody {
    user_ids: Option<Vec<UserId>>,
    chat_id: Option<i64>,
    event: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct PublishReply {
    /// How many users it was addressed to.
    recipients: usize,
}

/// `POST /api/server/publish`: a transient `custom` event to live devices.
pub(crate) async fn publish(
    State(state): State<SidecarState>,
    Body(body): Body<PublishBody>,
) -> Result<Json<ApiResponse<PublishReply>>, ApiFailure> {
    let audience = match (body.user_ids, body.chat_id) {
        (Some(users), None) => Audience::Users(users),
        (None, Some(chat)) => Audience::Chat(chat),
        _ => return Err(ApiFailure::bad_request("give exactly one of user_ids and chat_id")),
    };
    let recipients = state.services.admin.publish(audience, &body.event, body.data).await?;
    Ok(ok("事件已发布", PublishReply { recipients }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PresenceQuery {
    /// Comma-separated user ids.
    user_ids: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct PresenceView {
    user_id: UserId,
    online: bool,
    devices: u32,
    last_seen: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PresenceReply {
    users: Vec<PresenceView>,
}

/// `GET /api/server/presence?user_ids=1,2`: unknown ids are left out.
pub(crate) async fn presence(
    State(state): State<SidecarState>,
    Query(query): Query<PresenceQuery>,
) -> Result<Json<ApiResponse<PresenceReply>>, ApiFailure> {
    let ids: Result<Vec<UserId>, _> = query.user_ids.split(',').map(|id| id.trim().parse::<UserId>()).collect();
    let ids = ids.map_err(|_| ApiFailure::bad_request("user_ids must be comma-separated user ids"))?;
    let states = state.services.admin.presence(&ids).await?;
    let users = states
        .into_iter()
        .map(|DevicePresence { user_id, online, devices, last_seen }| PresenceView {
            user_id,
            online,
            devices,
            last_seen: last_seen.map(protocol::time::to_iso),
        })
        .collect();
    Ok(ok("获取在线状态成功", PresenceReply { users }))
}

#[derive(Debug, Serialize)]
pub(crate) struct StatsReply {
    nodes: Vec<router::NodeReport>,
    connections: u64,
    users_online: u64,
    messages_per_second: f64,
}

/// `GET /api/server/stats`: connections and users online per gateway
/// node, and messages per second.
pub(crate) async fn stats(State(state): State<SidecarState>) -> Result<Json<ApiResponse<StatsReply>>, ApiFailure> {
    let nodes = state.services.admin.stats().await?;
    let reply = StatsReply {
        connections: nodes.iter().map(|node| node.connections).sum(),
        // A user on two nodes counts on each.
        users_online: nodes.iter().map(|node| node.users_online).sum(),
        messages_per_second: nodes.iter().map(|node| node.messages_per_second).sum(),
        nodes,
    };
    Ok(ok("获取统计成功", reply))
}

/// The routes, under their full paths.
pub(crate) fn routes() -> axum::Router<SidecarState> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/api/server/users", post(upsert_user))
        .route("/api/server/tokens", post(mint_tokens))
        .route("/api/server/users/{id}/profile-fields", put(profile_fields))
        .route("/api/server/users/{id}/disable", post(disable))
        .route("/api/server/users/{id}/enable", post(enable))
        .route("/api/server/disconnect", post(disconnect))
        .route("/api/server/chats", post(open_chat))
        .route("/api/server/messages", post(post_message))
        .route("/api/server/notifications", post(notify))
        .route("/api/server/publish", post(publish))
        .route("/api/server/presence", get(presence))
        .route("/api/server/stats", get(stats))
}
