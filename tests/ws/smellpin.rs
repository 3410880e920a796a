//! A seed 003 (SmellPin) client, written from its document: SMS-code
//! sign-in, the refresh token in the `Authorization` header, the profile,
//! the direct upload (token, upload to the URL, complete), the system
//! endpoints, and its envelope and error shape (`error.type`, `details`,
//! `timestamp`, `requestId`). Nothing here uses the engine's types.

use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{Value, json};

use crate::dating::PNG_4X3;
use crate::harness::{self, Server};

const KEY: &str = "smellpin-backend-key-0123";

async fn start() -> Server {
    harness::start_with_flags(&["--server-api-key", KEY, "--rate-login-per-15min", "4"], |_| {}).await
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// A call under `/api/v1` with `authorization` (a whole header value).
async fn call_as(
    server: &Server,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = server.http.request(method, format!("{}/api/v1{path}", server.base));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, body }
}

pub(crate) async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let authorization = token.map(|token| format!("Bearer {token}"));
    call_as(server, method, path, authorization.as_deref(), body).await
}

/// The document's envelope around a success.
fn assert_success(answer: &Answer, code: u16) {
    assert_eq!((answer.status, answer.body["code"].as_u64()), (code, Some(u64::from(code))), "{}", answer.body);
    assert!(answer.body["timestamp"].as_str().is_some_and(|at| at.ends_with('Z')), "{}", answer.body);
    assert!(answer.body["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}", answer.body);
}

/// The document's error shape with `status` and `kind`.
fn assert_error(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["code"], status, "{}", answer.body);
    assert_eq!(answer.body["error"]["type"], kind, "{}", answer.body);
    assert!(answer.body["error"]["details"].is_array(), "{}", answer.body);
    assert!(answer.body["message"].is_string() && answer.body["requestId"].is_string(), "{}", answer.body);
}

/// A SmellPin user: the ids are strings.
pub(crate) struct Pinner {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) refresh_token: String,
}

