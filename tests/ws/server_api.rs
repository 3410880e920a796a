//! The server API (`/api/server/…`) for app backends, the notification
//! centre and reactions, over real sockets against the real server: the
//! test plays the app backend with its API key, and real clients of seed
//! 002 and seed 000 receive what it does.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::dating::Socket as DatingSocket;
use crate::harness::{self, Client, NextClose, Server, User};

const KEY: &str = "backend-key-0123456789";

async fn start() -> Server {
    harness::start_with_flags(&["--server-api-key", KEY, "--server-api-key", "second-key"], |_| {}).await
}

/// A server API call with `authorization`; answers the status and body.
async fn call_as(server: &Server, authorization: &str, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let mut request =
        server.http.request(method, format!("{}{path}", server.base)).header("authorization", authorization);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A server API call with the backend's key.
async fn call(server: &Server, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    call_as(server, &format!("apikey {KEY}"), method, path, body).await
}

/// A user made by the backend, with a session it minted.
async fn backend_user(server: &Server, openid: &str, nickname: &str) -> User {
    let (status, made) =
        call(server, Method::POST, "/api/server/users", json!({"external_id": openid, "nickname": nickname})).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["data"]["created"], true, "{made}");
    let (status, minted) = call(server, Method::POST, "/api/server/tokens", json!({"external_id": openid})).await;
    assert_eq!(status, 200, "{minted}");
    assert!(minted["data"]["refresh_token"].is_string());
    User {
        id: made["data"]["user"]["id"].as_i64().unwrap(),
        token: minted["data"]["access_token"].as_str().unwrap().into(),
    }
}

#[tokio::test]
async fn only_a_configured_key_opens_the_server_api_and_it_opens_nothing_else() {
    let server = start().await;
    let user = server.register("13800000001", "alice").await;
    let path = "/api/server/users";
    let body = json!({"external_id": "o-1"});
    let (status, refused) = call_as(&server, "", Method::POST, path, body.clone()).await;
    assert_eq!(status, 401, "no key: {refused}");
    assert_eq!(refused["code"], 401);
    assert!(refused["error"].as_str().unwrap().contains("apikey"), "says what it needs: {refused}");
    let (status, _) = call_as(&server, "apikey not-the-key", Method::POST, path, body.clone()).await;
    assert_eq!(status, 401, "a wrong key");
    let (status, _) = call_as(&server, &format!("Bearer {}", user.token), Method::POST, path, body.clone()).await;
    assert_eq!(status, 401, "a user's token is never accepted here");
    let (status, _) = call_as(&server, "apikey second-key", Method::GET, "/api/server/stats", Value::Null).await;
    assert_eq!(status, 200, "every configured key works");
    // The key opens nothing of a user's.
    let (status, _) = call_as(&server, &format!("apikey {KEY}"), Method::GET, "/api/users/me", Value::Null).await;
    assert_eq!(status, 401, "an API key is not a user's token");
    // Without a key configured, the server API does not exist.
    let bare = harness::start().await;
    let (status, missing) =
        call_as(&bare, &format!("apikey {KEY}"), Method::GET, "/api/server/stats", Value::Null).await;
    assert_eq!(status, 404, "{missing}");
    // Calls are counted by key fingerprint.
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_server_api_requests_total"), "counted in /metrics");
    assert!(!metrics.contains(KEY), "the key itself never shows");
}

