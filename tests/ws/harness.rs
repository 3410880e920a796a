use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway::GatewayConfig;
use protocol::Event;
use router::Router;
use serde_json::{Value, json};
use switchboard::Config;
use switchboard::cli::Cli;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) ws: String,
    pub(crate) http: reqwest::Client,
    pub(crate) router: Arc<dyn Router>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn start() -> Server {
    start_with(|_| {}).await
}

pub(crate) async fn start_with(configure: impl FnOnce(&mut GatewayConfig)) -> Server {
    start_with_flags(&[], configure).await
}

/// A server started with more command-line `flags`.
pub(crate) async fn start_with_flags(flags: &[&str], configure: impl FnOnce(&mut GatewayConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // The process as `switchboard serve --dev` runs it, through the same composition root.
    let mut args = vec!["switchboard", "serve", "--dev", "--data-dir", data_dir, "--jwt-secret", SECRET];
    args.extend_from_slice(flags);
    let cli = Cli::parse_from(args);
    let (role, args) = cli.command.expect("serve").into_parts();
    let mut config = Config::from_args(args).unwrap();
    configure(&mut config.gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let node = Box::pin(switchboard::start(role, config, listener, shutdown.clone())).await.unwrap();
    let router = node.router().clone();
    tokio::spawn(node.wait());
    Server {
        base: format!("http://{addr}"),
        ws: format!("ws://{addr}/ws"),
        http: reqwest::Client::new(),
        router,
        shutdown,
        _dir: dir,
    }
}

/// The signing key of the test servers.
const SECRET: &str = "test secret of at least 32 bytes!!";

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) token: String,
}

