use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use protocol::time::{now_millis, to_iso};
use router::redis::RedisConnection;
use serde::Serialize;
use storage::Store;

/// What a server's health depends on: the store always, Redis in a
/// cluster, and the files dir where the server keeps uploads.
#[derive(Clone)]
pub struct HealthProbe {
    /// Reported as `version`.
    pub version: &'static str,
    /// When the server started serving (for `uptime`).
    pub started: Instant,
    pub store: Arc<dyn Store>,
    pub redis: Option<RedisConnection>,
    pub files_dir: Option<PathBuf>,
}

impl std::fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthProbe").field("version", &self.version).finish_non_exhaustive()
    }
}

impl HealthProbe {
    async fn database(&self) -> bool {
        match self.store.health().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "health: database check failed");
                false
            }
        }
    }

    async fn redis(&self) -> Option<bool> {
        match &self.redis {
            Some(redis) => Some(redis.ping().await),
            None => None,
        }
    }

    async fn storage(&self) -> Option<bool> {
        let dir = self.files_dir.as_ref()?;
        Some(tokio::fs::metadata(dir).await.is_ok_and(|meta| meta.is_dir() && !meta.permissions().readonly()))
    }
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
pub async fn health(State(probe): State<Arc<HealthProbe>>) -> (StatusCode, Json<impl Serialize>) {
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
            version: probe.version,
            uptime: probe.started.elapsed().as_secs(),
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
