//! Seed 004 (the couple app) under `/api`, beside seed 002 (their paths
//! do not collide): the session (`/api/me`), pairing by invitation code,
//! the notification centre and the pair's sweet-message board. The
//! envelope is `{code, message, data}` (200, or 201 on create); failures
//! carry `data: null`, and validation failures `errors{field: message}`.
//! Ids are strings.
//!
//! Its users sign in with `WeChat` at the app's backend, which creates them
//! (the openid as their external id) and mints their tokens through the
//! server API; those tokens are accepted here like any other. Live events
//! reach its clients on `/ws`. Subscriptions, events (posts), mood tags
//! and analytics are the backend's: they answer 404 saying so.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use protocol::ErrorCode;
use protocol::time::to_iso;
use protocol::views::MessageView;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service::ProfileUpdate;
use storage::model::{Couple, User as StoredUser};

use super::{Body, Failure, Query, Shape, User};
use crate::rate_limit::Class;
use crate::{ApiFailure, SidecarState};

/// Seed 004's shape.
#[derive(Debug)]
pub(crate) struct CoupleApp;

/// The document's code for a canonical one: its table has 400, 401, 403,
/// 404 and 500 (and 429 is kept for rate limits).
fn status_of(code: ErrorCode) -> u16 {
    match code.http_status() {
        409 | 413 => 400,
        503 => 500,
        status => status,
    }
}

impl Shape for CoupleApp {
    fn failure(failure: ApiFailure) -> Response {
        let code = failure.code();
        let detail = failure.error.error;
        let status = status_of(code);
        let mut body = json!({ "code": status, "message": detail, "data": null });
        if code == ErrorCode::BadRequest
            && let Some(field) = super::field_of(&detail)
        {
            body["errors"] = json!({ field: detail });
        }
        super::failure_response(status, body, failure.retry_after)
    }
}

type Fail = Failure<CoupleApp>;
type Reply = Result<Response, Fail>;

fn reply(status: StatusCode, message: &str, data: impl Serialize) -> Reply {
    let data = super::data_value(data)?;
    Ok((status, Json(json!({ "code": status.as_u16(), "message": message, "data": data }))).into_response())
}

fn ok(message: &str, data: impl Serialize) -> Reply {
    reply(StatusCode::OK, message, data)
}

