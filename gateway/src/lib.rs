//! The WebSocket gateway: `GET /ws` upgrades (auth by header, query or a
//! first `auth` frame), one task per connection, a registry of live
//! connections by user, a fan-out of router deliveries encoded once per
//! wire format, and a sweeper that closes silent connections.
//!
//! A gateway node is a server of its own: [`run`] serves `/ws`, `/health`
//! and `/metrics` on a listener and drives the node until shutdown. In one
//! process beside the REST API, [`Gateway::routes`] gives the `/ws` route to
//! merge into its router and [`Gateway::run`] drives the fan-out, sweepers
//! and presence lease until shutdown, then closes every connection with 1001.
//! Every command goes to the `service` crate; nothing here knows a
//! business rule.

mod admission;
#[cfg(feature = "bench-support")]
#[doc(hidden)]
pub mod bench_support;
mod budget;
mod calls;
mod codec;
mod commands;
mod connection;
mod fanout;
#[cfg(test)]
mod fixture;
mod heartbeat;
mod meters;
mod outbound;
mod registry;
mod server;
mod sessions;
mod typing;
mod upgrade;
mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use protocol::ErrorCode;
use router::{CallRegistry, PRESENCE_CHANGES_CAPACITY};
use service::Services;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use codec::{decode, decode_as, encode};
pub use protocol::Encoding;
pub use protocol::dialect::Dialect;
pub use protocol::frame::{JSON_PROTOCOL, MSGPACK_PROTOCOL};
pub use server::run;

/// Close codes the gateway uses, each saying why.
pub mod close_codes {
    /// The server is shutting down; reconnect elsewhere or later.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame above the hard size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The `auth` frame carried a bad, expired or revoked token.
    pub const AUTH_FAILED: u16 = 4001;
    /// No `auth` frame arrived in time.
    pub const AUTH_TIMEOUT: u16 = 4002;
    /// Nothing heard from the client for the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// The client did not read its frames fast enough: reconnect and sync.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// This node fell behind the router: reconnect and sync.
    pub const RESYNC: u16 = 4009;
    /// Sustained malformed or unknown frames.
    pub const BAD_FRAMES: u16 = 4400;
    /// Sustained commands above the rate limit.
    pub const TOO_FAST: u16 = 4429;
}

/// Checks access tokens: the service layer's token service, or a stand-in in tests.
pub trait TokenVerifier: Send + Sync + 'static {
    /// The claims of a valid, unrevoked token.
    fn verify(&self, token: &str) -> Result<protocol::Claims, ErrorCode>;
    /// Whether a session opened with `claims` may go on at `now_secs`
    /// (not expired, not revoked, its family not revoked).
    fn still_valid(&self, claims: &protocol::Claims, now_secs: i64) -> bool;
    /// Changes whenever a revocation becomes known; `None` if never.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
}

impl TokenVerifier for service::TokenService {
    fn verify(&self, token: &str) -> Result<protocol::Claims, ErrorCode> {
        service::TokenService::verify(self, token)
    }

    fn still_valid(&self, claims: &protocol::Claims, now_secs: i64) -> bool {
        service::TokenService::still_valid(self, claims, now_secs)
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(service::TokenService::changes(self))
    }
}

/// Limits and timings, with seed 000's heartbeat numbers as defaults.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Told to clients in `connect`; they ping at least this often.
    pub heartbeat_interval: Duration,
    /// A connection silent this long is closed.
    pub heartbeat_timeout: Duration,
    /// How often the sweeper looks for silent connections.
    pub sweep_interval: Duration,
    /// Time a client has to send `auth` when the upgrade carried no token.
    pub auth_timeout: Duration,
    /// Frames above this get an `error` (the connection stays).
    pub max_frame_bytes: usize,
    /// Frames above this close the connection (1009).
    pub hard_frame_bytes: usize,
    /// Frames queued for one connection before it counts as slow (4008).
    /// A reader that keeps up still sees bursts: one group commit
    /// publishes up to a thousand messages at once, and a pause of the
    /// writer (an fsync, a WAL start-over) releases what queued behind it
    /// together. The frames are shared between connections, so a queued
    /// one costs a connection a pointer, not a copy.
    pub outbound_queue: usize,
    /// Concurrent connections this node accepts.
    pub max_connections: usize,
    /// Commands per second per connection (burst: twice that).
    pub commands_per_second: u32,
    /// Commands per second per user, over all of their connections on a
    /// node (burst: twice that); never less than `commands_per_second`.
    pub commands_per_user_per_second: u32,
    /// A typing state ends this long after its last refresh.
    pub typing_expiry: Duration,
    /// Typing refreshes within this long are not announced again.
    pub typing_throttle: Duration,
    /// A call nobody answers ends (`timeout`) after this long.
    pub ring_timeout: Duration,
    /// This node's id in its deployment (0-15): names its devices in call
    /// signalling that crosses nodes.
    pub node_id: u16,
    /// The seed dialects whose WebSocket endpoints this node serves besides `/ws`.
    pub dialects: Vec<Dialect>,
    /// Who may read `/metrics` on a gateway node's listener.
    pub metrics_access: ops::MetricsAccess,
    /// How long HTTP clients (upgrades included) may take.
    pub http: ops::HttpLimits,
    /// Most concurrent WebSocket connections from one client address.
    pub max_per_address: usize,
    /// Most concurrent connections still to authenticate (no token in the
    /// upgrade, `auth` frame awaited), node-wide.
    pub max_unauthenticated: usize,
    /// Proxies whose `X-Forwarded-For` names the client address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            sweep_interval: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            hard_frame_bytes: 1024 * 1024,
            outbound_queue: 4096,
            max_connections: 100_000,
            commands_per_second: 50,
            commands_per_user_per_second: 100,
            typing_expiry: Duration::from_secs(6),
            typing_throttle: Duration::from_secs(3),
            ring_timeout: Duration::from_secs(45),
            node_id: 0,
            dialects: Dialect::ALL.to_vec(),
            metrics_access: ops::MetricsAccess::default(),
            http: ops::HttpLimits::default(),
            max_per_address: 1_000,
            max_unauthenticated: 1_024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The gateway of one node. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    /// The use cases every command runs through; also the router this
    /// node subscribes to and the presence registry it reports to.
    services: Services,
    tokens: Arc<dyn TokenVerifier>,
    registry: registry::Registry,
    typing: typing::Typing,
    calls: calls::Calls,
    /// Live calls of the deployment (this process, or Redis in a cluster).
    call_registry: Arc<dyn CallRegistry>,
    next_connection: AtomicU64,
    /// One permit per live connection: the connection limit.
    permits: Arc<Semaphore>,
    /// Connections per client address.
    addresses: Arc<admission::Addresses>,
    /// One permit per connection still to authenticate.
    unauthenticated: Arc<Semaphore>,
    /// Every live user's command budget.
    budgets: Arc<budget::Budgets>,
    /// Connection tasks, so shutdown can wait for their close frames.
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Time zero of connection heartbeats (tokio time, so tests can pause it).
    epoch: tokio::time::Instant,
}

