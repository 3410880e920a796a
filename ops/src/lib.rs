//! What every Switchboard server serves besides its own API, the same way:
//! `GET /health` (seed 003's body, 503 when a service fails), `GET
//! /metrics` (Prometheus text), request metrics by route, and
//! `X-Request-ID` on every response.
//!
//! [`routes`] gives the two endpoints over a [`HealthProbe`]: the REST
//! sidecar and the gateway each fill one with what they depend on.

mod client_addr;
mod fallback;
mod health;
mod metrics;
mod request_id;
mod serve;

pub use client_addr::client_ip;
pub use fallback::{method_not_allowed, not_found};
pub use health::{HealthProbe, health};
pub use metrics::{MetricsAccess, install_recorder, metrics, track_requests};
pub use request_id::layer as request_id_layer;
pub use serve::{HttpLimits, serve};

use std::sync::Arc;

/// `/health` and `/metrics` over `probe`, with request metrics; `/metrics`
/// only to whom `access` lets in.
pub fn routes(probe: HealthProbe, access: MetricsAccess) -> axum::Router {
    let metrics_route = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(access), metrics::guard));
    axum::Router::new()
        .route("/health", axum::routing::get(health))
        .with_state(Arc::new(probe))
        .merge(metrics_route)
        .route_layer(axum::middleware::from_fn(track_requests))
}

/// `/metrics` alone, for a listener of its own (`--metrics-listen`).
pub fn metrics_routes() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics))
}
