//! The hostile suite: each test performs an attack against the real server
//! over real sockets, as an attacker would, and asserts that it fails.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::dating::PNG_4X3;
use crate::harness::{self, Server, User};

/// Uploads `bytes` as `kind` for `user`; answers the file object.
async fn upload(server: &Server, user: &User, kind: &str, name: &str, bytes: Vec<u8>) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("type", kind.to_owned())
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()));
    let response =
        server.http.post(format!("{}/api/files/upload", server.base)).bearer_auth(&user.token).multipart(form).send();
    let reply: Value = response.await.unwrap().json().await.unwrap();
    assert_eq!(reply["code"], 200, "{reply}");
    reply["data"].clone()
}

/// A REST send into `chat`; answers the whole reply.
async fn send(server: &Server, user: &User, chat: i64, body: Value) -> Value {
    server.api(Method::POST, &format!("/api/chats/{chat}/messages"), &user.token, body).await
}

async fn download(server: &Server, user: &User, path: &str) -> reqwest::Response {
    server.http.get(format!("{}{path}", server.base)).bearer_auth(&user.token).send().await.unwrap()
}

#[tokio::test]
async fn naming_someone_elses_file_in_a_message_does_not_open_it() {
    let server = harness::start().await;
    let (alice, bob, private) = server.pair("private").await;
    let mallory = server.register("13800000666", "mallory").await;
    let file = upload(&server, &alice, "image", "holiday.png", PNG_4X3.to_vec()).await;
    let id = file["id"].as_i64().unwrap();
    let path = format!("/api/files/{id}");

    // The attack: a group of one, a message naming the file, then a download.
    let alone = server.chat(&mallory, "group", &[]).await;
    for named in [
        json!({"type": "image", "file_url": path}),
        json!({"type": "image", "file_url": format!("http://evil.example{path}")}),
        json!({"type": "image", "file_url": format!("{path}/thumbnail")}),
        json!({"type": "image", "file_id": id}),
        json!({"type": "text", "content": "x", "thumbnail": format!("{path}/thumbnail")}),
    ] {
        let refused = send(&server, &mallory, alone, named.clone()).await;
        assert!(refused["code"] == 30001 || refused["code"] == 400, "{named} was accepted: {refused}");
    }
    let stolen = download(&server, &mallory, &path).await;
    assert_eq!(stolen.status(), 404, "the file stays its owner's");
    assert_eq!(download(&server, &mallory, &format!("{path}/thumbnail")).await.status(), 404);
    let garbage = send(&server, &mallory, alone, json!({"type": "image", "file_url": "/api/files/abc"})).await;
    assert_eq!(garbage["code"], 400, "{garbage}");

    // The owner shares it by id: the server fills in what the record says,
    // whatever the client claimed, and the chat's members may read it.
    let claimed = json!({"type": "image", "file_id": id, "file_name": "invoice.exe", "file_size": 1});
    let shared = send(&server, &alice, private, claimed).await;
    assert_eq!(shared["code"], 200, "{shared}");
    let message = &shared["data"];
    assert_eq!(
        (message["file_url"].as_str(), message["file_name"].as_str(), message["file_size"].as_u64()),
        (Some(path.as_str()), Some("holiday.png"), Some(PNG_4X3.len() as u64))
    );
    assert_eq!(message["thumbnail"], format!("{path}/thumbnail"));
    let opened = download(&server, &bob, &path).await;
    assert_eq!(opened.status(), 200);
    assert_eq!(opened.bytes().await.unwrap().as_ref(), PNG_4X3.as_slice());
    // Bob may pass on what he can read; Mallory still may not.
    let bobs_group = server.chat(&bob, "group", &[]).await;
    assert_eq!(send(&server, &bob, bobs_group, json!({"type": "image", "file_id": id})).await["code"], 200);
    assert_eq!(download(&server, &mallory, &path).await.status(), 404);
}

