//! Seed 001 (the simple chat) under `/api/v1`: email accounts, the
//! profile, messages to a person or a group, and groups. Ids are strings;
//! the envelope is `{code, message, data}` with the HTTP status as `code`;
//! errors are `{code, message, error}`.
//!
//! Additions the document has no way to express, documented in its
//! OpenAPI: `member_ids` when creating a group, `POST /group/{id}/members`,
//! and `chat_id` on every message (what the WebSocket's `typing` and
//! `read` name).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use protocol::ErrorCode;
use protocol::dialect::Audience;
use protocol::dialect::simple::{self, WireId};
use protocol::time::to_iso;
use protocol::views::MessageView;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service::{CreateChat, HistoryQuery, ProfileUpdate};
use storage::model::User as StoredUser;

use super::{Body, Failure, Path, Query, Shape, User};
use crate::extract::ClientAddr;
use crate::{ApiFailure, SidecarState, accounts};

/// Seed 001's shape.
#[derive(Debug)]
pub(crate) struct Simple;

impl Shape for Simple {
    fn failure(failure: ApiFailure) -> Response {
        let (status, body) = simple::error_body(failure.code(), &failure.error.error);
        super::failure_response(status, body, failure.retry_after)
    }
}

type Fail = Failure<Simple>;
type Reply = Result<Json<Value>, Fail>;

/// The document's success envelope.
fn ok(data: impl Serialize) -> Reply {
    let data = super::data_value(data)?;
    Ok(Json(json!({ "code": 200, "message": "success", "data": data })))
}

fn id(value: i64) -> String {
    value.to_string()
}

