//! A real sidecar on 127.0.0.1:0 over a fresh SQLite store, real HTTP
//! clients, and a subscription to the router to see published events.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rest_sidecar::{SidecarConfig, SidecarState};
use router::{LocalRouter, Router, Subscription};
use serde_json::{Value, json};
use storage::{SqliteConfig, SqliteStore};
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &[u8] = b"test secret of at least 32 bytes!!";
/// The server API key of the test servers.
pub(crate) const SERVER_KEY: &str = "test-server-api-key";

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) events: Subscription,
    pub(crate) store: SqliteStore,
    shutdown: CancellationToken,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn start() -> Server {
    start_with(|_| {}).await
}

pub(crate) async fn start_with(configure: impl FnOnce(&mut SidecarConfig)) -> Server {
    rest_sidecar::install_recorder();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut config = SidecarConfig {
        dev: true,
        server_api_keys: vec![SERVER_KEY.to_owned()],
        ..SidecarConfig::new(files, SECRET.to_vec())
    };
    configure(&mut config);
    let router = LocalRouter::new();
    let events = router.subscribe();
    let state = SidecarState::new(services(&store, Arc::new(router)), Arc::new(rest_sidecar::sms::LogSms), config)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(rest_sidecar::run(listener, state, shutdown.clone()));
    Server { base, http: reqwest::Client::new(), events, store, shutdown, dir }
}

/// The service layer over `store` on one node.
pub(crate) fn services(store: &SqliteStore, router: Arc<dyn Router>) -> service::Services {
    let presence = Arc::new(router::LocalPresence::new());
    service::Services::new(Arc::new(store.clone()), router, presence, service::ServiceConfig::default())
}

/// A registered user with live tokens.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) phone: String,
    pub(crate) token: String,
}

impl Server {
    /// Sends a request; answers the status and the JSON body (Null if none).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let authorization = token.map(|token| format!("Bearer {token}"));
        self.request(method, path, authorization.as_deref(), body).await
    }

    /// [`call`](Self::call) with an `Authorization` header as given.
    pub(crate) async fn call_as(
        &self,
        method: Method,
        path: &str,
        authorization: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, Some(authorization), body).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub(crate) async fn register(&self, phone: &str, username: &str) -> User {
        let body = json!({"phone": phone, "username": username, "password": "password123", "nickname": username});
        let (status, reply) = self.post("/api/auth/register", None, body).await;
        assert_eq!(status, 200, "{reply}");
        User {
            id: reply["data"]["user"]["id"].as_i64().unwrap(),
            phone: phone.to_owned(),
            token: reply["data"]["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A group owned by `owner` with `members`; answers its id.
    pub(crate) async fn group(&self, owner: &User, members: &[&User]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|user| user.id).collect();
        let (status, reply) =
            self.post("/api/chats", Some(&owner.token), json!({"type": "group", "name": "team", "members": ids})).await;
        assert_eq!(status, 200, "{reply}");
        reply["data"]["id"].as_i64().unwrap()
    }

    pub(crate) async fn send(&self, user: &User, chat: i64, text: &str) -> Value {
        let (status, reply) =
            self.post(&format!("/api/chats/{chat}/messages"), Some(&user.token), json!({"content": text})).await;
        assert_eq!(status, 200, "{reply}");
        reply["data"].clone()
    }

    /// The next published event of `kind`, skipping others (5 s at most).
    pub(crate) async fn event(&mut self, kind: &str) -> Published {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} event within 5 s"))
                .unwrap();
            if delivery.frame.kind() == kind {
                let event = delivery.frame.to_event().expect("a published frame reads as an envelope");
                return Published { recipients: delivery.recipients.clone(), event };
            }
        }
    }

    /// Drops events published so far.
    pub(crate) fn drain_events(&mut self) {
        while self.events.try_recv().is_ok() {}
    }
}

/// A published event, read back as a client would.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) recipients: Vec<i64>,
    pub(crate) event: protocol::Event,
}

/// Asserts an error envelope with `status` and business `code`.
#[track_caller]
pub(crate) fn assert_error(reply: &(StatusCode, Value), status: u16, code: u32) {
    assert_eq!(reply.0.as_u16(), status, "{}", reply.1);
    assert_eq!(reply.1["code"], code, "{}", reply.1);
    assert!(
        reply.1["error"].is_string() && reply.1["message"].is_string() && reply.1["timestamp"].is_string(),
        "{}",
        reply.1
    );
}
