use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use protocol::time::{now_millis, to_iso};
use serde::Serialize;

/// What a server's health depends on. `None` for a service it does not use.
#[async_trait::async_trait]
pub trait HealthProbe: Send + Sync + 'static {
    /// Reported as `version`.
    fn version(&self) -> &'static str;
    /// When the server started serving (for `uptime`).
    fn started(&self) -> Instant;
    /// Whether the store answers.
    async fn database(&self) -> bool;
    /// Whether Redis answers, in cluster mode.
    async fn redis(&self) -> Option<bool>;
    /// Whether uploaded files can be kept, where the server keeps them.
    async fn storage(&self) -> Option<bool>;
}

/// Seed 003's health body.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    timestamp: String,
    version: &'static str,
    /// Seconds since the process started serving.
    uptime: u64,
    services: Services,
}

#[derive(Debug, Serialize)]
struct Services {
    database: &'static str,
    redis: &'static str,
    storage: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct HealthEnvelope {
    code: u16,
    message: &'static str,
    data: Health,
    timestamp: String,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "healthy" } else { "unhealthy" }
}

/// `GET /health`: 200 when every configured service answers, 503 (same
/// body shape) when one does not. Services that are not configured say so.
pub async fn health(State(probe): State<Arc<dyn HealthProbe>>) -> (StatusCode, Json<impl Serialize>) {
    let database = probe.database().await;
    let storage = probe.storage().await;
    let redis = probe.redis().await;
    let healthy = database && storage != Some(false) && redis != Some(false);
    let now = to_iso(now_millis());
    let body = HealthEnvelope {
        code: if healthy { 200 } else { 503 },
        message: if healthy { "系统正常" } else { "service unhealthy" },
        data: Health {
            status: verdict(healthy),
            timestamp: now.clone(),
            version: probe.version(),
            uptime: probe.started().elapsed().as_secs(),
            services: Services {
                database: verdict(database),
                redis: redis.map_or("not_configured", verdict),
                storage: storage.map_or("not_configured", verdict),
            },
        },
        timestamp: now,
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