#[tokio::test]
async fn users_are_created_updated_and_found_by_their_external_id() {
    let server = start().await;
    let ann = backend_user(&server, "wx-ann", "Ann").await;
    // The minted session is a real one.
    let me = server.api(Method::GET, "/api/users/me", &ann.token, Value::Null).await;
    assert_eq!(me["data"]["nickname"], "Ann", "{me}");
    // The same openid again updates.
    let (status, again) =
        call(&server, Method::POST, "/api/server/users", json!({"external_id": "wx-ann", "nickname": "Annie"})).await;
    assert_eq!(status, 200);
    assert_eq!((again["data"]["created"].clone(), again["data"]["user"]["id"].as_i64()), (json!(false), Some(ann.id)));
    assert_eq!(again["data"]["user"]["nickname"], "Annie");
    // A phone account gains an external id; another user's phone is a conflict.
    let bob = server.register("13800000002", "bob").await;
    let (status, linked) =
        call(&server, Method::POST, "/api/server/users", json!({"phone": "13800000002", "external_id": "wx-bob"}))
            .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        (linked["data"]["user"]["id"].as_i64(), linked["data"]["external_id"].as_str()),
        (Some(bob.id), Some("wx-bob"))
    );
    let (status, clash) =
        call(&server, Method::POST, "/api/server/users", json!({"external_id": "wx-ann", "phone": "13800000002"}))
            .await;
    assert_eq!(status, 409, "{clash}");
    // Bad input, each in the envelope.
    for bad in [
        json!({}),
        json!({"phone": "12"}),
        json!({"external_id": ""}),
        json!({"email": "not-an-email"}),
        json!({"external_id": "x", "nickname": "n".repeat(65)}),
    ] {
        let (status, refused) = call(&server, Method::POST, "/api/server/users", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {refused}");
        assert_eq!(refused["code"], 400);
    }
    let (status, _) = call(&server, Method::POST, "/api/server/users", json!("not an object")).await;
    assert_eq!(status, 400);
    // Tokens: exactly one of the two ids, for a known user.
    for bad in [json!({}), json!({"user_id": ann.id, "external_id": "wx-ann"})] {
        let (status, _) = call(&server, Method::POST, "/api/server/tokens", bad).await;
        assert_eq!(status, 400);
    }
    let (status, unknown) =
        call(&server, Method::POST, "/api/server/tokens", json!({"external_id": "wx-nobody"})).await;
    assert_eq!((status, unknown["code"].clone()), (StatusCode::NOT_FOUND, json!(10001)), "{unknown}");
    // Profile fields merge; a null removes one.
    let fields = format!("/api/server/users/{}/profile-fields", ann.id);
    let (status, set) = call(&server, Method::PUT, &fields, json!({"vip_level": 2, "balance": "9.90"})).await;
    assert_eq!(status, 200, "{set}");
    let (_, merged) = call(&server, Method::PUT, &fields, json!({"balance": null, "level": 3})).await;
    assert_eq!(merged["data"]["fields"], json!({"vip_level": 2, "level": 3}));
    let (status, _) = call(&server, Method::PUT, &fields, json!([1, 2])).await;
    assert_eq!(status, 400, "fields are an object");
    let (status, _) = call(&server, Method::PUT, "/api/server/users/999999/profile-fields", json!({"a": 1})).await;
    assert_eq!(status, 404);
    // Seed 000 shows the two fields its user object names once the backend set them.
    let dater = crate::dating::register(&server, "13800000009").await;
    let login = json!({"phone": "13800000009", "password": "Abc123!@#"});
    let before = crate::dating::call(&server, Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert!(before.body["data"]["user"].get("vip_level").is_none(), "absent until set: {}", before.body);
    let dater_fields = format!("/api/server/users/{}/profile-fields", dater.id);
    call(&server, Method::PUT, &dater_fields, json!({"vip_level": 2, "profile_completion_rate": 85, "other": 1})).await;
    let after = crate::dating::call(&server, Method::POST, "/auth/login", None, Some(login)).await;
    let shown = &after.body["data"]["user"];
    assert_eq!(
        (shown["vip_level"].as_i64(), shown["profile_completion_rate"].as_i64()),
        (Some(2), Some(85)),
        "{shown}"
    );
    assert!(shown.get("other").is_none(), "only the fields the document names");
}

#[tokio::test]
async fn a_match_reaches_a_seed_000_client_and_a_messenger_client() {
    let server = start().await;
    // 1. The dating backend makes both users and their sessions.
    let ann = backend_user(&server, "wx-ann", "Ann").await;
    let ben = backend_user(&server, "wx-ben", "Ben").await;
    let mut ann_dating = DatingSocket::connect(&server.base, &ann.token).await;
    ann_dating.expect("auth_success").await;
    let mut ben_app = server.connect(&ben).await;
    // 2. It opens their chat, and posts a system message there.
    let (status, chat) =
        call(&server, Method::POST, "/api/server/chats", json!({"type": "private", "user_ids": [ann.id, ben.id]}))
            .await;
    assert_eq!(status, 200, "{chat}");
    let chat_id = chat["data"]["id"].as_i64().unwrap();
    let (_, again) =
        call(&server, Method::POST, "/api/server/chats", json!({"type": "private", "user_ids": [ben.id, ann.id]}))
            .await;
    assert_eq!(again["data"]["id"].as_i64(), Some(chat_id), "the same pair has one chat");
    let notice = json!({"chat_id": chat_id, "type": "system", "content": "You matched!", "extra": {"score": 97}});
    let (status, posted) = call(&server, Method::POST, "/api/server/messages", notice).await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!((posted["data"]["type"].as_str(), posted["data"]["sender_id"].as_i64()), (Some("system"), Some(0)));
    let message = ben_app.expect("message.new").await;
    assert_eq!(
        (message.data["content"].as_str(), message.data["type"].as_str()),
        (Some("You matched!"), Some("system"))
    );
    assert_eq!(message.data["extra"]["score"], 97);
    let pushed = ann_dating.expect("new_message").await;
    assert_eq!(pushed["data"]["content"], "You matched!", "{pushed}");
    // 3. And sends the match notification.
    let matched = json!({"user_ids": [ann.id, ben.id], "type": "match", "title": "New match", "body": "Say hi", "data": {"match_id": 7}});
    let (status, sent) = call(&server, Method::POST, "/api/server/notifications", matched).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["data"]["notifications"].as_array().unwrap().len(), 2);
    // 4. Seed 000 gets match_notification, seed 002 notification.new.
    let dating = ann_dating.expect("match_notification").await;
    assert_eq!(
        (dating["data"]["title"].as_str(), dating["data"]["data"]["match_id"].as_i64()),
        (Some("New match"), Some(7))
    );
    let canonical = ben_app.expect("notification.new").await;
    assert_eq!((canonical.data["type"].as_str(), canonical.data["body"].as_str()), (Some("match"), Some("Say hi")));
    // A text message as a member goes through every rule of a send.
    let (status, text) = call(
        &server,
        Method::POST,
        "/api/server/messages",
        json!({"chat_id": chat_id, "type": "text", "content": "hi from Ann", "sender_id": ann.id}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ben_app.expect("message.new").await.data["sender_id"].as_i64(), Some(ann.id));
    // Bad input.
    let refused = [
        ("/api/server/chats", json!({"type": "private", "user_ids": [ann.id]}), 400),
        ("/api/server/chats", json!({"type": "private", "user_ids": [ann.id, 999_999]}), 404),
        ("/api/server/chats", json!({"type": "channel", "user_ids": [ann.id, ben.id]}), 400),
        (
            "/api/server/messages",
            json!({"chat_id": chat_id, "type": "system", "content": "x", "sender_id": ann.id}),
            400,
        ),
        ("/api/server/messages", json!({"chat_id": chat_id, "type": "text", "content": "no sender"}), 400),
        ("/api/server/messages", json!({"chat_id": 999_999, "type": "system", "content": "x"}), 404),
        ("/api/server/messages", json!({"chat_id": chat_id, "type": "image", "content": "x"}), 400),
        ("/api/server/notifications", json!({"user_ids": [], "type": "match", "title": "t"}), 400),
        ("/api/server/notifications", json!({"user_ids": [999_999], "type": "match", "title": "t"}), 404),
        ("/api/server/notifications", json!({"user_ids": [ann.id], "type": "match", "title": "t", "data": [1]}), 400),
        ("/api/server/notifications", json!({"user_ids": [ann.id], "type": "", "title": "t"}), 400),
    ];
    for (path, body, expected) in refused {
        let (status, answer) = call(&server, Method::POST, path, body.clone()).await;
        assert_eq!(status.as_u16(), expected, "{path} {body} -> {answer}");
        assert!(answer["code"].is_i64() && answer["message"].is_string(), "the envelope: {answer}");
    }
}

#[tokio::test]
async fn notifications_are_listed_read_in_sync_and_deleted_by_their_owner_only() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let mut phone = server.connect(&bob).await;
    let mut laptop = server.connect(&bob).await;
    for n in 0..3 {
        let body = json!({"user_ids": [bob.id], "type": "system", "title": format!("notice {n}"), "body": "b"});
        assert_eq!(call(&server, Method::POST, "/api/server/notifications", body).await.0, 200);
    }
    let pushed = laptop.expect("notification.new").await;
    assert_eq!(pushed.data["title"], "notice 0");
    let list = server.api(Method::GET, "/api/notifications?limit=2", &bob.token, Value::Null).await;
    assert_eq!(list["data"]["unread_count"], 3, "{list}");
    let page = list["data"]["notifications"].as_array().unwrap();
    assert_eq!(page.iter().map(|n| n["title"].as_str().unwrap()).collect::<Vec<_>>(), ["notice 2", "notice 1"]);
    assert_eq!(page[0]["is_read"], false);
    // The list is seed 004's (the one seed that has it): ids are strings.
    let id_of = |notification: &Value| notification["id"].as_str().unwrap().parse::<i64>().unwrap();
    let oldest_shown = id_of(&page[1]);
    let older =
        server.api(Method::GET, &format!("/api/notifications?before={oldest_shown}"), &bob.token, Value::Null).await;
    assert_eq!(older["data"]["notifications"][0]["title"], "notice 0");
    let newest = id_of(&page[0]);
    // Someone else's notification is not there for them.
    let theirs =
        server.api(Method::POST, &format!("/api/notifications/{newest}/read"), &alice.token, Value::Null).await;
    assert_eq!(theirs["code"], 404, "{theirs}");
    let theirs = server.api(Method::DELETE, &format!("/api/notifications/{newest}"), &alice.token, Value::Null).await;
    assert_eq!(theirs["code"], 404);
    assert_eq!(
        server.api(Method::GET, "/api/notifications", &alice.token, Value::Null).await["data"]["unread_count"],
        0
    );
    // Reading on one device tells the others.
    let read = server.api(Method::POST, &format!("/api/notifications/{newest}/read"), &bob.token, Value::Null).await;
    assert_eq!(read["data"]["unread_count"], 2, "{read}");
    let synced = phone.expect("notification.read").await;
    assert_eq!(
        (synced.data["notification_id"].as_i64(), synced.data["unread_count"].as_u64()),
        (Some(newest), Some(2))
    );
    laptop.expect("notification.read").await;
    let all = server.api(Method::POST, "/api/notifications/read-all", &bob.token, Value::Null).await;
    assert_eq!(all["data"]["unread_count"], 0);
    let synced = phone.expect("notification.read").await;
    assert!(synced.data["notification_id"].is_null());
    let deleted = server.api(Method::DELETE, &format!("/api/notifications/{newest}"), &bob.token, Value::Null).await;
    assert_eq!(deleted["code"], 200, "{deleted}");
    let left = server.api(Method::GET, "/api/notifications", &bob.token, Value::Null).await;
    assert_eq!(left["data"]["notifications"].as_array().unwrap().len(), 2);
    // Bad input.
    for path in ["/api/notifications?limit=0", "/api/notifications?limit=101", "/api/notifications?before=x"] {
        assert_eq!(server.api(Method::GET, path, &bob.token, Value::Null).await["code"], 400, "{path}");
    }
    assert_eq!(server.api(Method::POST, "/api/notifications/abc/read", &bob.token, Value::Null).await["code"], 400);
    assert_eq!(server.api(Method::GET, "/api/notifications", "forged", Value::Null).await["code"], 401);
    assert_eq!(server.api(Method::POST, "/api/notifications/1/read", "forged", Value::Null).await["code"], 10008);
}