impl Server {
    pub(crate) async fn api(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Value {
        api(&self.http, &self.base, method, path, token, body).await
    }

    pub(crate) async fn register(&self, phone: &str, name: &str) -> User {
        register(&self.http, &self.base, phone, name).await
    }

    pub(crate) async fn chat(&self, owner: &User, kind: &str, members: &[&User]) -> i64 {
        chat(&self.http, &self.base, owner, kind, members).await
    }

    /// A client authenticated by the upgrade's bearer header.
    /// Alice and Bob, registered, with a chat of `kind` that Alice made for both.
    pub(crate) async fn pair(&self, kind: &str) -> (User, User, i64) {
        let alice = self.register("13800000001", "alice").await;
        let bob = self.register("13800000002", "bob").await;
        let chat = self.chat(&alice, kind, &[&bob]).await;
        (alice, bob, chat)
    }

    /// A client authenticated by the upgrade's bearer header, once the
    /// server has greeted it with `connect`: only from then on is it
    /// registered, so that events for its user reach it.
    pub(crate) async fn connect(&self, user: &User) -> Client {
        greeted(self.connect_with(Some(&user.token), None).await.unwrap()).await
    }

    pub(crate) async fn connect_with(&self, token: Option<&str>, protocol: Option<&str>) -> Result<Client, WsError> {
        connect_url(&self.ws, token, protocol).await
    }
}

/// A REST call to the server at `base`; answers the body.
pub(crate) async fn api(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> Value {
    let response = http.request(method, format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
    response.json().await.unwrap()
}

/// One sample of the `/metrics` of the server at `base`: `series` is a
/// metric's name with its labels as the exposition writes them, e.g.
/// `switchboard_ws_commands_total{type="message.send"}` (0 when not
/// counted yet).
pub(crate) async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Registers a user with the REST API at `base`.
pub(crate) async fn register(http: &reqwest::Client, base: &str, phone: &str, name: &str) -> User {
    let body = json!({"phone": phone, "username": name, "password": "password123"});
    let reply: Value =
        http.post(format!("{base}/api/auth/register")).json(&body).send().await.unwrap().json().await.unwrap();
    User {
        id: reply["data"]["user"]["id"].as_i64().unwrap_or_else(|| panic!("{reply}")),
        token: reply["data"]["access_token"].as_str().unwrap().into(),
    }
}

/// A chat of `kind` that `owner` makes for `members`, through the REST API at `base`.
pub(crate) async fn chat(http: &reqwest::Client, base: &str, owner: &User, kind: &str, members: &[&User]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|user| user.id).collect();
    let reply =
        api(http, base, reqwest::Method::POST, "/api/chats", &owner.token, json!({"type": kind, "members": ids})).await;
    reply["data"]["id"].as_i64().unwrap_or_else(|| panic!("{reply}"))
}

/// A client of the gateway at `ws` (a `ws://…/ws` URL), authenticated by
/// the upgrade's bearer header when `token` is given.
pub(crate) async fn connect_url(ws: &str, token: Option<&str>, protocol: Option<&str>) -> Result<Client, WsError> {
    let mut request = ws.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    }
    if let Some(protocol) = protocol {
        request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(protocol).unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    let binary = response.headers().get("sec-websocket-protocol").is_some_and(|p| p == "switchboard.msgpack");
    Ok(Client { socket, binary, next_id: 0 })
}

/// `client` after its first frame, which must be the server's `connect`.
pub(crate) async fn greeted(mut client: Client) -> Client {
    let first = client.next().await;
    assert_eq!(first.kind, "connect", "the first frame is the greeting: {first:?}");
    client
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Client {
    pub(crate) socket: Socket,
    pub(crate) binary: bool,
    next_id: u64,
}

pub(crate) const WAIT: Duration = Duration::from_secs(5);

impl Client {
    /// A client over an already upgraded `socket` that speaks JSON.
    pub(crate) fn wrap(socket: Socket) -> Self {
        Self { socket, binary: false, next_id: 0 }
    }

    /// Sends a command; answers its id.
    pub(crate) async fn send(&mut self, kind: &str, data: Value) -> String {
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        let event = json!({"type": kind, "id": id, "data": data});
        let frame = if self.binary {
            let event: Event = serde_json::from_value(event).unwrap();
            Message::Binary(rmp_serde::to_vec_named(&event).unwrap().into())
        } else {
            Message::Text(event.to_string().into())
        };
        self.socket.send(frame).await.unwrap();
        id
    }

    pub(crate) async fn send_raw(&mut self, frame: Message) {
        self.socket.send(frame).await.unwrap();
    }

    /// The next event (5 s at most).
    pub(crate) async fn next(&mut self) -> Event {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next()).await.expect("no frame within 5 s");
            match frame.expect("connection ended").expect("read failed") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Binary(bytes) => {
                    assert!(self.binary, "binary frame on a JSON connection");
                    return rmp_serde::from_slice(&bytes).unwrap();
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next event of `kind`, skipping others.
    pub(crate) async fn expect(&mut self, kind: &str) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} event in time"));
            if event.kind == kind {
                return event;
            }
        }
    }

    /// The reply to command `id` (skipping pushed events).
    pub(crate) async fn reply(&mut self, id: &str) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event =
                tokio::time::timeout_at(deadline, self.next()).await.unwrap_or_else(|_| panic!("no reply to {id}"));
            if event.reference.as_deref() == Some(id) {
                return event;
            }
        }
    }

    /// Asserts nothing of `kind` arrives within `within`.
    pub(crate) async fn quiet(&mut self, kind: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let Message::Text(text) = frame {
                let event: Event = serde_json::from_str(text.as_str()).unwrap();
                assert_ne!(event.kind, kind, "unexpected {kind}: {event:?}");
            }
        }
    }

    /// Reads until the server closes; answers the close code (None if the
    /// socket just ended).
    pub(crate) async fn closed(&mut self, within: Duration) -> Option<CloseCode> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await.expect("not closed in time") {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Reading a socket until the server closes it.
pub(crate) trait NextClose {
    /// The close frame's code and reason, or `None` when the socket just ended.
    async fn next_close(&mut self) -> Option<(u16, String)>;
}

impl NextClose for Socket {
    async fn next_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// `value` as a `/ws?compact=1` connection gets it: every object member
/// whose value is `false`, a zero, `""`, `null` or `[]` left out, at every
/// depth (written here independently of the server's serializer).
pub(crate) fn pruned(value: &Value) -> Value {
    let is_default = |value: &Value| match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(_) => false,
    };
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(_, value)| !is_default(value))
                .map(|(key, value)| (key.clone(), pruned(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}