/// 认证授权 1 then 2: a code, then a login with it (the first login registers).
pub(crate) async fn sign_in(server: &Server, phone: &str) -> Pinner {
    let sent =
        call(server, Method::POST, "/auth/send-code", None, Some(json!({"phone": phone, "type": "login"}))).await;
    assert_success(&sent, 200);
    assert_eq!(
        (sent.body["data"]["expires_in"].as_u64(), sent.body["data"]["retry_after"].as_u64()),
        (Some(300), Some(60))
    );
    // The server runs with --dev, which shows the code instead of texting it.
    let code = sent.body["data"]["debug_code"].as_str().unwrap().to_owned();
    let login = call(server, Method::POST, "/auth/login", None, Some(json!({"phone": phone, "code": code}))).await;
    assert_success(&login, 200);
    let data = &login.body["data"];
    let user = &data["user"];
    assert_eq!(user["phone"], phone);
    assert_eq!((user["level"].as_i64(), user["balance"].as_f64()), (Some(1), Some(0.0)), "{user}");
    assert!(data["expires_in"].as_u64().is_some_and(|seconds| seconds > 0));
    Pinner {
        id: user["id"].as_str().expect("ids are strings").to_owned(),
        token: data["access_token"].as_str().unwrap().to_owned(),
        refresh_token: data["refresh_token"].as_str().unwrap().to_owned(),
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

#[tokio::test]
async fn a_smellpin_client_signs_in_refreshes_uploads_directly_and_reads_the_system_endpoints() {
    let server = start().await;
    let pinner = sign_in(&server, "13900000001").await;

    // 3. Refresh: the refresh token in the header, no body; it stays usable.
    for _ in 0..2 {
        let bearer = format!("Bearer {}", pinner.refresh_token);
        let refreshed = call_as(&server, Method::POST, "/auth/refresh", Some(&bearer), None).await;
        assert_success(&refreshed, 200);
        let fresh = refreshed.body["data"]["access_token"].as_str().unwrap();
        assert!(refreshed.body["data"]["expires_in"].as_u64().is_some());
        let profile = call(&server, Method::GET, "/users/profile", Some(fresh), None).await;
        assert_success(&profile, 200);
        assert_eq!(profile.body["data"]["id"], pinner.id.as_str());
    }

    // User management 1 and 2, with the fields the backend sets.
    let change = json!({"nickname": "新昵称", "gender": "female", "birthday": "1995-06-15", "avatar": "/a.jpg"});
    let updated = call(&server, Method::PUT, "/users/profile", Some(&pinner.token), Some(change)).await;
    assert_success(&updated, 200);
    assert_eq!(
        (&updated.body["data"]["nickname"], &updated.body["data"]["gender"], &updated.body["data"]["birthday"]),
        (&json!("新昵称"), &json!("female"), &json!("1995-06-15"))
    );
    let fields = server
        .http
        .put(format!("{}/api/server/users/{}/profile-fields", server.base, pinner.id))
        .header("authorization", format!("apikey {KEY}"))
        .json(&json!({"level": 3, "balance": 128.5, "experience": 1500}))
        .send()
        .await
        .unwrap();
    assert_eq!(fields.status(), 200);
    let profile = call(&server, Method::GET, "/users/profile", Some(&pinner.token), None).await;
    let data = &profile.body["data"];
    assert_eq!(
        (data["level"].as_i64(), data["balance"].as_f64(), data["experience"].as_i64()),
        (Some(3), Some(128.5), Some(1500))
    );
    assert_eq!((&data["gender"], &data["birthday"]), (&json!("female"), &json!("1995-06-15")));

    // File upload 1 and 2: a token, the bytes to its URL, then complete.
    let body = json!({"file_type": "image", "file_size": PNG_4X3.len(), "file_name": "photo.png"});
    let token = call(&server, Method::POST, "/upload/token", Some(&pinner.token), Some(body)).await;
    assert_success(&token, 200);
    let grant = &token.body["data"];
    for field in ["upload_url", "file_key", "policy", "signature", "expires_at"] {
        assert!(grant[field].is_string(), "{field}: {grant}");
    }
    let url = format!("{}{}", server.base, grant["upload_url"].as_str().unwrap());
    let put = server.http.put(&url).body(PNG_4X3.to_vec()).send().await.unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let again = server.http.put(&url).body(PNG_4X3.to_vec()).send().await.unwrap();
    assert_eq!(again.status(), 409, "an upload URL is good once");
    let done = json!({"file_key": grant["file_key"], "file_size": PNG_4X3.len(), "file_hash": md5_hex(&PNG_4X3)});
    let completed = call(&server, Method::POST, "/upload/complete", Some(&pinner.token), Some(done.clone())).await;
    assert_success(&completed, 200);
    let file = &completed.body["data"];
    assert!(file["file_id"].is_string() && file["thumbnail_url"].is_string(), "{file}");
    // Download it with the same session.
    let access_url = format!("{}{}", server.base, file["access_url"].as_str().unwrap());
    let downloaded = server.http.get(&access_url).bearer_auth(&pinner.token).send().await.unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.headers()["content-type"], "image/png");
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), PNG_4X3.as_slice());
    let twice = call(&server, Method::POST, "/upload/complete", Some(&pinner.token), Some(done)).await;
    assert_error(&twice, 404, "RESOURCE_NOT_FOUND");
    // Multipart to the URL, as a form upload to a bucket, works too.
    let body = json!({"file_type": "image", "file_size": PNG_4X3.len(), "file_name": "p.png"});
    let grant =
        call(&server, Method::POST, "/upload/token", Some(&pinner.token), Some(body)).await.body["data"].clone();
    let form = reqwest::multipart::Form::new()
        .text("key", grant["file_key"].as_str().unwrap().to_owned())
        .part("file", reqwest::multipart::Part::bytes(PNG_4X3.to_vec()).file_name("p.png"));
    let url = format!("{}{}", server.base, grant["upload_url"].as_str().unwrap());
    assert_eq!(server.http.post(&url).multipart(form).send().await.unwrap().status(), 200);

    // System 1 to 3.
    let health = call(&server, Method::GET, "/health", None, None).await;
    assert_eq!((health.status, &health.body["data"]["status"]), (200, &json!("healthy")), "{}", health.body);
    assert_eq!(health.body["data"]["services"]["database"], "healthy");
    let info = call(&server, Method::GET, "/health/info", None, None).await;
    assert_success(&info, 200);
    assert_eq!(info.body["data"]["database"]["type"], "sqlite");
    assert_eq!(info.body["data"]["router"]["type"], "memory");
    assert!(info.body["data"]["app"]["version"].is_string() && info.body["data"]["system"]["uptime"].is_u64());
    let config = call(&server, Method::GET, "/config", None, None).await;
    assert_success(&config, 200);
    let data = &config.body["data"];
    assert_eq!(data["rate_limits"]["login"]["count"], 4, "the limits in force: {data}");
    assert!(data["limits"]["max_upload_size"].as_u64().is_some_and(|size| size > 0));
    assert!(data["message_types"].as_array().is_some_and(|types| types.contains(&json!("text"))));

    // Logout: the sign-in ends. Its access token, an access token refreshed
    // from it before, and its refresh token are refused from then on, in the
    // document's shape.
    let bearer = format!("Bearer {}", pinner.refresh_token);
    let refreshed = call_as(&server, Method::POST, "/auth/refresh", Some(&bearer), None).await;
    assert_success(&refreshed, 200);
    let sibling = refreshed.body["data"]["access_token"].as_str().unwrap().to_owned();
    let out = call(&server, Method::POST, "/auth/logout", Some(&pinner.token), None).await;
    assert_success(&out, 200);
    let refused = call(&server, Method::GET, "/users/profile", Some(&pinner.token), None).await;
    assert_error(&refused, 401, "AUTHENTICATION_FAILED");
    let refused = call(&server, Method::GET, "/users/profile", Some(&sibling), None).await;
    assert_error(&refused, 401, "AUTHENTICATION_FAILED");
    let refused = call_as(&server, Method::POST, "/auth/refresh", Some(&bearer), None).await;
    assert_error(&refused, 401, "AUTHENTICATION_FAILED");

    // The rate-limit table, answered in this shape: 4 logins per 15 minutes here.
    let mut last = None;
    for _ in 0..5 {
        let body = json!({"phone": "13900000009", "code": "000000"});
        last = Some(call(&server, Method::POST, "/auth/login", None, Some(body)).await);
    }
    let limited = last.unwrap();
    assert_error(&limited, 429, "RATE_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn every_smellpin_endpoint_refuses_bad_input_in_its_error_shape() {
    let server = start().await;
    let pinner = sign_in(&server, "13900000002").await;
    let token = Some(pinner.token.as_str());
    let post = |path: &'static str, body: Value| {
        let server = &server;
        async move { call(server, Method::POST, path, token, Some(body)).await }
    };

    let bad_phone =
        call(&server, Method::POST, "/auth/send-code", None, Some(json!({"phone": "12", "type": "login"}))).await;
    assert_error(&bad_phone, 400, "VALIDATION_ERROR");
    assert_eq!(bad_phone.body["error"]["details"][0]["field"], "phone", "{}", bad_phone.body);
    let no_code = call(&server, Method::POST, "/auth/login", None, Some(json!({"phone": "13900000002"}))).await;
    assert_error(&no_code, 400, "VALIDATION_ERROR");
    assert_eq!(no_code.body["error"]["details"][0]["field"], "code");
    let wrong_code =
        call(&server, Method::POST, "/auth/login", None, Some(json!({"phone": "13900000002", "code": "000000"}))).await;
    assert_error(&wrong_code, 401, "AUTHENTICATION_FAILED");
    assert_error(&call(&server, Method::POST, "/auth/refresh", None, None).await, 401, "AUTHENTICATION_FAILED");
    let forged = call_as(&server, Method::POST, "/auth/refresh", Some("Bearer not-a-refresh-token"), None).await;
    assert_error(&forged, 401, "AUTHENTICATION_FAILED");
    let access_as_refresh = call(&server, Method::POST, "/auth/refresh", token, None).await;
    assert_error(&access_as_refresh, 401, "AUTHENTICATION_FAILED");
    assert_error(&call(&server, Method::POST, "/auth/logout", None, None).await, 401, "AUTHENTICATION_FAILED");
    assert_error(&call(&server, Method::GET, "/users/profile", None, None).await, 401, "AUTHENTICATION_FAILED");
    let robot = call(&server, Method::PUT, "/users/profile", token, Some(json!({"gender": "robot"}))).await;
    assert_error(&robot, 400, "VALIDATION_ERROR");
    let unborn = call(&server, Method::PUT, "/users/profile", token, Some(json!({"birthday": "2999-01-01"}))).await;
    assert_error(&unborn, 400, "VALIDATION_ERROR");
    assert_eq!(unborn.body["error"]["details"][0]["field"], "birthday");

    let exe = post("/upload/token", json!({"file_type": "exe", "file_size": 10, "file_name": "a.exe"})).await;
    assert_error(&exe, 400, "VALIDATION_ERROR");
    let huge =
        post("/upload/token", json!({"file_type": "image", "file_size": 1u64 << 40, "file_name": "a.png"})).await;
    assert_error(&huge, 413, "FILE_UPLOAD_ERROR");
    // A URL whose signature was tampered with.
    let grant = post("/upload/token", json!({"file_type": "image", "file_size": PNG_4X3.len(), "file_name": "a.png"}))
        .await
        .body["data"]
        .clone();
    let url = format!("{}{}", server.base, grant["upload_url"].as_str().unwrap());
    let tampered = url.replace("signature=", "signature=00");
    let refused = server.http.put(&tampered).body(PNG_4X3.to_vec()).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["type"], "AUTHORIZATION_FAILED");
    // Not the declared size.
    let short = server.http.put(&url).body(PNG_4X3[..10].to_vec()).send().await.unwrap();
    assert_eq!(short.status(), 400);
    let long = server.http.put(&url).body([PNG_4X3.as_slice(), b"more"].concat()).send().await.unwrap();
    assert_eq!(long.status(), 413);
    assert_eq!(long.json::<Value>().await.unwrap()["error"]["type"], "FILE_UPLOAD_ERROR");
    // Not the declared type: text for an image is refused when completed.
    let text = vec![b'a'; PNG_4X3.len()];
    assert_eq!(server.http.put(&url).body(text).send().await.unwrap().status(), 200);
    let done = json!({"file_key": grant["file_key"], "file_size": PNG_4X3.len()});
    let wrong_hash =
        post("/upload/complete", json!({"file_key": grant["file_key"], "file_size": PNG_4X3.len(), "file_hash": "00"}))
            .await;
    assert_error(&wrong_hash, 400, "VALIDATION_ERROR");
    let not_an_image = post("/upload/complete", done).await;
    assert_error(&not_an_image, 400, "FILE_UPLOAD_ERROR");
    let unknown = post("/upload/complete", json!({"file_key": "0".repeat(32), "file_size": 1})).await;
    assert_error(&unknown, 404, "RESOURCE_NOT_FOUND");
    // Someone else cannot complete another user's upload.
    let other = sign_in(&server, "13900000003").await;
    let grant = post("/upload/token", json!({"file_type": "image", "file_size": PNG_4X3.len(), "file_name": "b.png"}))
        .await
        .body["data"]
        .clone();
    let url = format!("{}{}", server.base, grant["upload_url"].as_str().unwrap());
    assert_eq!(server.http.put(&url).body(PNG_4X3.to_vec()).send().await.unwrap().status(), 200);
    let stolen = call(
        &server,
        Method::POST,
        "/upload/complete",
        Some(&other.token),
        Some(json!({"file_key": grant["file_key"], "file_size": PNG_4X3.len()})),
    )
    .await;
    assert_error(&stolen, 404, "RESOURCE_NOT_FOUND");

    // The system endpoints take no input; other methods are refused.
    for path in ["/health", "/health/info", "/config"] {
        assert_eq!(call(&server, Method::DELETE, path, None, None).await.status, 405, "{path}");
    }
    // What is the SmellPin backend's says so.
    for path in ["/annotations", "/annotations/ann_1/like", "/lbs/nearby", "/payments/recharge", "/users/stats"] {
        let answer = call(&server, Method::GET, path, token, None).await;
        assert_error(&answer, 404, "RESOURCE_NOT_FOUND");
        assert!(answer.body["message"].as_str().unwrap().contains("backend"), "{path}: {}", answer.body);
    }
}