/// Sends a text message as `client`; answers its id.
async fn send(client: &mut Client, chat: i64, text: &str) -> i64 {
    let id = client.send("message.send", json!({"chat_id": chat, "content": text, "type": "text"})).await;
    client.reply(&id).await.data["message"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn members_react_over_rest_and_websocket_within_the_limits() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let carol = server.register("13800000003", "carol").await;
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    let message = send(&mut alice_ws, chat, "react to me").await;
    // A WebSocket reaction: its reply to the sender, the event to the others.
    let id = bob_ws.send("reaction.add", json!({"message_id": message, "emoji": "👍🏽"})).await;
    let reply = bob_ws.reply(&id).await;
    assert_eq!((reply.kind.as_str(), reply.data["action"].as_str()), ("message.reaction", Some("add")));
    let seen = alice_ws.expect("message.reaction").await;
    assert_eq!(
        (seen.data["user_id"].as_i64(), seen.data["emoji"].as_str(), seen.data["chat_id"].as_i64()),
        (Some(bob.id), Some("👍🏽"), Some(chat))
    );
    // REST, and the view carries them.
    let path = format!("/api/messages/{message}/reactions");
    let added = server.api(Method::POST, &path, &alice.token, json!({"emoji": "🎉"})).await;
    assert_eq!(added["code"], 200, "{added}");
    assert_eq!(bob_ws.expect("message.reaction").await.data["emoji"], "🎉");
    assert_eq!(
        alice_ws.expect("message.reaction").await.data["emoji"],
        "🎉",
        "a REST call's own devices hear of it too"
    );
    let history = server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &alice.token, Value::Null).await;
    let reactions = &history["data"]["messages"][0]["reactions"];
    assert_eq!(reactions.as_array().map(Vec::len), Some(2), "{history}");
    // One per user per emoji: again is no news.
    assert_eq!(server.api(Method::POST, &path, &alice.token, json!({"emoji": "🎉"})).await["code"], 200);
    bob_ws.quiet("message.reaction", Duration::from_millis(300)).await;
    // Removal, over WebSocket.
    let id = bob_ws.send("reaction.remove", json!({"message_id": message, "emoji": "👍🏽"})).await;
    assert_eq!(bob_ws.reply(&id).await.data["action"], "remove");
    assert_eq!(alice_ws.expect("message.reaction").await.data["action"], "remove");
    let id = bob_ws.send("reaction.remove", json!({"message_id": message, "emoji": "👍🏽"})).await;
    assert_eq!(bob_ws.reply(&id).await.data["code"], 404, "not there any more");
    let encoded = format!("/api/messages/{message}/reactions/%F0%9F%8E%89");
    assert_eq!(server.api(Method::DELETE, &encoded, &alice.token, Value::Null).await["code"], 200);
    // Outsiders, bad emoji, too many distinct ones, deleted messages.
    let outsider = server.api(Method::POST, &path, &carol.token, json!({"emoji": "👍"})).await;
    assert_eq!(outsider["code"], 20003, "a non-member learns nothing of the message: {outsider}");
    for bad in
        [json!({"emoji": ""}), json!({"emoji": "123456789"}), json!({"emoji": "a b"}), json!({"emoji": 5}), json!({})]
    {
        assert_eq!(server.api(Method::POST, &path, &alice.token, bad.clone()).await["code"], 400, "{bad}");
    }
    let id = alice_ws.send("reaction.add", json!({"message_id": message})).await;
    assert_eq!(alice_ws.reply(&id).await.data["code"], 400);
    for n in 0..20 {
        let emoji = char::from_u32(0x1F600 + n).unwrap().to_string();
        assert_eq!(server.api(Method::POST, &path, &alice.token, json!({"emoji": emoji})).await["code"], 200, "{n}");
    }
    let crowded = server.api(Method::POST, &path, &bob.token, json!({"emoji": "🦀"})).await;
    assert_eq!(crowded["code"], 409, "the 21st distinct reaction: {crowded}");
    assert_eq!(
        server.api(Method::POST, &path, &bob.token, json!({"emoji": "😀"})).await["code"],
        200,
        "an existing one is fine"
    );
    let gone = send(&mut alice_ws, chat, "soon deleted").await;
    assert_eq!(
        server.api(Method::DELETE, &format!("/api/messages/{gone}"), &alice.token, Value::Null).await["code"],
        200
    );
    let late =
        server.api(Method::POST, &format!("/api/messages/{gone}/reactions"), &bob.token, json!({"emoji": "👍"})).await;
    assert_eq!(late["code"], 20004, "{late}");
}