#[tokio::test]
async fn a_file_shared_in_an_expired_message_is_no_longer_readable() {
    let server = harness::start().await;
    let (alice, bob, private) = server.pair("private").await;
    let file = upload(&server, &alice, "document", "secret.txt", b"burn after reading".to_vec()).await;
    let path = format!("/api/files/{}", file["id"]);
    let sent = send(&server, &alice, private, json!({"type": "file", "file_id": file["id"], "ttl": 1})).await;
    assert_eq!(sent["code"], 200, "{sent}");
    assert_eq!(download(&server, &bob, &path).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(download(&server, &bob, &path).await.status(), 404, "gone with its message");
    assert_eq!(download(&server, &alice, &path).await.status(), 200, "still the uploader's");
}

/// A PNG whose header claims `width` × `height` pixels over a few bytes of data.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let body = [kind, data].concat();
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let header = [width.to_be_bytes().as_slice(), height.to_be_bytes().as_slice(), &[8, 2, 0, 0, 0]].concat();
    chunk(&mut png, b"IHDR", &header);
    // A zlib stream of a few zero bytes: far fewer than the header promises.
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[tokio::test]
async fn a_decompression_bomb_gets_no_thumbnail_and_the_server_stays_up() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    for (width, height) in [(50_000, 50_000), (7_000, 7_000), (65_535, 1)] {
        let bomb = upload(&server, &alice, "image", "bomb.png", png_claiming(width, height)).await;
        assert_eq!(bomb["thumbnail"], "", "{width}x{height} got a thumbnail");
    }
    let health: Value = server.http.get(format!("{}/health", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["data"]["status"], "healthy");
    // An honest image still gets one.
    assert_ne!(upload(&server, &alice, "image", "ok.png", PNG_4X3.to_vec()).await["thumbnail"], "");
}

#[tokio::test]
async fn oversized_file_fields_are_refused_not_stored_and_fanned_out() {
    let server = harness::start().await;
    let (alice, _bob, chat) = server.pair("private").await;
    let long = "x".repeat(4 * 1024);
    for (field, value) in [("file_name", "n".repeat(256)), ("file_url", long.clone()), ("thumbnail", long)] {
        let mut body = json!({"type": "file", "file_url": "https://cdn.example/a.bin", "content": "c"});
        body[field] = value.into();
        let refused = send(&server, &alice, chat, body).await;
        assert_eq!(refused["code"], 400, "{field}: {}", refused["error"]);
        assert!(refused["error"].as_str().unwrap().contains(field), "says which: {}", refused["error"]);
    }
}

/// A login as seed 002 writes it, from the client address `from` (the
/// test server trusts 127.0.0.1 as its proxy).
async fn login_from(server: &Server, from: &str, phone: &str, password: &str) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/api/auth/login", server.base))
        .header("x-forwarded-for", from)
        .json(&json!({"phone": phone, "password": password}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_stranger_guessing_passwords_cannot_lock_the_owner_out() {
    let server =
        harness::start_with_flags(&["--trusted-proxy", "127.0.0.1", "--rate-login-per-15min", "3"], |_| {}).await;
    server.register("13800000001", "victim").await;
    let mut refused = 0;
    for _ in 0..6 {
        let (status, _) = login_from(&server, "6.6.6.6", "13800000001", "guess-123").await;
        assert_ne!(status, 200);
        refused += u32::from(status == 429);
    }
    assert_eq!(refused, 3, "the guesser's address is limited");
    // The owner, from elsewhere, still gets in.
    let (status, session) = login_from(&server, "1.2.3.4", "13800000001", "password123").await;
    assert_eq!(status, 200, "{session}");
    assert!(session["data"]["access_token"].is_string());
}

#[tokio::test]
async fn logins_and_codes_do_not_tell_which_numbers_and_addresses_are_registered() {
    let server = harness::start().await;
    server.register("13800000001", "known").await;
    // A wrong password and an unknown number: one answer.
    let (wrong_status, wrong) = login_from(&server, "127.0.0.1", "13800000001", "not-the-password").await;
    let (unknown_status, unknown) = login_from(&server, "127.0.0.1", "13899999999", "not-the-password").await;
    assert_eq!((wrong_status, &wrong["code"], &wrong["error"]), (unknown_status, &unknown["code"], &unknown["error"]));
    // The same by SMS code.
    let by_code = |phone: &str| json!({"phone": phone, "code": "000000"});
    let known = server.api(Method::POST, "/api/auth/login", "", by_code("13800000001")).await;
    let stranger = server.api(Method::POST, "/api/auth/login", "", by_code("13899999998")).await;
    assert_eq!((&known["code"], &known["error"]), (&stranger["code"], &stranger["error"]));
    // A register code is sent, and answered, alike for a taken number and a free one.
    let send = |phone: &str| json!({"phone": phone, "type": "register"});
    let taken = server.api(Method::POST, "/api/auth/send-code", "", send("13800000001")).await;
    let free = server.api(Method::POST, "/api/auth/send-code", "", send("13899999997")).await;
    assert_eq!((&taken["code"], &taken["message"]), (&free["code"], &free["message"]), "{taken} / {free}");
    let keys = |value: &Value| value["data"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&taken), keys(&free));
    // Seed 001's email login: an unknown address reads like a wrong password.
    let join = json!({"username": "known", "email": "known@example.com", "password": "secret123"});
    server.http.post(format!("{}/api/v1/register", server.base)).json(&join).send().await.unwrap();
    let email_login = |email: &str| {
        let body = json!({"email": email, "password": "not-the-secret"});
        server.http.post(format!("{}/api/v1/login", server.base)).json(&body).send()
    };
    let wrong: Value = email_login("known@example.com").await.unwrap().json().await.unwrap();
    let unknown: Value = email_login("nobody@example.com").await.unwrap().json().await.unwrap();
    assert_eq!((&wrong["code"], &wrong["message"]), (&unknown["code"], &unknown["message"]));
}

#[tokio::test]
async fn a_call_record_is_the_servers_and_nobody_edits_or_deletes_it() {
    let server = harness::start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut alice_live = server.connect(&alice).await;
    let mut bob_live = server.connect(&bob).await;
    let id = alice_live.send("call.offer", json!({"to_user_id": bob.id, "call_type": "audio", "sdp": "o"})).await;
    let call_id = alice_live.reply(&id).await.data["call_id"].clone();
    bob_live.expect("call.offer").await;
    bob_live.send("call.end", json!({"call_id": call_id, "reason": "rejected"})).await;
    alice_live.expect("call.end").await;
    let history = server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &alice.token, Value::Null).await;
    let messages = history["data"]["messages"].as_array().unwrap();
    let record = messages.iter().find(|m| m["type"] == "system").unwrap_or_else(|| panic!("{history}")).clone();
    assert_eq!(record["sender_id"], 0, "the server's, not the caller's: {record}");
    let content: Value = serde_json::from_str(record["content"].as_str().unwrap()).unwrap();
    assert_eq!((content["caller_id"].as_i64(), content["status"].as_str()), (Some(alice.id), Some("rejected")));
    let path = format!("/api/messages/{}", record["id"]);
    for user in [&alice, &bob] {
        let edited = server.api(Method::PUT, &path, &user.token, json!({"content": "we never talked"})).await;
        assert_eq!(edited["code"], 20004, "{edited}");
        let deleted = server.api(Method::DELETE, &path, &user.token, Value::Null).await;
        assert_eq!(deleted["code"], 20004, "{deleted}");
    }
    // Nor can a client forge one.
    let forged = send(&server, &alice, chat, json!({"type": "system", "content": "{\"event\":\"call\"}"})).await;
    assert_eq!(forged["code"], 400, "{forged}");
}

#[tokio::test]
async fn with_require_phone_code_nobody_claims_a_number_they_do_not_hold() {
    let server = harness::start_with_flags(&["--require-phone-code"], |_| {}).await;
    let register = |body: Value| {
        let server = &server;
        async move { server.api(Method::POST, "/api/auth/register", "", body).await }
    };
    let squat = register(json!({"phone": "13800000001", "password": "password123"})).await;
    assert_eq!(squat["code"], 400, "{squat}");
    assert!(squat["error"].as_str().unwrap().contains("code"), "{squat}");
    let guessed = register(json!({"phone": "13800000001", "password": "password123", "code": "123456"})).await;
    assert_eq!(guessed["code"], 10003, "{guessed}");
    // Seed 001 registers by email; a phone there needs its code too.
    let body = json!({"username": "sq", "email": "sq@example.com", "password": "secret123", "phone": "13800000001"});
    let simple: Value = server
        .http
        .post(format!("{}/api/v1/register", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(simple["code"], 400, "{simple}");
    // The holder of the phone gets the code and registers.
    let sent =
        server.api(Method::POST, "/api/auth/send-code", "", json!({"phone": "13800000001", "type": "register"})).await;
    let code = sent["data"]["debug_code"].as_str().unwrap();
    let owner = register(json!({"phone": "13800000001", "password": "password123", "code": code})).await;
    assert_eq!(owner["code"], 200, "{owner}");
}

/// A new session of the user with `phone` (the harness's password): its
/// access and refresh tokens.
async fn session(server: &Server, phone: &str) -> (String, String) {
    let body = json!({"phone": phone, "password": "password123"});
    let reply = server.api(Method::POST, "/api/auth/login", "", body).await;
    let token = |name: &str| reply["data"][name].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned();
    (token("access_token"), token("refresh_token"))
}

async fn refresh(server: &Server, refresh_token: &str) -> Value {
    server.api(Method::POST, "/api/auth/refresh", "", json!({"refresh_token": refresh_token})).await
}

/// Waits (2 s at most) for the server to close `client`; answers the code.
async fn closed_within(client: &mut harness::Client) -> Option<u16> {
    client.closed(Duration::from_secs(2)).await.map(u16::from)
}

#[tokio::test]
async fn logging_out_closes_that_tokens_sockets_and_only_those() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    let (other_token, _) = session(&server, "13800000001").await;
    let mut ended = server.connect(&alice).await;
    let mut kept = server.connect_with(Some(&other_token), None).await.unwrap();
    kept.expect("connect").await;
    let out = server.api(Method::POST, "/api/auth/logout", &alice.token, json!({})).await;
    assert_eq!(out["code"], 200, "{out}");
    assert_eq!(closed_within(&mut ended).await, Some(4001), "the logged-out token's socket");
    // The other session's socket goes on.
    let id = kept.send("ping", json!({})).await;
    assert_eq!(kept.reply(&id).await.kind, "pong");
    // And the token opens no new socket.
    assert!(server.connect_with(Some(&alice.token), None).await.is_err());
}

#[tokio::test]
async fn a_reused_refresh_token_ends_its_family_access_tokens_and_sockets_included() {
    let server = harness::start_with_flags(&["--refresh-reuse-grace-secs", "1"], |_| {}).await;
    server.register("13800000001", "alice").await;
    let (access, refresh_token) = session(&server, "13800000001").await;
    let mut live = server.connect_with(Some(&access), None).await.unwrap();
    live.expect("connect").await;
    // An honest app refreshing twice at once gets one pair, and keeps its session.
    let first = refresh(&server, &refresh_token).await;
    let second = refresh(&server, &refresh_token).await;
    assert_eq!(first["code"], 200, "{first}");
    assert_eq!(first["data"], second["data"], "the same pair within the grace window");
    let rotated_access = first["data"]["access_token"].as_str().unwrap().to_owned();
    // A thief replaying the spent token after the window: the whole family ends.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let replayed = refresh(&server, &refresh_token).await;
    assert_eq!(replayed["code"], 10008, "{replayed}");
    for token in [&access, &rotated_access] {
        let me = server.api(Method::GET, "/api/users/me", token, Value::Null).await;
        assert_eq!(me["code"], 10008, "the family's access tokens are dead: {me}");
    }
    assert_eq!(closed_within(&mut live).await, Some(4001));
    let next = first["data"]["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&server, next).await["code"], 10008, "and its refresh tokens");
}

#[tokio::test]
async fn a_revoked_token_stays_refused_through_the_expiry_leeway_and_expired_sessions_close() {
    let server = harness::start_with_flags(&["--access-ttl-secs", "1"], |_| {}).await;
    let alice = server.register("13800000001", "alice").await;
    let out = server.api(Method::POST, "/api/auth/logout", &alice.token, json!({})).await;
    assert_eq!(out["code"], 200, "{out}");
    // Past its expiry, inside the 5 s leeway verification allows.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let me = server.api(Method::GET, "/api/users/me", &alice.token, Value::Null).await;
    assert_eq!(me["code"], 10008, "still revoked: {me}");
    // A socket whose token expires is closed.
    let (fresh, _) = session(&server, "13800000001").await;
    let mut live = server.connect_with(Some(&fresh), None).await.unwrap();
    live.expect("connect").await;
    assert_eq!(live.closed(Duration::from_secs(4)).await.map(u16::from), Some(4001));
}

async fn add_contact(server: &Server, owner: &User, phone: &str) {
    let added = server.api(Method::POST, "/api/contacts", &owner.token, json!({"phone": phone})).await;
    assert_eq!(added["code"], 200, "{added}");
}

async fn block(server: &Server, owner: &User, other: &User) {
    let path = format!("/api/contacts/{}", other.id);
    let blocked = server.api(Method::PUT, &path, &owner.token, json!({"is_blocked": true})).await;
    assert_eq!(blocked["code"], 200, "{blocked}");
}

/// The presence of `subject` as `viewer` may query it: `None` when hidden.
async fn queried_presence(viewer: &mut harness::Client, subject: &User) -> Option<Value> {
    let id = viewer.send("presence.query", json!({"user_ids": [subject.id]})).await;
    viewer.reply(&id).await.data["users"].as_array().unwrap().first().cloned()
}

#[tokio::test]
async fn adding_someone_as_a_contact_does_not_reveal_their_presence_or_let_you_call_them() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    let mallory = server.register("13800000666", "mallory").await;
    add_contact(&server, &mallory, "13800000001").await;
    let mut watcher = server.connect(&mallory).await;
    let mut alices = server.connect(&alice).await;
    watcher.quiet("presence", Duration::from_millis(300)).await;
    assert_eq!(queried_presence(&mut watcher, &alice).await, None);
    let profile = server.api(Method::GET, &format!("/api/users/{}", alice.id), &mallory.token, Value::Null).await;
    assert_eq!((&profile["data"]["online"], &profile["data"]["last_seen"]), (&json!(false), &Value::Null), "{profile}");
    let id = watcher.send("call.offer", json!({"to_user_id": alice.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(watcher.reply(&id).await.data["code"], 403);
    alices.quiet("call.offer", Duration::from_millis(200)).await;
    // Once Alice adds Mallory back, they are mutual contacts: both are allowed.
    add_contact(&server, &alice, "13800000666").await;
    assert_eq!(queried_presence(&mut watcher, &alice).await.unwrap()["is_online"], true);
}

#[tokio::test]
async fn a_block_hides_presence_refuses_calls_and_private_chats() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    // A group in common lets them see each other, until Alice blocks Bob.
    server.chat(&alice, "group", &[&bob]).await;
    let _alices = server.connect(&alice).await;
    let mut bobs = server.connect(&bob).await;
    assert_eq!(queried_presence(&mut bobs, &alice).await.unwrap()["is_online"], true, "a shared chat");
    add_contact(&server, &alice, "13800000002").await;
    block(&server, &alice, &bob).await;
    assert_eq!(queried_presence(&mut bobs, &alice).await, None, "blocked: hidden");
    let id = bobs.send("call.offer", json!({"to_user_id": alice.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(bobs.reply(&id).await.data["code"], 20005);
    let private =
        server.api(Method::POST, "/api/chats", &bob.token, json!({"type": "private", "members": [alice.id]})).await;
    assert_eq!(private["code"], 20005, "{private}");
}

async fn metrics_status(server: &Server, base: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = server.http.get(format!("{base}/metrics"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_are_not_public() {
    // By default: this machine only, never through a proxy.
    let server = harness::start().await;
    assert_eq!(metrics_status(&server, &server.base, &[]).await, 200, "a local scraper");
    assert_eq!(metrics_status(&server, &server.base, &[("x-forwarded-for", "6.6.6.6")]).await, 404, "via a proxy");
    // With a token: anyone who has it.
    let server = harness::start_with_flags(&["--metrics-token", "scrape-secret"], |_| {}).await;
    let proxied = [("x-forwarded-for", "6.6.6.6"), ("authorization", "Bearer scrape-secret")];
    assert_eq!(metrics_status(&server, &server.base, &proxied).await, 200);
    let wrong = [("x-forwarded-for", "6.6.6.6"), ("authorization", "Bearer guess")];
    assert_eq!(metrics_status(&server, &server.base, &wrong).await, 404);
    // With a listener of their own: served there, and no longer on the main one.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let server = harness::start_with_flags(&["--metrics-listen", &addr], |_| {}).await;
    assert_eq!(metrics_status(&server, &server.base, &[]).await, 404, "not on the main listener");
    assert_eq!(metrics_status(&server, &format!("http://{addr}"), &[]).await, 200);
}

#[tokio::test]
async fn an_expired_message_is_gone_by_id_forward_reply_and_search() {
    let server = harness::start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let elsewhere = server.chat(&bob, "group", &[]).await;
    let gone = send(&server, &alice, chat, json!({"content": "self-destructing secret", "ttl": 1})).await;
    let gone_id = gone["data"]["id"].as_i64().unwrap();
    let lasting = send(&server, &alice, chat, json!({"content": "a minute to read", "ttl": 60})).await;
    // Forwarding a message that expires keeps its end.
    let copy = send(&server, &bob, elsewhere, json!({"forward_from": lasting["data"]["id"]})).await;
    assert_eq!(copy["code"], 200, "{copy}");
    assert!(copy["data"]["ttl"].as_u64().is_some_and(|ttl| (1..=60).contains(&ttl)), "{copy}");
    assert!(copy["data"]["expires_at"].is_string(), "{copy}");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let forward = send(&server, &bob, elsewhere, json!({"forward_from": gone_id})).await;
    assert_eq!(forward["code"], 20003, "forwarding it: {forward}");
    let reply = send(&server, &bob, chat, json!({"content": "what?", "reply_to_id": gone_id})).await;
    assert_eq!(reply["code"], 20003, "replying to it: {reply}");
    let pin = server.api(Method::POST, &format!("/api/messages/{gone_id}/pin"), &bob.token, Value::Null).await;
    assert_eq!(pin["code"], 20003, "pinning it: {pin}");
    let edit =
        server.api(Method::PUT, &format!("/api/messages/{gone_id}"), &alice.token, json!({"content": "x"})).await;
    assert_eq!(edit["code"], 20003, "editing it: {edit}");
    let found = server
        .api(Method::GET, &format!("/api/chats/{chat}/messages?search=self-destructing"), &bob.token, Value::Null)
        .await;
    assert_eq!(found["data"]["messages"].as_array().map(Vec::len), Some(0), "searching for it: {found}");
}

#[tokio::test]
async fn someone_who_blocked_you_cannot_be_put_in_a_group_with_you() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    let mallory = server.register("13800000666", "mallory").await;
    let carol = server.register("13800000003", "carol").await;
    add_contact(&server, &alice, "13800000666").await;
    block(&server, &alice, &mallory).await;
    let create = json!({"type": "group", "name": "trap", "members": [alice.id, carol.id]});
    let refused = server.api(Method::POST, "/api/chats", &mallory.token, create).await;
    assert_eq!(refused["code"], 20005, "{refused}");
    let group = server.chat(&mallory, "group", &[&carol]).await;
    let added = server
        .api(Method::POST, &format!("/api/chats/{group}/members"), &mallory.token, json!({"user_ids": [alice.id]}))
        .await;
    assert_eq!(added["code"], 20005, "{added}");
    let members = server.api(Method::GET, &format!("/api/chats/{group}"), &carol.token, Value::Null).await;
    let ids: Vec<i64> = members["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user_id"].as_i64().or_else(|| m["id"].as_i64()))
        .collect();
    assert_eq!(ids.len(), 2, "mallory and carol: {members}");
    assert!(!ids.contains(&alice.id), "{members}");
    // Someone who has not blocked mallory is added as before.
    let dave = server.register("13800000004", "dave").await;
    let added = server
        .api(Method::POST, &format!("/api/chats/{group}/members"), &mallory.token, json!({"user_ids": [dave.id]}))
        .await;
    assert_eq!(added["code"], 200, "{added}");
}

#[tokio::test]
async fn asking_for_a_private_chat_again_does_not_pull_back_someone_who_left_it() {
    let server = harness::start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let left = server.api(Method::POST, &format!("/api/chats/{chat}/leave"), &bob.token, json!({})).await;
    assert_eq!(left["code"], 200, "{left}");
    let mut bobs = server.connect(&bob).await;
    // Alice asks for the chat again and writes into it.
    let again =
        server.api(Method::POST, "/api/chats", &alice.token, json!({"type": "private", "members": [bob.id]})).await;
    assert_eq!(again["data"]["id"], chat, "{again}");
    let members: Vec<i64> =
        again["data"]["members"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(members, vec![alice.id], "only the one who asked is in it");
    assert_eq!(send(&server, &alice, chat, json!({"content": "come back"})).await["code"], 200);
    bobs.quiet("message.new", Duration::from_millis(300)).await;
    let read = server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &bob.token, Value::Null).await;
    assert_eq!(read["code"], 20002, "{read}");
    // Bob comes back when he asks for it himself, and reads what he missed.
    let back =
        server.api(Method::POST, "/api/chats", &bob.token, json!({"type": "private", "members": [alice.id]})).await;
    assert_eq!(back["data"]["id"], chat, "{back}");
    let read = server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &bob.token, Value::Null).await;
    assert_eq!(read["data"]["messages"][0]["content"], "come back", "{read}");
}

/// `user` sets who may put them in a group.
async fn group_invites(server: &Server, user: &User, setting: &str) -> Value {
    server.api(Method::PUT, "/api/users/me", &user.token, json!({"group_invites": setting})).await
}

#[tokio::test]
async fn nobody_is_put_in_a_group_against_their_setting_or_past_the_cap() {
    let server = harness::start_with_flags(&["--max-group-members", "4"], |_| {}).await;
    let alice = server.register("13800000001", "alice").await;
    let spammer = server.register("13800000666", "spammer").await;
    let friend = server.register("13800000002", "friend").await;
    assert_eq!(group_invites(&server, &alice, "sometimes").await["code"], 400, "a setting it does not know");
    let me = group_invites(&server, &alice, "contacts").await;
    assert_eq!(me["data"]["group_invites"], "contacts", "{me}");
    // A stranger can neither make a group with her nor add her to one.
    let create = json!({"type": "group", "name": "promo", "members": [alice.id]});
    assert_eq!(server.api(Method::POST, "/api/chats", &spammer.token, create).await["code"], 20005);
    let promo = server.chat(&spammer, "group", &[]).await;
    let path = format!("/api/chats/{promo}/members");
    let added = server.api(Method::POST, &path, &spammer.token, json!({"user_ids": [alice.id]})).await;
    assert_eq!(added["code"], 20005, "{added}");
    // Someone in her contact list can.
    add_contact(&server, &alice, "13800000002").await;
    let team = server.chat(&friend, "group", &[&alice]).await;
    // With "nobody", not even a contact.
    group_invites(&server, &alice, "nobody").await;
    let other = json!({"type": "group", "name": "other", "members": [alice.id]});
    assert_eq!(server.api(Method::POST, "/api/chats", &friend.token, other).await["code"], 20005);
    // The cap holds however many ask at once: four members at most.
    let mut crowd = Vec::new();
    for n in 0..6 {
        crowd.push(server.register(&format!("1390000000{n}"), &format!("crowd{n}")).await);
    }
    let path = format!("/api/chats/{team}/members");
    let answers = futures_util::future::join_all(
        crowd.iter().map(|user| server.api(Method::POST, &path, &friend.token, json!({"user_ids": [user.id]}))),
    )
    .await;
    let admitted = answers.iter().filter(|answer| answer["code"] == 200).count();
    assert_eq!(admitted, 2, "two places were left: {answers:?}");
    let chat = server.api(Method::GET, &format!("/api/chats/{team}"), &friend.token, Value::Null).await;
    assert_eq!(chat["data"]["members"].as_array().unwrap().len(), 4, "{chat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_file_while_someone_uploads_the_same_bytes_loses_neither() {
    let server = harness::start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    for round in 0..30 {
        let bytes = format!("the same bytes, round {round}\n").repeat(64).into_bytes();
        let first = upload(&server, &alice, "document", "a.txt", bytes.clone()).await;
        let path = format!("/api/files/{}", first["id"]);
        let deletion = server.api(Method::DELETE, &path, &alice.token, Value::Null);
        let (deleted, second) = tokio::join!(deletion, upload(&server, &bob, "document", "b.txt", bytes.clone()));
        assert_eq!(deleted["code"], 200, "{deleted}");
        let url = second["url"].as_str().unwrap();
        let response = download(&server, &bob, url).await;
        assert_eq!(response.status(), 200, "round {round}: the second upload's bytes are there");
        assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let gone = download(&server, &alice, &format!("/api/files/{}", first["id"])).await;
        assert_eq!(gone.status(), 404);
    }
}