/// The `/api` routes of seed 004.
pub(crate) fn routes(body_limit: usize) -> axum::Router<SidecarState> {
    axum::Router::new()
        .route("/api/me", get(me).put(update_me))
        .route("/api/couples/invitations", post(invite))
        .route("/api/couples/accept-invitation", post(accept))
        .route("/api/couples/unbind", post(unbind))
        .route("/api/notifications", get(notifications))
        .route("/api/sweet-messages", get(board).post(post_board))
        .route("/api/subscriptions", any(not_served))
        .route("/api/subscriptions/{*rest}", any(not_served))
        .route("/api/events", any(not_served))
        .route("/api/events/{*rest}", any(not_served))
        .route("/api/mood-tags", any(not_served))
        .route("/api/analytics/{*rest}", any(not_served))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

async fn not_served() -> Fail {
    Fail::new(ErrorCode::NotFound, "served by the couple app's backend, not by the messaging engine")
}

/// The notification switches a user has until they set them.
fn default_notifications() -> Value {
    json!({ "new_event_push": true, "event_resolved_push": true, "new_message_push": true })
}

/// Stored themes are `auto`, `light`, `dark`; the document says `system` for `auto`.
fn theme_out(theme: &str) -> &str {
    if theme == "auto" { "system" } else { theme }
}

fn preferences_of(user: &StoredUser) -> Map<String, Value> {
    serde_json::from_str(&user.preferences).unwrap_or_default()
}

fn gender(user: &StoredUser) -> Value {
    if user.gender.is_empty() { Value::Null } else { Value::String(user.gender.clone()) }
}

/// `currentUser` as the document shows it.
fn current_user(user: &StoredUser, fields: &Map<String, Value>) -> Value {
    let preferences = preferences_of(user);
    json!({
        "id": user.id.to_string(),
        "openid": user.external_id,
        "nickname": user.nickname,
        "avatar_url": user.avatar,
        "display_gender": gender(user),
        "bio": user.bio,
        "status": if user.is_disabled { "disabled" } else { "active" },
        "is_admin": fields.get("is_admin").and_then(Value::as_bool).unwrap_or(false),
        "preferences": {
            "notifications": preferences.get("notifications").cloned().unwrap_or_else(default_notifications),
            "theme": theme_out(&user.theme),
        },
        "last_login_at": user.last_seen.map(to_iso),
        "created_at": to_iso(user.created_at),
    })
}

fn partner_view(partner: &StoredUser) -> Value {
    json!({
        "id": partner.id.to_string(),
        "nickname": partner.nickname,
        "avatar_url": partner.avatar,
        "display_gender": gender(partner),
        "bio": partner.bio,
    })
}

/// Profile fields the couple backend sets that `coupleInfo` and
/// `access_status` show.
fn field_text(fields: &Map<String, Value>, name: &str) -> Value {
    fields.get(name).filter(|value| value.is_string()).cloned().unwrap_or(Value::Null)
}

async fn stored(state: &SidecarState, user: i64) -> Result<StoredUser, Fail> {
    state.store.user(user).await?.ok_or_else(|| Fail::new(ErrorCode::Unauthorized, "no such user"))
}

/// The `/api/me` answer for `user`: who they are, their partner and the
/// pair, and the access status (`UNBOUND` without a partner; otherwise
/// what the backend set in the `access_status` profile field, `TRIAL` until it does).
async fn session(state: &SidecarState, user_id: i64) -> Result<Value, Fail> {
    let user = stored(state, user_id).await?;
    let fields = state.store.profile_fields(user_id).await?;
    let pair = state.services.pairs.of(user_id).await?;
    let partner = match &pair {
        Some(pair) => state.store.user(pair.partner_id).await?,
        None => None,
    };
    let (access_status, couple_info) = match (&pair, &partner) {
        (Some(pair), Some(_)) => (
            fields.get("access_status").and_then(Value::as_str).unwrap_or("TRIAL").to_owned(),
            couple_info(pair, &fields),
        ),
        _ => ("UNBOUND".to_owned(), Value::Null),
    };
    Ok(json!({
        "access_status": access_status,
        "currentUser": current_user(&user, &fields),
        "partner": partner.as_ref().map_or(Value::Null, partner_view),
        "coupleInfo": couple_info,
    }))
}

fn couple_info(pair: &Couple, fields: &Map<String, Value>) -> Value {
    let since = to_iso(pair.since);
    let anniversary = match field_text(fields, "anniversary_date") {
        Value::Null => Value::String(since.get(..10).unwrap_or_default().to_owned()),
        set => set,
    };
    json!({
        "id": pair.id.to_string(),
        "anniversary_date": anniversary,
        "trial_ends_at": field_text(fields, "trial_ends_at"),
        "subscription_expires_at": field_text(fields, "subscription_expires_at"),
    })
}

/// `GET /api/me`.
async fn me(State(state): State<SidecarState>, caller: User<CoupleApp>) -> Reply {
    ok("Session info retrieved successfully.", session(&state, caller.id()).await?)
}

#[derive(Debug, Deserialize)]
struct PreferencesBody {
    #[serde(default)]
    notifications: Option<Map<String, Value>>,
    #[serde(default)]
    theme: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MeBody {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    bio: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    display_gender: Option<String>,
    #[serde(default)]
    preferences: Option<PreferencesBody>,
}

/// `PUT /api/me`: answers `{currentUser}`.
async fn update_me(State(state): State<SidecarState>, caller: User<CoupleApp>, body: Body<MeBody, CoupleApp>) -> Reply {
    let body = body.0;
    if let Some(gender) = &body.display_gender
        && !matches!(gender.as_str(), "male" | "female" | "other" | "")
    {
        return Err(Fail::new(ErrorCode::BadRequest, "display_gender must be male, female or other"));
    }
    let mut change = ProfileUpdate {
        nickname: body.nickname,
        bio: body.bio,
        avatar: body.avatar_url,
        gender: body.display_gender,
        ..ProfileUpdate::default()
    };
    if let Some(preferences) = body.preferences {
        change.theme = match preferences.theme.as_deref() {
            None => None,
            Some("system") => Some("auto".to_owned()),
            Some(theme @ ("light" | "dark")) => Some(theme.to_owned()),
            Some(_) => return Err(Fail::new(ErrorCode::BadRequest, "preferences.theme must be light, dark or system")),
        };
        if let Some(switches) = preferences.notifications {
            if let Some((name, _)) = switches.iter().find(|(_, value)| !value.is_boolean()) {
                return Err(Fail::new(
                    ErrorCode::BadRequest,
                    format!("preferences.notifications: {name} must be true or false"),
                ));
            }
            let mut stored = preferences_of(&stored(&state, caller.id()).await?);
            let mut merged = match stored.remove("notifications") {
                Some(Value::Object(current)) => current,
                _ => default_notifications().as_object().cloned().unwrap_or_default(),
            };
            merged.extend(switches);
            stored.insert("notifications".into(), Value::Object(merged));
            change.preferences = Some(stored);
        }
    }
    state.services.users.update_me(caller.id(), change).await?;
    let user = stored(&state, caller.id()).await?;
    let fields = state.store.profile_fields(caller.id()).await?;
    ok("User profile updated successfully.", json!({ "currentUser": current_user(&user, &fields) }))
}

/// `POST /api/couples/invitations` (no body): a six-character code, one
/// use, 24 hours.
async fn invite(State(state): State<SidecarState>, caller: User<CoupleApp>) -> Reply {
    state.limits.check(Class::Invite, &format!("user:{}", caller.id()))?;
    let invitation = state.services.pairs.invite(caller.id()).await?;
    ok(
        "Invitation created successfully.",
        json!({ "invite_code": invitation.code, "expires_at": to_iso(invitation.expires_at) }),
    )
}

#[derive(Debug, Deserialize)]
struct AcceptBody {
    invite_code: String,
}

/// `POST /api/couples/accept-invitation`: binds the pair; answers the new `/api/me`.
async fn accept(
    State(state): State<SidecarState>,
    caller: User<CoupleApp>,
    body: Body<AcceptBody, CoupleApp>,
) -> Reply {
    state.services.pairs.accept(caller.id(), &body.0.invite_code).await?;
    ok("Couple bound successfully! Welcome to your trial period.", session(&state, caller.id()).await?)
}

/// `POST /api/couples/unbind`: answers the new `/api/me` (`UNBOUND`).
async fn unbind(State(state): State<SidecarState>, caller: User<CoupleApp>) -> Reply {
    state.services.pairs.unbind(caller.id()).await?;
    ok("Couple unbound successfully.", session(&state, caller.id()).await?)
}

#[derive(Debug, Deserialize)]
struct NotificationsQuery {
    #[serde(default = "default_limit")]
    limit: u32,
    /// A notification id: only older ones.
    #[serde(default)]
    before: Option<i64>,
}

fn default_limit() -> u32 {
    20
}

/// `GET /api/notifications?limit&before`: the notification centre, newest
/// first. Each also carries `title` and `data` as the backend sent them.
async fn notifications(
    State(state): State<SidecarState>,
    caller: User<CoupleApp>,
    query: Query<NotificationsQuery, CoupleApp>,
) -> Reply {
    let query = query.0;
    let page = state.services.notifications.list(caller.id(), query.limit, query.before).await?;
    let notifications: Vec<Value> = page
        .notifications
        .iter()
        .map(|notification| {
            json!({
                "id": notification.id.to_string(),
                "type": notification.kind,
                "title": notification.title,
                "content": notification.content,
                "data": notification.data.as_deref().and_then(|data| serde_json::from_str::<Value>(data).ok()),
                "is_read": notification.is_read,
                "related_resource_type": notification.related_resource_type,
                "related_resource_id": notification.related_resource_id,
                "created_at": to_iso(notification.created_at),
            })
        })
        .collect();
    ok(
        "Notifications retrieved successfully.",
        json!({ "unread_count": page.unread_count, "notifications": notifications }),
    )
}

/// A board post as the document shows it.
fn post_view(post: &MessageView, authors: &HashMap<i64, StoredUser>) -> Value {
    let nickname = post.extra.as_ref().and_then(|extra| extra.get("nickname")).cloned().unwrap_or(Value::Null);
    json!({
        "id": post.id.to_string(),
        "message": post.content,
        "nickname": nickname,
        "is_pinned": post.is_pinned,
        "created_at": post.created_at,
        "author": {
            "id": post.sender_id.to_string(),
            "display_gender": authors.get(&post.sender_id).map_or(Value::Null, gender),
        },
    })
}

async fn authors(state: &SidecarState, posts: &[&MessageView]) -> Result<HashMap<i64, StoredUser>, Fail> {
    let mut ids: Vec<i64> = posts.iter().map(|post| post.sender_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(state.store.users(&ids).await?.into_iter().map(|user| (user.id, user)).collect())
}

/// `GET /api/sweet-messages`: the pair's board, pinned posts first. Only
/// the two partners may read it.
async fn board(State(state): State<SidecarState>, caller: User<CoupleApp>) -> Reply {
    let posts = state.services.pairs.board(caller.id()).await?;
    let authors = authors(&state, &posts.iter().collect::<Vec<_>>()).await?;
    let shown: Vec<Value> = posts.iter().map(|post| post_view(post, &authors)).collect();
    ok("Sweet messages retrieved successfully.", shown)
}

#[derive(Debug, Deserialize)]
struct PostBody {
    message: String,
    #[serde(default)]
    nickname: String,
}

/// `POST /api/sweet-messages`: a post on the pair's board, live to both
/// partners' devices as `message.new` (type `board`). Pinning is the
/// messages' pin (`POST /api/messages/{id}/pin`).
async fn post_board(
    State(state): State<SidecarState>,
    caller: User<CoupleApp>,
    body: Body<PostBody, CoupleApp>,
) -> Reply {
    let body = body.0;
    let sent = state.services.pairs.post(caller.id(), body.message, body.nickname).await?;
    let authors = authors(&state, &[&sent.view]).await?;
    reply(StatusCode::CREATED, "Sweet message posted successfully.", post_view(&sent.view, &authors))
}