#[tokio::test]
async fn disconnect_and_disable_close_every_session_at_once() {
    let server = start().await;
    let ann = backend_user(&server, "wx-ann", "Ann").await;
    let (_, minted) = call(&server, Method::POST, "/api/server/tokens", json!({"user_id": ann.id})).await;
    let refresh = minted["data"]["refresh_token"].as_str().unwrap().to_owned();
    let mut first = server.connect(&ann).await;
    let mut second = server.connect(&ann).await;
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/server/disconnect",
        json!({"user_id": ann.id, "reason": "subscription ended"}),
    )
    .await;
    assert_eq!(status, 200);
    for client in [&mut first, &mut second] {
        let closed = tokio::time::timeout(Duration::from_secs(5), client.socket.next_close()).await.unwrap();
        assert_eq!(closed, Some((4001, "subscription ended".to_owned())));
    }
    // Disabling closes the sessions too, and no new session can be minted.
    let mut third = server.connect(&ann).await;
    let (status, disabled) =
        call(&server, Method::POST, &format!("/api/server/users/{}/disable", ann.id), Value::Null).await;
    assert_eq!(status, 200, "{disabled}");
    let closed = tokio::time::timeout(Duration::from_secs(5), third.socket.next_close()).await.unwrap();
    assert_eq!(closed.map(|(code, _)| code), Some(4001));
    let (status, refused) = call(&server, Method::POST, "/api/server/tokens", json!({"user_id": ann.id})).await;
    assert_eq!((status, refused["code"].clone()), (StatusCode::FORBIDDEN, json!(10004)), "{refused}");
    // Its still-unexpired token does not open a new session, nor does its refresh token.
    let mut again = server.connect_with(Some(&ann.token), None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), again.socket.next_close()).await.unwrap();
    assert_eq!(closed, Some((4001, "account disabled".to_owned())));
    let refreshed = server.api(Method::POST, "/api/auth/refresh", "", json!({"refresh_token": refresh})).await;
    assert_eq!(refreshed["code"], 10004, "{refreshed}");
    let (status, _) = call(&server, Method::POST, &format!("/api/server/users/{}/enable", ann.id), Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(call(&server, Method::POST, "/api/server/tokens", json!({"user_id": ann.id})).await.0, 200);
    // Bad input.
    let long = "r".repeat(124);
    for (body, expected) in
        [(json!({"user_id": ann.id, "reason": long}), 400), (json!({"user_id": 999_999}), 404), (json!({}), 400)]
    {
        assert_eq!(
            call(&server, Method::POST, "/api/server/disconnect", body.clone()).await.0.as_u16(),
            expected,
            "{body}"
        );
    }
    assert_eq!(call(&server, Method::POST, "/api/server/users/999999/disable", Value::Null).await.0, 404);
}

