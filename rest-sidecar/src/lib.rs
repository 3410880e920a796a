//! The HTTP side of Switchboard: seed 002's REST API under `/api`, plus
//! health and metrics. Handlers stay thin: the store, the send pipeline
//! and the token service do the work.
//!
//! [`run`] serves on a listener until the shutdown token fires, then
//! stops accepting and lets in-flight requests finish.

mod accounts;
mod dialects;
mod error;
mod extract;
mod passwords;
pub mod rate_limit;
mod routes;
pub mod sms;
mod state;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use protocol::time::now_millis;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiFailure;
pub use ops::install_recorder;
pub use state::{IceConfig, SidecarConfig, SidecarState};

/// Default cap on a JSON request body; uploads have their own limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How often rate-limit, code and denylist state is pruned.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// How long the scheduled-message lease outlives its holder's last
/// extension (it extends it every half second): how soon another process
/// takes over from one that died.
const SCHEDULER_LEASE: Duration = Duration::from_secs(5);

/// `/api`'s routes. `GET /api/notifications` is seed 004's when that
/// dialect is served (the only seed that has it), so it is left out here.
fn api_routes(couple_served: bool) -> Router<SidecarState> {
    use routes::{auth, chats, contacts, files, messages, notifications, users};
    let router = Router::new();
    let router = if couple_served { router } else { router.route("/notifications", get(notifications::list)) };
    router
        .route("/openapi.json", get(openapi))
        .route("/auth/send-code", post(auth::send_code))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/users/me", get(users::me).put(users::update_me))
        .route("/users/{id}", get(users::user))
        .route("/contacts", get(contacts::list).post(contacts::add))
        .route("/contacts/{id}", put(contacts::update).delete(contacts::remove))
        .route("/chats", get(chats::list).post(chats::create))
        .route("/chats/{id}", get(chats::get).put(chats::update))
        .route("/chats/{id}/members", post(chats::add_members))
        .route("/chats/{id}/members/{user_id}", axum::routing::delete(chats::remove_member))
        .route("/chats/{id}/members/{user_id}/role", put(chats::set_role))
        .route("/chats/{id}/leave", post(chats::leave))
        .route("/chats/{id}/settings", put(chats::settings))
        .route("/chats/{id}/messages", get(messages::history).post(messages::send))
        .route("/messages/{id}", put(messages::edit).delete(messages::delete))
        .route("/messages/{id}/read", post(messages::read))
        .route("/messages/{id}/pin", post(messages::pin).delete(messages::unpin))
        .route("/messages/{id}/reactions", post(messages::react))
        .route("/messages/{id}/reactions/{emoji}", axum::routing::delete(messages::unreact))
        .route("/notifications/read-all", post(notifications::read_all))
        .route("/notifications/{id}/read", post(notifications::read))
        .route("/notifications/{id}", axum::routing::delete(notifications::delete))
        .route("/files/{id}", get(files::download).delete(files::delete))
        .route("/files/{id}/thumbnail", get(files::download_thumbnail))
        .route("/calls/ice-servers", get(routes::calls::ice_servers))
}

/// Uploads have their own, larger body limit.
fn upload_routes(limit: u64) -> Router<SidecarState> {
    // Multipart framing on top of the file itself.
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    Router::new().route("/files/upload", post(routes::files::upload)).layer(DefaultBodyLimit::max(limit))
}

/// The OpenAPI 3 document of every route (kept true by `tests/api/openapi.rs`).
const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// What `/health` (and seed 003's `/api/v1/health`) checks.
pub(crate) fn health_probe(state: &SidecarState) -> ops::HealthProbe {
    ops::HealthProbe {
        version: state.config.version,
        started: state.started,
        store: state.store.clone(),
        redis: state.redis.clone(),
        files_dir: Some(state.config.files_dir.clone()),
    }
}

