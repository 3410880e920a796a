use reqwest::Method;
use serde_json::json;

use crate::harness::{SECRET, assert_error, start, start_with};

#[tokio::test]
async fn register_login_refresh_logout() {
    let server = start().await;
    let body = json!({"phone": "13800000001", "username": "alice", "password": "password123", "nickname": "Alice"});
    let (status, reply) = server.post("/api/auth/register", None, body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    let data = &reply["data"];
    assert_eq!(data["user"]["phone"], "13800000001");
    assert_eq!(data["user"]["nickname"], "Alice");
    assert_eq!(data["expires_in"], 86_400);
    let access = data["access_token"].as_str().unwrap().to_owned();
    let refresh = data["refresh_token"].as_str().unwrap().to_owned();

    assert_error(&server.post("/api/auth/register", None, body.clone()).await, 409, 10005);
    let same_name = json!({"phone": "13800000002", "username": "alice", "password": "password123"});
    assert_error(&server.post("/api/auth/register", None, same_name).await, 409, 10006);
    assert_error(
        &server.post("/api/auth/register", None, json!({"phone": "12", "password": "password123"})).await,
        400,
        400,
    );
    assert_error(
        &server.post("/api/auth/register", None, json!({"phone": "13800000003", "password": "123"})).await,
        400,
        400,
    );
    assert_error(&server.post("/api/auth/register", None, json!({"phone": "13800000003"})).await, 400, 400);
    assert_error(
        &server.post("/api/auth/register", None, json!({"phone": 13_800_000_003_i64, "password": "password123"})).await,
        400,
        400,
    );
    let malformed = server
        .http
        .post(format!("{}/api/auth/register", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<serde_json::Value>().await.unwrap()["code"], 400);

    let (status, me) = server.get("/api/users/me", &access).await;
    assert_eq!((status.as_u16(), me["data"]["username"].as_str()), (200, Some("alice")));

    let login = |password: &str| json!({"phone": "13800000001", "password": password});
    let (status, logged_in) = server.post("/api/auth/login", None, login("password123")).await;
    assert_eq!(status, 200, "{logged_in}");
    assert!(logged_in["data"]["access_token"].is_string());
    assert_error(&server.post("/api/auth/login", None, login("wrong-password")).await, 401, 10002);
    // An unknown number reads exactly like a wrong password.
    let unknown = server.post("/api/auth/login", None, json!({"phone": "13999999999", "password": "x123456"})).await;
    let wrong = server.post("/api/auth/login", None, login("wrong-password")).await;
    assert_error(&unknown, 401, 10002);
    assert_eq!(unknown.1["error"], wrong.1["error"], "the same answer");
    assert_error(&server.post("/api/auth/login", None, json!({"phone": "13800000001"})).await, 400, 400);

    // Refresh rotates. The spent token presented again within the grace
    // window (an app's concurrent refreshes) gets the same pair; after it,
    // reuse revokes the whole family (tests/ws/hostile.rs shows that).
    let (status, rotated) = server.post("/api/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "{rotated}");
    let next = rotated["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, refresh);
    assert!(rotated["data"]["access_token"].is_string());
    let (status, again) = server.post("/api/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!((status.as_u16(), &again["data"]), (200, &rotated["data"]), "the same pair");
    assert_error(&server.post("/api/auth/refresh", None, json!({"refresh_token": "made-up"})).await, 401, 10008);

    // Logout revokes the access token and the named refresh token.
    let session = logged_in["data"].clone();
    let (token, session_refresh) =
        (session["access_token"].as_str().unwrap(), session["refresh_token"].as_str().unwrap());
    let (status, _) = server.post("/api/auth/logout", Some(token), json!({"refresh_token": session_refresh})).await;
    assert_eq!(status, 200);
    assert_error(&server.get("/api/users/me", token).await, 401, 10008);
    assert_error(&server.post("/api/auth/refresh", None, json!({"refresh_token": session_refresh})).await, 401, 10008);
    assert_eq!(server.get("/api/users/me", &access).await.0, 200, "other sessions live on");
    assert_error(&server.post("/api/auth/logout", Some(token), json!({})).await, 401, 10008);
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    assert_error(&server.call(Method::GET, "/api/users/me", None, None).await, 401, 401);
    assert_error(&server.get("/api/users/me", "not-a-jwt").await, 401, 10008);
    let mut forged = alice.token.clone();
    forged.pop();
    forged.push('x');
    assert_error(&server.get("/api/users/me", &forged).await, 401, 10008);

    let now = protocol::time::now_millis() / 1000;
    let expired = protocol::Claims { sub: alice.id, jti: "old".into(), iat: now - 7_200, exp: now - 3_600, fam: None };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &expired,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_error(&server.get("/api/users/me", &expired).await, 401, 10007);
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &protocol::Claims { sub: alice.id, jti: "x".into(), iat: now, exp: now + 60, fam: None },
        &jsonwebtoken::EncodingKey::from_secret(b"someone else's secret, 32+ bytes long"),
    )
    .unwrap();
    assert_error(&server.get("/api/users/me", &other_key).await, 401, 10008);
}

#[tokio::test]
async fn revoked_tokens_stay_revoked_across_a_restart() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    assert_eq!(server.post("/api/auth/logout", Some(&alice.token), json!({})).await.0, 200);
    // A second server over the same database loads the denylist.
    let store = server.store.clone();
    let config = rest_sidecar::SidecarConfig::new(server.dir.path().join("files"), SECRET.to_vec());
    let services = super::harness::services(&store, std::sync::Arc::new(router::LocalRouter::new()));
    let state = rest_sidecar::SidecarState::new(services, std::sync::Arc::new(rest_sidecar::sms::LogSms), config)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(rest_sidecar::run(listener, state, shutdown.clone()));
    let response = server.http.get(format!("{base}/api/users/me")).bearer_auth(&alice.token).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["code"], 10008);
    shutdown.cancel();
}

#[tokio::test]
async fn sms_codes_log_in_and_are_rate_limited() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let (status, sent) = server.post("/api/auth/send-code", None, json!({"phone": alice.phone, "type": "login"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!((sent["data"]["expires_in"].as_u64(), sent["data"]["retry_after"].as_u64()), (Some(300), Some(60)));
    let code = sent["data"]["debug_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);

    let again = server
        .http
        .post(format!("{}/api/auth/send-code", server.base))
        .json(&json!({"phone": alice.phone, "type": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 429);
    let retry_after: u64 = again.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["code"], 40001);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_error(&server.post("/api/auth/login", None, json!({"phone": alice.phone, "code": wrong})).await, 401, 10003);
    let (status, session) = server.post("/api/auth/login", None, json!({"phone": alice.phone, "code": code})).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["data"]["user"]["id"], alice.id);
    assert_error(&server.post("/api/auth/login", None, json!({"phone": alice.phone, "code": code})).await, 401, 10003);

    // A register code for a taken number answers like any other: the
    // answer does not say the number is registered.
    let (status, _) = server.post("/api/auth/send-code", None, json!({"phone": alice.phone, "type": "register"})).await;
    assert_eq!(status, 200);
    assert_error(
        &server.post("/api/auth/send-code", None, json!({"phone": alice.phone, "type": "hello"})).await,
        400,
        400,
    );
    assert_error(&server.post("/api/auth/send-code", None, json!({"phone": "abc", "type": "login"})).await, 400, 400);

    // Registration verified by a code.
    let (_, sent) = server.post("/api/auth/send-code", None, json!({"phone": "13800000009", "type": "register"})).await;
    let code = sent["data"]["debug_code"].as_str().unwrap();
    let with_wrong = json!({"phone": "13800000009", "password": "password123", "code": "999999x"});
    assert_error(&server.post("/api/auth/register", None, with_wrong).await, 401, 10003);
    let with_code = json!({"phone": "13800000009", "password": "password123", "code": code});
    assert_eq!(server.post("/api/auth/register", None, with_code).await.0, 200);
}

#[tokio::test]
async fn codes_are_not_shown_outside_dev_mode() {
    let server = start_with(|config| config.dev = false).await;
    let (status, sent) =
        server.post("/api/auth/send-code", None, json!({"phone": "13800000001", "type": "login"})).await;
    assert_eq!(status, 200);
    assert!(sent["data"].get("debug_code").is_none(), "{sent}");
}

#[tokio::test]
async fn logins_are_rate_limited_per_phone() {
    let server = start().await;
    server.register("13800000001", "alice").await;
    for _ in 0..10 {
        let reply =
            server.post("/api/auth/login", None, json!({"phone": "13800000001", "password": "wrong-pass"})).await;
        assert_error(&reply, 401, 10002);
    }
    let limited = server
        .http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"phone": "13800000001", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.json::<serde_json::Value>().await.unwrap()["code"], 40001);
    // Another phone is not affected.
    assert_error(
        &server.post("/api/auth/login", None, json!({"phone": "13800000002", "password": "x123456"})).await,
        401,
        10002,
    );
}

#[tokio::test]
async fn the_general_limit_applies_per_user() {
    let server = start_with(|config| {
        config.rates.other = rest_sidecar::rate_limit::Rate::new(5, std::time::Duration::from_secs(3_600));
    })
    .await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    for _ in 0..5 {
        assert_eq!(server.get("/api/users/me", &alice.token).await.0, 200);
    }
    assert_error(&server.get("/api/users/me", &alice.token).await, 429, 40001);
    assert_eq!(server.get("/api/users/me", &bob.token).await.0, 200, "bob has his own allowance");
}

#[tokio::test]
async fn oversized_bodies_are_refused_in_the_envelope() {
    let server = start().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let reply = server.post("/api/auth/register", None, json!({"phone": "13800000001", "password": huge})).await;
    assert_error(&reply, 413, 413);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_limit() {
    let server = start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.rates.send_code = rest_sidecar::rate_limit::Rate::new(2, std::time::Duration::from_secs(3_600));
    })
    .await;
    let send = |from: &'static str, phone: &'static str| {
        server
            .http
            .post(format!("{}/api/auth/send-code", server.base))
            .header("x-forwarded-for", from)
            .json(&json!({"phone": phone, "type": "register"}))
            .send()
    };
    assert_eq!(send("203.0.113.1", "13900000001").await.unwrap().status(), 200);
    assert_eq!(send("203.0.113.1", "13900000002").await.unwrap().status(), 200);
    let limited = send("203.0.113.1", "13900000003").await.unwrap();
    assert_eq!(limited.status(), 429, "the third code from one client address");
    assert_eq!(limited.json::<serde_json::Value>().await.unwrap()["code"], 40001);
    // Another client behind the same proxy is not limited with the first.
    assert_eq!(send("203.0.113.2", "13900000004").await.unwrap().status(), 200);
}
