//! A gateway node as a server of its own: `/ws`, `/health` and `/metrics`
//! on one listener, and the node's background work (fan-out, sweepers,
//! presence lease) until shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use router::redis::RedisConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Gateway;

/// What a gateway node's health depends on: the store and, in a cluster, Redis.
struct GatewayHealth {
    gateway: Gateway,
    redis: Option<RedisConnection>,
    started: Instant,
}

#[async_trait::async_trait]
impl ops::HealthProbe for GatewayHealth {
    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn started(&self) -> Instant {
        self.started
    }

    async fn database(&self) -> bool {
        match self.gateway.inner.services.store().health().await {
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
        // A gateway node keeps no files.
        None
    }
}

impl Gateway {
    /// The node's HTTP surface: `/ws` plus `/health` and `/metrics`
    /// (`redis` is checked by `/health` when the node is in a cluster).
    pub fn app(&self, redis: Option<RedisConnection>) -> axum::Router {
        let probe = GatewayHealth { gateway: self.clone(), redis, started: Instant::now() };
        self.routes()
            .merge(ops::routes(Arc::new(probe)))
            .fallback(ops::not_found)
            .method_not_allowed_fallback(ops::method_not_allowed)
            .layer(ops::request_id_layer())
    }
}

/// Serves `gateway` as a node of its own on `listener` until `shutdown`:
/// then stops accepting, closes every connection with 1001 and waits up to
/// `grace` for them.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    redis: Option<RedisConnection>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let app = gateway.app(redis);
    let (served, ()) = tokio::join!(ops::serve(listener, app, shutdown.clone()), gateway.run(shutdown, grace));
    served
}