/// The `/api/v1` routes (the WebSocket at `/api/v1/ws` is the gateway's).
pub(crate) fn routes(body_limit: usize) -> axum::Router<SidecarState> {
    axum::Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/register", post(register))
        .route("/api/v1/login", post(login))
        .route("/api/v1/user/profile", get(profile).put(update_profile))
        .route("/api/v1/chat/message", post(send))
        .route("/api/v1/chat/messages", get(messages))
        .route("/api/v1/group", post(create_group))
        .route("/api/v1/group/{id}/members", post(add_members))
        .route("/api/v1/{*rest}", any(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

const OPENAPI: &str = include_str!("../../openapi/api-v1.json");

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found() -> Fail {
    Fail::new(ErrorCode::NotFound, "no such endpoint under /api/v1")
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    phone: Option<String>,
}

/// `POST /api/v1/register`.
async fn register(State(state): State<SidecarState>, body: Body<RegisterBody, Simple>) -> Reply {
    let body = body.0;
    let registration = accounts::Registration {
        phone: body.phone.unwrap_or_default(),
        email: Some(body.email),
        password: body.password,
        username: Some(body.username),
        ..accounts::Registration::default()
    };
    let user = accounts::register(&state, registration).await?;
    ok(json!({
        "user_id": id(user.id),
        "username": user.username,
        "email": user.email,
        "phone": user.phone,
        "created_at": to_iso(user.created_at),
    }))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// `POST /api/v1/login`: the access token as `token`.
async fn login(State(state): State<SidecarState>, addr: ClientAddr, body: Body<LoginBody, Simple>) -> Reply {
    let body = body.0;
    let user = accounts::login_by_email(&state, &addr, &body.email, body.password).await?;
    let tokens = accounts::issue(&state, &user).await?;
    ok(json!({
        "token": tokens.access_token,
        "user": { "user_id": id(user.id), "username": user.username, "email": user.email },
    }))
}

fn profile_of(user: &StoredUser) -> Value {
    json!({
        "user_id": id(user.id),
        "username": user.username.clone().unwrap_or_default(),
        "email": user.email.clone().unwrap_or_default(),
        "phone": user.phone,
        "avatar": user.avatar,
        "created_at": to_iso(user.created_at),
        "updated_at": to_iso(user.updated_at),
    })
}

async fn stored(state: &SidecarState, user: i64) -> Result<StoredUser, Fail> {
    state.store.user(user).await?.ok_or_else(|| Fail::new(ErrorCode::NotFound, "no such user"))
}

/// `GET /api/v1/user/profile`.
async fn profile(State(state): State<SidecarState>, caller: User<Simple>) -> Reply {
    ok(profile_of(&stored(&state, caller.id()).await?))
}

#[derive(Debug, Deserialize)]
struct ProfileBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

/// `PUT /api/v1/user/profile`: the username and avatar; a phone number is
/// not changed by saying so (it would take a code sent to it).
async fn update_profile(
    State(state): State<SidecarState>,
    caller: User<Simple>,
    body: Body<ProfileBody, Simple>,
) -> Reply {
    let body = body.0;
    let current = stored(&state, caller.id()).await?;
    if body.phone.as_ref().is_some_and(|phone| *phone != current.phone) {
        return Err(Fail::new(ErrorCode::BadRequest, "phone is changed by verifying the new number, not here"));
    }
    let change = ProfileUpdate { username: body.username, avatar: body.avatar, ..ProfileUpdate::default() };
    state.services.users.update_me(caller.id(), change).await?;
    let user = stored(&state, caller.id()).await?;
    ok(json!({
        "user_id": id(user.id),
        "username": user.username.unwrap_or_default(),
        "avatar": user.avatar,
        "phone": user.phone,
        "updated_at": to_iso(user.updated_at),
    }))
}

/// Where a message goes: to a person (their private chat) or a group.
#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default)]
    receiver_id: Option<WireId>,
    #[serde(default)]
    group_id: Option<WireId>,
}

impl Target {
    fn one(&self) -> Result<Either, Fail> {
        match (self.receiver_id, self.group_id) {
            (Some(WireId(receiver)), None) => Ok(Either::Person(receiver)),
            (None, Some(WireId(group))) => Ok(Either::Group(group)),
            _ => Err(Fail::new(ErrorCode::BadRequest, "receiver_id or group_id is required (one of them)")),
        }
    }
}

enum Either {
    Person(i64),
    Group(i64),
}

/// Section 3.2's message object, as the WebSocket pushes it too.
fn message(view: &MessageView, audience: Audience) -> Value {
    Value::Object(simple::message(&serde_json::to_value(view).unwrap_or_default(), audience))
}

#[derive(Debug, Deserialize)]
struct SendBody {
    #[serde(rename = "type", default = "text")]
    kind: String,
    content: String,
    #[serde(flatten)]
    target: Target,
}

fn text() -> String {
    "text".into()
}

/// `POST /api/v1/chat/message`: to `receiver_id` (their private chat,
/// found or made) or `group_id`.
async fn send(State(state): State<SidecarState>, caller: User<Simple>, body: Body<SendBody, Simple>) -> Reply {
    let body = body.0;
    if !matches!(body.kind.as_str(), "text" | "image" | "file") {
        return Err(Fail::new(ErrorCode::BadRequest, "type must be text, image or file"));
    }
    let chat_id = match body.target.one()? {
        Either::Group(group) => group,
        Either::Person(receiver) => {
            let new = CreateChat { kind: "private".into(), members: vec![receiver], ..CreateChat::default() };
            state.services.chats.create(caller.id(), new).await?.id
        }
    };
    let mut command = protocol::commands::SendMessage { kind: body.kind, ..Default::default() };
    // An image or file message carries its URL as its content here.
    if command.kind == "text" {
        command.content = body.content;
    } else {
        command.file_url = body.content;
    }
    let sent = state.services.messages.send(caller.id(), chat_id, command).await?;
    ok(message(&sent.view, sent.audience))
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    // Not flattened: a flattened query reads every value as a string.
    #[serde(default)]
    receiver_id: Option<WireId>,
    #[serde(default)]
    group_id: Option<WireId>,
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

fn default_limit() -> u32 {
    20
}

/// `GET /api/v1/chat/messages?receiver_id|group_id&limit&offset`: oldest
/// first, each with who read it; `total` is every message the chat has
/// had (a deleted one keeps its place, shown without content).
async fn messages(
    State(state): State<SidecarState>,
    caller: User<Simple>,
    query: Query<MessagesQuery, Simple>,
) -> Reply {
    let query = query.0;
    let me = caller.id();
    let target = Target { receiver_id: query.receiver_id, group_id: query.group_id };
    let chat_id = match target.one()? {
        Either::Group(group) => group,
        Either::Person(receiver) => match state.store.private_chat_between(me, receiver).await? {
            Some(chat) => chat.id,
            // Nothing said between them yet.
            None => return ok(json!({ "messages": [], "total": 0 })),
        },
    };
    let page_query =
        HistoryQuery { limit: query.limit, offset: query.offset, receipts: true, ..HistoryQuery::default() };
    let page = state.services.messages.history(me, chat_id, page_query).await?;
    let (chat, _) = state.services.chats.membership(chat_id, me).await?;
    let audience = service::audience(&chat, &state.store.members(chat_id).await?);
    let shown: Vec<Value> = page
        .messages
        .iter()
        .zip(&page.receipts)
        .map(|(view, receipts)| {
            let mut shown = message(view, audience);
            let read_by: Vec<Value> = receipts
                .receipts
                .iter()
                .filter(|receipt| receipt.read)
                .map(|receipt| json!({ "user_id": id(receipt.user_id), "read_at": receipt.read_at.map(to_iso) }))
                .collect();
            shown["read_by"] = read_by.into();
            shown
        })
        .collect();
    ok(json!({ "messages": shown, "total": chat.last_seq }))
}

#[derive(Debug, Deserialize)]
struct GroupBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    avatar: String,
    /// An addition: the first members besides the creator.
    #[serde(default)]
    member_ids: Vec<WireId>,
}

/// `POST /api/v1/group`: the caller is its creator (and owner).
async fn create_group(State(state): State<SidecarState>, caller: User<Simple>, body: Body<GroupBody, Simple>) -> Reply {
    let body = body.0;
    if body.name.trim().is_empty() {
        return Err(Fail::new(ErrorCode::BadRequest, "name must not be empty"));
    }
    let new = CreateChat {
        kind: "group".into(),
        name: body.name,
        description: body.description,
        avatar: body.avatar,
        members: body.member_ids.into_iter().map(|WireId(user)| user).collect(),
        ..CreateChat::default()
    };
    let group = state.services.chats.create(caller.id(), new).await?;
    ok(json!({
        "group_id": id(group.id),
        "name": group.name,
        "description": group.description,
        "avatar": group.avatar,
        "creator_id": id(caller.id()),
        "created_at": group.created_at,
    }))
}

#[derive(Debug, Deserialize)]
struct MembersBody {
    user_ids: Vec<WireId>,
}

/// `POST /api/v1/group/{id}/members` (an addition): the group's owner or
/// admins add people.
async fn add_members(
    State(state): State<SidecarState>,
    caller: User<Simple>,
    group: Path<WireId, Simple>,
    body: Body<MembersBody, Simple>,
) -> Reply {
    let ids: Vec<i64> = body.0.user_ids.into_iter().map(|WireId(user)| user).collect();
    let added = state.services.chats.add_members(caller.id(), group.0.0, &ids).await?;
    let added: Vec<String> = added.iter().map(|member| id(member.id)).collect();
    ok(json!({ "group_id": id(group.0.0), "added": added }))
}