impl Inner {
    /// The deployment's live calls.
    fn registry_of_calls(&self) -> &dyn CallRegistry {
        self.call_registry.as_ref()
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        services: Services,
        tokens: Arc<dyn TokenVerifier>,
        call_registry: Arc<dyn CallRegistry>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.max_connections)),
                addresses: admission::Addresses::new(config.max_per_address),
                unauthenticated: Arc::new(Semaphore::new(config.max_unauthenticated)),
                // A user may always send at least what one connection may.
                budgets: budget::Budgets::new(config.commands_per_user_per_second.max(config.commands_per_second)),
                config,
                services,
                tokens,
                registry: registry::Registry::default(),
                typing: typing::Typing::default(),
                calls: calls::Calls::default(),
                call_registry,
                next_connection: AtomicU64::new(1),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                epoch: tokio::time::Instant::now(),
            }),
        }
    }

    /// The `/ws` route, and the WebSocket of each configured dialect: seed 000
    /// at `GET /v1?token=`, seed 001 at `GET /api/v1/ws`.
    pub fn routes(&self) -> axum::Router {
        let mut routes = axum::Router::new().route("/ws", axum::routing::get(upgrade::upgrade));
        for &dialect in &self.inner.config.dialects {
            // Seeds 003 and 004 have no socket of their own (004's clients use `/ws`).
            let Some(path) = dialect.socket_path() else { continue };
            let handler = move |State(gateway): State<Gateway>, request: axum::extract::Request| async move {
                upgrade::upgrade_dialect(&gateway, request, dialect)
            };
            routes = routes.route(path, axum::routing::get(handler));
        }
        routes.with_state(self.clone())
    }

    /// Milliseconds since this gateway started, on tokio's clock.
    pub(crate) fn clock_ms(&self) -> i64 {
        i64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Live connections on this node.
    pub fn connections(&self) -> usize {
        self.inner.registry.connections()
    }

    /// Delivers router events and sweeps silent connections until
    /// `shutdown`; then closes every connection with 1001 and waits (up to
    /// `grace`) for their tasks to finish.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let fanout = tokio::spawn(fanout::run(self.clone(), shutdown.clone()));
        // Each domain's state has its own sweeper: connections (heartbeats),
        // typing states, calls.
        let sweepers = [
            tokio::spawn(heartbeat::sweep(self.clone(), shutdown.clone())),
            tokio::spawn(typing::expire(self.clone(), shutdown.clone())),
            tokio::spawn(calls::sweep(self.clone(), shutdown.clone())),
            tokio::spawn(report_stats(self.clone(), shutdown.clone())),
            tokio::spawn(sessions::watch(self.clone(), shutdown.clone())),
        ];
        // Presence outlives the connections, so their goodbyes still reach it.
        let presence_stop = CancellationToken::new();
        let (changes, found) = tokio::sync::mpsc::channel(PRESENCE_CHANGES_CAPACITY);
        let presence = self.inner.services.presence().clone();
        let lease = tokio::spawn({
            let stop = presence_stop.clone();
            async move { presence.run(changes, stop).await }
        });
        let announcer = tokio::spawn(commands::announce_found_presence(self.clone(), found));
        shutdown.cancelled().await;
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!(left = self.inner.tasks.len(), "connections still closing after the grace period");
        }
        presence_stop.cancel();
        let _ = tokio::join!(fanout, futures_util::future::join_all(sweepers), lease, announcer);
    }
}

/// How often a node reports its stats (the server API's `stats` reads them).
const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// Reports this node's connections, online users and send rate every
/// [`STATS_INTERVAL`] until `shutdown`.
async fn report_stats(gateway: Gateway, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let services = &gateway.inner.services;
    let mut last = (std::time::Instant::now(), services.pipeline().sent_count());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = (std::time::Instant::now(), services.pipeline().sent_count());
        let elapsed = now.0.duration_since(last.0).as_secs_f64();
        let rate = if elapsed > 0.0 { (now.1 - last.1) as f64 / elapsed } else { 0.0 };
        last = now;
        let report = router::NodeReport {
            node_id: gateway.inner.config.node_id,
            connections: gateway.inner.registry.connections() as u64,
            users_online: gateway.inner.registry.users() as u64,
            messages_per_second: (rate * 10.0).round() / 10.0,
            at: protocol::time::now_millis(),
        };
        if let Err(error) = services.presence().report(&report).await {
            tracing::debug!(%error, "node stats not reported");
        }
    }
}
