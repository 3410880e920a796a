use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use protocol::time::{now_millis, to_iso};
use serde::Serialize;

use crate::SidecarState;

/// Seed 003's health body.
#[derive(Debug, Serialize)]
pub(crate) struct Health {
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

async fn files_dir_usable(dir: &Path) -> bool {
    tokio::fs::metadata(dir).await.is_ok_and(|meta| meta.is_dir() && !meta.permissions().readonly())
}

/// `GET /health`: 200 when every configured service answers, 503 (same
/// body shape) when one does not. Services that are not configured say so.
pub(crate) async fn health(State(state): State<SidecarState>) -> (StatusCode, Json<HealthEnvelope>) {
    let database = match state.store.health().await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "health: database check failed");
            false
        }
    };
    let storage = files_dir_usable(&state.config.files_dir).await;
    let redis = match &state.redis {
        Some(redis) => Some(redis.ping().await),
        None => None,
    };
    let healthy = database && storage && redis != Some(false);
    let redis = redis.map_or("not_configured", verdict);
    let now = to_iso(now_millis());
    let body = HealthEnvelope {
        code: if healthy { 200 } else { 503 },
        message: if healthy { "系统正常" } else { "service unhealthy" },
        data: Health {
            status: verdict(healthy),
            timestamp: now.clone(),
            version: state.config.version,
            uptime: state.started.elapsed().as_secs(),
            services: Services { database: verdict(database), redis, storage: verdict(storage) },
        },
        timestamp: now,
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