/// Every route the sidecar serves.
pub fn router(state: SidecarState) -> Router {
    let body_limit = state.config.body_limit;
    let couple_served = state.config.dialects.contains(&protocol::dialect::Dialect::Couple);
    let api = api_routes(couple_served)
        // Enforced by the body extractors, so an oversized body is a 413 in
        // the envelope rather than a bare status.
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(upload_routes(state.config.upload_limit))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limit_requests));
    let ops = ops::routes(health_probe(&state), state.config.metrics_access.clone());
    let upload_limit = usize::try_from(state.config.upload_limit).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    let mut dialects = Router::new();
    for dialect in &state.config.dialects {
        dialects = dialects.merge(match dialect {
            protocol::dialect::Dialect::Dating => dialects::dating::routes(body_limit, upload_limit),
            protocol::dialect::Dialect::Simple => dialects::simple::routes(body_limit),
            protocol::dialect::Dialect::SmellPin => dialects::smellpin::routes(body_limit, upload_limit),
            protocol::dialect::Dialect::Couple => dialects::couple::routes(body_limit),
        });
    }
    let dialects = dialects
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limit_requests))
        .layer(axum::middleware::from_fn(dialects::with_request_id));
    let mut app = Router::new().nest("/api", api);
    if !state.config.server_api_keys.is_empty() {
        // Its own body limit and no per-user rate limit: backends are few and trusted.
        let server = routes::server::routes()
            .layer(DefaultBodyLimit::max(body_limit))
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), routes::server::authenticate));
        app = app.merge(server);
    }
    app.merge(dialects)
        .merge(web::routes())
        // Inside routing, so the matched route is known to label by.
        .route_layer(axum::middleware::from_fn(ops::track_requests))
        .with_state(state)
        .merge(ops)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(ops::request_id_layer())
}

/// The general limit of seed 003's table: per user when the request
/// carries a valid token, per client address otherwise.
async fn limit_requests(State(state): State<SidecarState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let key = match extract::bearer(&parts).and_then(|token| state.tokens.verify(token).ok()) {
        Some(claims) => format!("user:{}", claims.sub),
        None => extract::ClientAddr::from_parts(&parts, &state.config.trusted_proxies).key(),
    };
    if let Err(failure) = state.limits.check(rate_limit::Class::Other, &key) {
        return failure.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then
/// stops accepting and waits for in-flight requests. Also runs the
/// scheduled-message releaser and periodic pruning while it serves.
pub async fn run(listener: TcpListener, state: SidecarState, shutdown: CancellationToken) -> std::io::Result<()> {
    run_with(listener, state, Router::new(), shutdown).await
}

/// [`run`], also serving `extra` routes (the gateway's `/ws` in one process).
pub async fn run_with(
    listener: TcpListener,
    state: SidecarState,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // One process of a cluster releases scheduled messages at a time.
    let lease: Arc<dyn router::Lease> = match &state.redis {
        Some(redis) => Arc::new(router::redis::RedisLease::new(redis.clone(), "scheduler", SCHEDULER_LEASE)),
        None => Arc::new(router::SoleLease),
    };
    let pipeline = state.services.pipeline().clone();
    let scheduler = tokio::spawn(service::run_scheduler(pipeline, lease, shutdown.clone()));
    let housekeeping = tokio::spawn(housekeeping(state.clone(), shutdown.clone()));
    // The extra routes get request ids too (the sidecar's own already have them).
    let limits = state.config.http;
    let app = extra.layer(ops::request_id_layer()).merge(router(state));
    let served = ops::serve(listener, app, shutdown.clone(), limits).await;
    let _ = tokio::join!(scheduler, housekeeping);
    served
}

async fn housekeeping(state: SidecarState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                state.limits.prune();
                state.login_backoff.prune();
                state.sms.prune(now_millis());
                state.tokens.prune();
                routes::files::prune_temporary(&state.config.files_dir).await;
                match state.services.notifications.prune().await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "expired notifications pruned"),
                    Err(error) => tracing::warn!(%error, "pruning notifications failed"),
                }
            }
        }
    }
}
