//! The HTTP side of Switchboard: health, metrics and (as it grows) seed
//! 002's REST API. Handlers stay thin; the store and router do the work.
//!
//! [`run`] serves on a listener until the shutdown token fires, then
//! stops accepting and lets in-flight requests finish.

mod error;
mod health;
mod metrics_endpoint;
mod request_id;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use storage::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

pub use error::ApiFailure;
pub use metrics_endpoint::install_recorder;

/// Default cap on a request body: JSON APIs need far less; uploads get
/// their own, larger limit on their route.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What the sidecar is configured with.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Reported by `/health`.
    pub version: &'static str,
    /// Where uploaded files live; `/health` reports it as `storage`.
    pub files_dir: PathBuf,
    /// The Redis URL in cluster mode; `None` on the embedded default.
    pub redis_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
}

/// Shared state of the HTTP handlers: a cheap handle over `Arc`s.
#[derive(Clone)]
pub struct SidecarState {
    store: Arc<dyn Store>,
    config: Arc<SidecarConfig>,
    started: Instant,
}

impl std::fmt::Debug for SidecarState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarState").field("config", &self.config).finish_non_exhaustive()
    }
}

impl SidecarState {
    /// State over `store` with `config`; uptime counts from now.
    pub fn new(store: Arc<dyn Store>, config: SidecarConfig) -> Self {
        Self { store, config: Arc::new(config), started: Instant::now() }
    }
}

/// Every route the sidecar serves.
pub fn router(state: SidecarState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics_endpoint::metrics))
        // Inside routing, so the matched route is known to label by.
        .route_layer(axum::middleware::from_fn(metrics_endpoint::track_requests))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(request_id::layer())
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then
/// stops accepting and waits for in-flight requests.
pub async fn run(listener: TcpListener, state: SidecarState, shutdown: CancellationToken) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "http listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