#[tokio::test]
async fn publish_presence_and_stats_see_live_devices() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let carol = server.register("13800000003", "carol").await;
    let mut alice_one = server.connect(&alice).await;
    let mut alice_two = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    // To users, then to a chat's members.
    let (status, sent) = call(
        &server,
        Method::POST,
        "/api/server/publish",
        json!({"user_ids": [alice.id], "event": "balance.changed", "data": {"balance": 12}}),
    )
    .await;
    assert_eq!((status.as_u16(), sent["data"]["recipients"].as_u64()), (200, Some(1)));
    for client in [&mut alice_one, &mut alice_two] {
        let custom = client.expect("custom").await;
        assert_eq!(
            (custom.data["event"].as_str(), custom.data["data"]["balance"].as_i64()),
            (Some("balance.changed"), Some(12))
        );
    }
    let (_, sent) = call(
        &server,
        Method::POST,
        "/api/server/publish",
        json!({"chat_id": chat, "event": "game.started", "data": null}),
    )
    .await;
    assert_eq!(sent["data"]["recipients"], 2);
    assert_eq!(bob_ws.expect("custom").await.data["event"], "game.started");
    // Presence with device counts; unknown ids left out.
    let path = format!("/api/server/presence?user_ids={},{},{},999999", alice.id, bob.id, carol.id);
    let (status, presence) = call(&server, Method::GET, &path, Value::Null).await;
    assert_eq!(status, 200, "{presence}");
    let users = presence["data"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{presence}");
    assert_eq!((users[0]["online"].as_bool(), users[0]["devices"].as_u64()), (Some(true), Some(2)), "{presence}");
    assert_eq!((users[1]["online"].as_bool(), users[1]["devices"].as_u64()), (Some(true), Some(1)));
    assert_eq!((users[2]["online"].as_bool(), users[2]["devices"].as_u64()), (Some(false), Some(0)));
    drop(alice_two);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, presence) = call(&server, Method::GET, &path, Value::Null).await;
        if presence["data"]["users"][0]["devices"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the count follows a device leaving: {presence}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stats: this node's connections, once it has reported.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let (status, report) = call(&server, Method::GET, "/api/server/stats", Value::Null).await;
        assert_eq!(status, 200);
        if report["data"]["connections"] == 2 {
            assert_eq!(report["data"]["nodes"][0]["users_online"], 2, "{report}");
            assert!(report["data"]["messages_per_second"].is_number());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no stats report in time: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bad input.
    let refused = [
        (Method::POST, "/api/server/publish", json!({"user_ids": [alice.id], "chat_id": chat, "event": "x"})),
        (Method::POST, "/api/server/publish", json!({"event": "x"})),
        (Method::POST, "/api/server/publish", json!({"user_ids": [alice.id], "event": ""})),
        (
            Method::POST,
            "/api/server/publish",
            json!({"user_ids": [alice.id], "event": "big", "data": "x".repeat(17_000)}),
        ),
        (Method::GET, "/api/server/presence?user_ids=abc", Value::Null),
        (Method::GET, "/api/server/presence", Value::Null),
    ];
    for (method, path, body) in refused {
        let (status, answer) = call(&server, method, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body} -> {answer}");
    }
    let (status, _) =
        call(&server, Method::POST, "/api/server/publish", json!({"chat_id": 999_999, "event": "x"})).await;
    assert_eq!(status, 404);
}
