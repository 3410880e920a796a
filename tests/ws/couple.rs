//! A seed 004 (couple app) client, written from its document: `/api/me`,
//! pairing by invitation code, the notification centre and the
//! sweet-message board, in its envelope (`{code, message, data}`, string
//! ids, `data: null` on failure). The test plays the couple app's backend
//! too: it creates the `WeChat` users and mints their tokens through the
//! server API. Live events arrive on `/ws`, which the couple app shares
//! with seed 002.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{self, Client, Server, User};

pub(crate) const KEY: &str = "couple-backend-key-0123";

async fn start() -> Server {
    harness::start_with_flags(&["--server-api-key", KEY], |_| {}).await
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

pub(crate) async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = server.http.request(method, format!("{}/api{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    Answer { status, body: response.json().await.unwrap_or(Value::Null) }
}

fn assert_ok(answer: &Answer, code: u16) -> &Value {
    assert_eq!((answer.status, answer.body["code"].as_u64()), (code, Some(u64::from(code))), "{}", answer.body);
    &answer.body["data"]
}

/// A failure: the document's `code`, and `data: null`.
fn assert_failed(answer: &Answer, code: u16) {
    assert_eq!((answer.status, answer.body["code"].as_u64()), (code, Some(u64::from(code))), "{}", answer.body);
    assert!(answer.body["data"].is_null() && answer.body["message"].is_string(), "{}", answer.body);
}

/// What the couple backend does at a `WeChat` login: the user by openid,
/// and a session minted for them.
pub(crate) async fn wechat_user(server: &Server, openid: &str, nickname: &str) -> User {
    let backend = |path: &str, body: Value| {
        server
            .http
            .post(format!("{}/api/server{path}", server.base))
            .header("authorization", format!("apikey {KEY}"))
            .json(&body)
            .send()
    };
    let made: Value =
        backend("/users", json!({"external_id": openid, "nickname": nickname})).await.unwrap().json().await.unwrap();
    let minted: Value = backend("/tokens", json!({"external_id": openid})).await.unwrap().json().await.unwrap();
    User {
        id: made["data"]["user"]["id"].as_i64().unwrap_or_else(|| panic!("{made}")),
        token: minted["data"]["access_token"].as_str().unwrap_or_else(|| panic!("{minted}")).into(),
    }
}

/// The backend setting a user's profile fields.
async fn set_fields(server: &Server, user: &User, fields: Value) {
    let response = server
        .http
        .put(format!("{}/api/server/users/{}/profile-fields", server.base, user.id))
        .header("authorization", format!("apikey {KEY}"))
        .json(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// An invitation by `inviter`, accepted by `invitee`.
pub(crate) async fn bind(server: &Server, inviter: &User, partner: &User) -> Value {
    let invitation = call(server, Method::POST, "/couples/invitations", Some(&inviter.token), None).await;
    let code = assert_ok(&invitation, 200)["invite_code"].clone();
    let accepted = call(
        server,
        Method::POST,
        "/couples/accept-invitation",
        Some(&partner.token),
        Some(json!({"invite_code": code})),
    )
    .await;
    assert_ok(&accepted, 200).clone()
}

/// The `message.new` of a board post with `text`, skipping other events.
pub(crate) async fn expect_post(client: &mut Client, text: &str) -> Value {
    loop {
        let event = client.expect("message.new").await;
        if event.data["content"] == text {
            assert_eq!(event.data["type"], "board", "{:?}", event.data);
            assert!(event.data["extra"]["nickname"].is_string(), "{:?}", event.data);
            return event.data.clone();
        }
    }
}

/// Step 4 of the couple flow: each partner posts, the other sees it live,
/// and a pinned post comes first; answers the pair's chat.
async fn board_posts_and_pins(
    server: &Server,
    (ann, ann_live): (&User, &mut Client),
    (ben, ben_live): (&User, &mut Client),
) -> i64 {
    let posted = call(
        server,
        Method::POST,
        "/sweet-messages",
        Some(&ann.token),
        Some(json!({"message": "永远爱你", "nickname": "小宝贝"})),
    )
    .await;
    let first = assert_ok(&posted, 201).clone();
    assert_eq!(
        (&first["message"], &first["nickname"], &first["is_pinned"]),
        (&json!("永远爱你"), &json!("小宝贝"), &json!(false))
    );
    assert_eq!(first["author"]["id"], ann.id.to_string());
    let seen = expect_post(ben_live, "永远爱你").await;
    let chat_id = seen["chat_id"].as_i64().unwrap();
    let reply = call(
        server,
        Method::POST,
        "/sweet-messages",
        Some(&ben.token),
        Some(json!({"message": "也爱你", "nickname": "骑士"})),
    )
    .await;
    let second = assert_ok(&reply, 201).clone();
    expect_post(ann_live, "也爱你").await;
    let pin = server
        .api(Method::POST, &format!("/api/messages/{}/pin", first["id"].as_str().unwrap()), &ben.token, Value::Null)
        .await;
    assert_eq!(pin["code"], 200, "{pin}");
    let board = call(server, Method::GET, "/sweet-messages", Some(&ben.token), None).await;
    let posts = assert_ok(&board, 200).as_array().unwrap().clone();
    assert_eq!(
        posts.iter().map(|post| post["id"].clone()).collect::<Vec<_>>(),
        [first["id"].clone(), second["id"].clone()]
    );
    assert_eq!(posts[0]["is_pinned"], true, "pinned first");
    let unpin = server
        .api(Method::DELETE, &format!("/api/messages/{}/pin", first["id"].as_str().unwrap()), &ann.token, Value::Null)
        .await;
    assert_eq!(unpin["code"], 200, "{unpin}");

    chat_id
}

#[tokio::test]
async fn a_couple_binds_posts_and_pins_on_its_board_live_and_unbinding_keeps_history_and_refuses_posts() {
    let server = start().await;
    // 1. The couple backend makes two WeChat users and mints their sessions.
    let ann = wechat_user(&server, "openid-ann", "安安").await;
    let ben = wechat_user(&server, "openid-ben", "贝贝").await;
    let alone = call(&server, Method::GET, "/me", Some(&ann.token), None).await;
    let me = assert_ok(&alone, 200);
    assert_eq!(me["access_status"], "UNBOUND");
    assert_eq!(
        (me["currentUser"]["id"].as_str(), me["currentUser"]["openid"].as_str()),
        (Some(ann.id.to_string().as_str()), Some("openid-ann"))
    );
    assert_eq!(me["currentUser"]["preferences"]["notifications"]["new_message_push"], true);
    assert!(me["partner"].is_null() && me["coupleInfo"].is_null());
    let mut ann_live = server.connect(&ann).await;
    let mut ben_live = server.connect(&ben).await;

    // 2. Ann invites, Ben accepts.
    let invitation = call(&server, Method::POST, "/couples/invitations", Some(&ann.token), None).await;
    let data = assert_ok(&invitation, 200);
    let code = data["invite_code"].as_str().unwrap().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{code}");
    assert!(data["expires_at"].as_str().is_some_and(|at| at.ends_with('Z')));
    let accepted =
        call(&server, Method::POST, "/couples/accept-invitation", Some(&ben.token), Some(json!({"invite_code": code})))
            .await;
    let bound = assert_ok(&accepted, 200);
    assert_eq!(bound["access_status"], "TRIAL", "{bound}");
    assert_eq!(bound["partner"]["id"], ann.id.to_string());
    assert_eq!(bound["partner"]["nickname"], "安安");
    let couple_id = bound["coupleInfo"]["id"].as_str().unwrap().to_owned();
    assert!(bound["coupleInfo"]["anniversary_date"].as_str().is_some_and(|date| date.len() == 10));

    // 3. Ann hears of it live, and finds it in her notification centre.
    let pushed = ann_live.expect("notification.new").await;
    assert_eq!(pushed.data["type"], "couple_bound", "{:?}", pushed.data);
    let centre = call(&server, Method::GET, "/notifications", Some(&ann.token), None).await;
    let list = assert_ok(&centre, 200);
    assert_eq!(list["unread_count"], 1);
    let notice = &list["notifications"][0];
    assert_eq!((&notice["type"], &notice["is_read"]), (&json!("couple_bound"), &json!(false)), "{notice}");
    assert_eq!(
        (&notice["related_resource_type"], &notice["related_resource_id"]),
        (&json!("couple"), &json!(couple_id))
    );
    assert!(notice["id"].is_string() && notice["content"].is_string() && notice["created_at"].is_string());
    let mine = call(&server, Method::GET, "/me", Some(&ann.token), None).await;
    assert_eq!(assert_ok(&mine, 200)["partner"]["id"], ben.id.to_string());
    assert_eq!(mine.body["data"]["coupleInfo"]["id"], couple_id.as_str());
    // The backend's word on access, once it has one.
    set_fields(&server, &ann, json!({"access_status": "ACTIVE", "subscription_expires_at": "2027-09-08T12:00:00Z"}))
        .await;
    let paid = call(&server, Method::GET, "/me", Some(&ann.token), None).await;
    assert_eq!(paid.body["data"]["access_status"], "ACTIVE");
    assert_eq!(paid.body["data"]["coupleInfo"]["subscription_expires_at"], "2027-09-08T12:00:00Z");

    // 4. Both post to the board and see each other's posts live; pinning sorts it.
    let chat_id = board_posts_and_pins(&server, (&ann, &mut ann_live), (&ben, &mut ben_live)).await;

    // 5. Unbinding: UNBOUND, the partner is told, history stays, new posts are refused.
    let unbound = call(&server, Method::POST, "/couples/unbind", Some(&ann.token), None).await;
    let me = assert_ok(&unbound, 200);
    assert_eq!(me["access_status"], "UNBOUND");
    assert!(me["partner"].is_null() && me["coupleInfo"].is_null());
    let told = ben_live.expect("notification.new").await;
    assert_eq!(told.data["type"], "couple_unbound");
    let refused =
        call(&server, Method::POST, "/sweet-messages", Some(&ben.token), Some(json!({"message": "还在吗"}))).await;
    assert_failed(&refused, 403);
    let id = ben_live.send("message.send", json!({"chat_id": chat_id, "content": "hello?", "type": "text"})).await;
    let answer = ben_live.reply(&id).await;
    assert_eq!(answer.data["code"], 403, "the pair's chat takes no new messages: {:?}", answer.data);
    let history =
        server.api(Method::GET, &format!("/api/chats/{chat_id}/messages?type=board"), &ben.token, Value::Null).await;
    let kept: Vec<&str> =
        history["data"]["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(kept, ["永远爱你", "也爱你"], "{history}");
    // Binding again opens their chat again.
    bind(&server, &ben, &ann).await;
    let again =
        call(&server, Method::POST, "/sweet-messages", Some(&ann.token), Some(json!({"message": "回来了"}))).await;
    assert_ok(&again, 201);
    ann_live.quiet("error", Duration::from_millis(50)).await;
}

#[tokio::test]
async fn me_keeps_its_preferences_and_theme() {
    let server = start().await;
    let ann = wechat_user(&server, "openid-ann", "安安").await;
    let change = json!({
        "nickname": "改个新昵称",
        "bio": "新的开始",
        "display_gender": "female",
        "preferences": {"notifications": {"new_message_push": false}, "theme": "dark"},
    });
    let updated = call(&server, Method::PUT, "/me", Some(&ann.token), Some(change)).await;
    let user = &assert_ok(&updated, 200)["currentUser"];
    assert_eq!(
        (&user["nickname"], &user["bio"], &user["display_gender"]),
        (&json!("改个新昵称"), &json!("新的开始"), &json!("female"))
    );
    assert_eq!(user["preferences"]["theme"], "dark");
    let switches = &user["preferences"]["notifications"];
    assert_eq!(
        (&switches["new_message_push"], &switches["new_event_push"]),
        (&json!(false), &json!(true)),
        "merged: {switches}"
    );
    let system = json!({"preferences": {"theme": "system"}});
    let updated = call(&server, Method::PUT, "/me", Some(&ann.token), Some(system)).await;
    assert_eq!(updated.body["data"]["currentUser"]["preferences"]["theme"], "system");
    assert_eq!(updated.body["data"]["currentUser"]["preferences"]["notifications"]["new_message_push"], false, "kept");
}

#[tokio::test]
async fn every_couple_endpoint_refuses_bad_input_with_the_documents_codes() {
    let server = start().await;
    let ann = wechat_user(&server, "openid-ann", "安安").await;
    let ben = wechat_user(&server, "openid-ben", "贝贝").await;
    let cy = wechat_user(&server, "openid-cy", "茜茜").await;
    let token = |user: &User| Some(user.token.clone());

    assert_failed(&call(&server, Method::GET, "/me", None, None).await, 401);
    assert_failed(&call(&server, Method::GET, "/me", Some("forged"), None).await, 401);
    let bad_gender =
        call(&server, Method::PUT, "/me", token(&ann).as_deref(), Some(json!({"display_gender": "robot"}))).await;
    assert_failed(&bad_gender, 400);
    assert!(bad_gender.body["errors"]["display_gender"].is_string(), "{}", bad_gender.body);
    let bad_theme = json!({"preferences": {"theme": "neon"}});
    let refused = call(&server, Method::PUT, "/me", token(&ann).as_deref(), Some(bad_theme)).await;
    assert_failed(&refused, 400);
    assert!(refused.body["errors"]["preferences.theme"].is_string(), "{}", refused.body);
    let bad_switch = json!({"preferences": {"notifications": {"new_message_push": "yes"}}});
    assert_failed(&call(&server, Method::PUT, "/me", token(&ann).as_deref(), Some(bad_switch)).await, 400);

    // Accepting: a malformed code, an unknown one, one's own, a used one.
    let accept = |user: &User, code: Value| {
        let server = &server;
        let token = user.token.clone();
        async move {
            call(server, Method::POST, "/couples/accept-invitation", Some(&token), Some(json!({"invite_code": code})))
                .await
        }
    };
    let malformed = accept(&ben, json!("xx")).await;
    assert_failed(&malformed, 400);
    assert!(malformed.body["errors"]["invite_code"].is_string(), "{}", malformed.body);
    assert_failed(&accept(&ben, json!(7)).await, 400);
    assert_failed(&accept(&ben, json!("ZZZZZZ")).await, 404);
    let own = call(&server, Method::POST, "/couples/invitations", token(&ann).as_deref(), None).await;
    let own_code = assert_ok(&own, 200)["invite_code"].clone();
    assert_failed(&accept(&ann, own_code.clone()).await, 400);
    assert_ok(&accept(&ben, own_code.clone()).await, 200);
    assert_failed(&accept(&cy, own_code).await, 400);
    // Either person already bound.
    let cy_code = call(&server, Method::POST, "/couples/invitations", token(&cy).as_deref(), None).await;
    let cy_code = assert_ok(&cy_code, 200)["invite_code"].clone();
    assert_failed(&accept(&ann, cy_code).await, 400);
    assert_failed(&call(&server, Method::POST, "/couples/invitations", token(&ann).as_deref(), None).await, 400);
    // At most five live codes.
    for _ in 0..4 {
        assert_ok(&call(&server, Method::POST, "/couples/invitations", token(&cy).as_deref(), None).await, 200);
    }
    let sixth = call(&server, Method::POST, "/couples/invitations", token(&cy).as_deref(), None).await;
    assert_failed(&sixth, 400);
    // Unbinding with no partner; the board of no pair.
    assert_failed(&call(&server, Method::POST, "/couples/unbind", token(&cy).as_deref(), None).await, 400);
    assert_failed(&call(&server, Method::GET, "/sweet-messages", token(&cy).as_deref(), None).await, 403);
    let empty =
        call(&server, Method::POST, "/sweet-messages", token(&ann).as_deref(), Some(json!({"message": "  "}))).await;
    assert_failed(&empty, 400);
    assert!(empty.body["errors"]["message"].is_string(), "{}", empty.body);
    let missing =
        call(&server, Method::POST, "/sweet-messages", token(&ann).as_deref(), Some(json!({"nickname": "x"}))).await;
    assert_failed(&missing, 400);
    assert_failed(&call(&server, Method::GET, "/notifications?limit=0", token(&ann).as_deref(), None).await, 400);
    assert_failed(&call(&server, Method::GET, "/notifications?before=x", token(&ann).as_deref(), None).await, 400);
    // What is the couple backend's says so.
    for path in [
        "/events?status=unresolved",
        "/events/evt-1",
        "/subscriptions/plans",
        "/mood-tags",
        "/analytics/mood?period=weekly",
    ] {
        let answer = call(&server, Method::GET, path, token(&ann).as_deref(), None).await;
        assert_failed(&answer, 404);
        assert!(answer.body["message"].as_str().unwrap().contains("backend"), "{path}");
    }
}
