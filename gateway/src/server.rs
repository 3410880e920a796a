//! A gateway node as a server of its own: `/ws`, `/health` and `/metrics`
//! on one listener, and the node's background work (fan-out, sweepers,
//! presence lease) until shutdown.

use std::time::{Duration, Instant};

use router::redis::RedisConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Gateway;

impl Gateway {
    /// The node's HTTP surface: `/ws` plus `/health` and `/metrics`
    /// (`redis` is checked by `/health` when the node is in a cluster).
    pub fn app(&self, redis: Option<RedisConnection>) -> axum::Router {
        let probe = ops::HealthProbe {
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            store: self.inner.services.store().clone(),
            redis,
            // A gateway node keeps no files.
            files_dir: None,
        };
        self.routes()
            .merge(ops::routes(probe, self.inner.config.metrics_access.clone()))
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
    let (served, ()) = tokio::join!(
        ops::serve(listener, app, shutdown.clone(), gateway.inner.config.http),
        gateway.run(shutdown, grace)
    );
    served
}
