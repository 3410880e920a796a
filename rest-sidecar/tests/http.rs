//! The sidecar over real HTTP on port 0: health in seed 003's shape,
//! Prometheus metrics, request ids and envelope errors.

use std::sync::Arc;

use rest_sidecar::SidecarState;
use serde_json::Value;
use storage::{SqliteConfig, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

struct Server {
    base: String,
    store: SqliteStore,
    files: std::path::PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    rest_sidecar::install_recorder();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let config = rest_sidecar::SidecarConfig {
        version: "test",
        body_limit: 1024,
        ..rest_sidecar::SidecarConfig::new(files.clone(), b"test secret of at least 32 bytes!!".to_vec())
    };
    let services = service::Services::new(
        Arc::new(store.clone()),
        Arc::new(router::LocalRouter::new()),
        Arc::new(router::LocalPresence::new()),
        service::ServiceConfig::default(),
    );
    let state = SidecarState::new(services, Arc::new(rest_sidecar::sms::LogSms), config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(rest_sidecar::run(listener, state, shutdown.clone()));
    Server { base, store, files, shutdown, task, _dir: dir }
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn health_has_the_seed_shape() {
    let server = start().await;
    let response = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["code"], 200);
    let data = &body["data"];
    assert_eq!(data["status"], "healthy");
    assert_eq!(data["version"], "test");
    assert!(data["uptime"].is_u64());
    assert!(protocol::time::from_iso(data["timestamp"].as_str().unwrap()).is_some());
    assert_eq!(data["services"]["database"], "healthy");
    assert_eq!(data["services"]["storage"], "healthy");
    assert_eq!(data["services"]["redis"], "not_configured");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_turns_unhealthy_when_a_service_fails() {
    let server = start().await;
    std::fs::remove_dir(&server.files).unwrap();
    let response = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(response.status(), 503);
    let body = json(response).await;
    assert_eq!(body["data"]["status"], "unhealthy");
    assert_eq!(body["data"]["services"]["storage"], "unhealthy");
    assert_eq!(body["data"]["services"]["database"], "healthy");

    server.store.shutdown().await.unwrap();
    let body = json(reqwest::get(format!("{}/health", server.base)).await.unwrap()).await;
    assert_eq!(body["data"]["services"]["database"], "unhealthy");
    server.shutdown.cancel();
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = start().await;
    reqwest::get(format!("{}/health", server.base)).await.unwrap();
    let response = reqwest::get(format!("{}/metrics", server.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains("switchboard_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    server.shutdown.cancel();
}

#[tokio::test]
async fn request_ids_are_echoed_or_minted() {
    let server = start().await;
    let client = reqwest::Client::new();
    let echoed = client.get(format!("{}/health", server.base)).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
    let first = client.get(format!("{}/health", server.base)).send().await.unwrap();
    let second = client.get(format!("{}/nowhere", server.base)).send().await.unwrap();
    let (first, second) = (&first.headers()["x-request-id"], &second.headers()["x-request-id"]);
    assert!(!first.is_empty());
    assert_ne!(first, second, "every response gets its own id, errors included");
    server.shutdown.cancel();
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope() {
    let server = start().await;
    let client = reqwest::Client::new();

    let missing = client.get(format!("{}/api/nothing", server.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body = json(missing).await;
    assert_eq!(body["code"], 404);
    assert!(body["error"].as_str().unwrap().contains("/api/nothing"));
    assert!(body["timestamp"].is_string());

    let wrong_method = client.delete(format!("{}/health", server.base)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(json(wrong_method).await["code"], 400);
    server.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_lets_the_server_finish() {
    let server = start().await;
    reqwest::get(format!("{}/health", server.base)).await.unwrap();
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
    assert!(reqwest::get(format!("{}/health", server.base)).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn the_demo_client_is_served_at_the_root() {
    let server = start().await;
    let page = reqwest::get(format!("{}/", server.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("<script src=\"/app.js\">"));
    let script = reqwest::get(format!("{}/app.js", server.base)).await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.text().await.unwrap().contains("RTCPeerConnection"));
    let style = reqwest::get(format!("{}/style.css", server.base)).await.unwrap();
    assert_eq!(style.status(), 200);
    server.shutdown.cancel();
}
