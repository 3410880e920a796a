//! The cluster's Redis implementations of [`crate::Router`],
//! [`crate::PresenceRegistry`], [`crate::CallRegistry`] and
//! [`storage::SeqCounter`], over one shared connection per process.
//!
//! Keys, under a configurable prefix (`sb` by default):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:nodes` | hash | node id -> lease expiry (Redis clock, ms) |
//! | `{p}:node:{n}:users` | set | users with a device on node `n` |
//! | `{p}:user:{u}` | hash | node id -> 1, for each node holding a device of user `u` |
//! | `{p}:seq:{chat}` | string | the chat's last handed-out seq (expires when idle) |
//! | `{p}:node:{n}` | pub/sub channel | deliveries for users on node `n` (MessagePack) |
//!
//! Every multi-key step is a Lua script, so it is atomic and costs one
//! round trip. Scripts name keys they build from arguments, which a single
//! Redis (or a primary with replicas) allows; Redis Cluster would need the
//! keys hash-tagged to one slot.

mod calls;
mod lease;
mod presence;
mod router;
mod scripts;
mod sequencer;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use calls::RedisCalls;
pub use lease::RedisLease;
pub use presence::RedisPresence;
pub use router::RedisRouter;
pub use sequencer::RedisSequencer;

/// How the cluster talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// This process's node id: its pub/sub channel and presence registrations.
    pub node_id: u16,
    /// Prefix of every key and channel, so deployments can share a Redis.
    pub prefix: String,
    /// How long a node's presence registrations outlive its last lease refresh.
    pub lease_ttl: Duration,
    /// How often a node refreshes its lease and looks for dead nodes.
    pub lease_refresh: Duration,
    /// A Redis command that takes longer fails (the caller fails fast).
    pub timeout: Duration,
}

impl RedisConfig {
    /// Defaults for node `node_id` of the Redis at `url`. A node that dies
    /// is noticed within `lease_ttl + lease_refresh` (25 s).
    pub fn new(url: impl Into<String>, node_id: u16) -> Self {
        Self {
            url: url.into(),
            node_id,
            prefix: "sb".into(),
            lease_ttl: Duration::from_secs(20),
            lease_refresh: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    #[error("bad Redis URL {url:?}: {error}")]
    BadUrl { url: String, error: redis::RedisError },
}

/// When a failed Redis call is made again.
#[derive(Debug, Clone, Copy)]
enum Retry {
    /// After any dropped connection: the call is safe to apply twice.
    IfDropped,
    /// Only when the call cannot have reached Redis (the write failed or
    /// nothing was connected): the call must not be applied twice.
    IfUnsent,
}

impl Retry {
    fn allows(self, error: &redis::RedisError) -> bool {
        match self {
            Self::IfDropped => error.is_connection_dropped(),
            Self::IfUnsent => {
                let io = std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
                error.is_connection_refusal()
                    || io.is_some_and(|io| {
                        matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::NotConnected)
                    })
            }
        }
    }
}

/// One process's connection to Redis: a multiplexed connection that
/// reconnects on its own, plus what is needed to open pub/sub connections.
/// Cheap to clone.
#[derive(Clone)]
pub struct RedisConnection {
    client: redis::Client,
    commands: ConnectionManager,
    config: std::sync::Arc<RedisConfig>,
    breaker: std::sync::Arc<Breaker>,
}

/// After Redis fails to answer, calls fail at once for a short while
/// instead of each waiting out the timeout (a partitioned Redis would
/// otherwise cost every send a full timeout); then one call probes again.
#[derive(Debug)]
struct Breaker {
    /// Time zero of `open_until_ms` (tokio's clock, so tests can pause it).
    epoch: tokio::time::Instant,
    /// Calls fail at once until this many ms after `epoch` (0: closed).
    open_until_ms: std::sync::atomic::AtomicU64,
}

/// How long the breaker stays open after a failure.
const BREAKER_OPEN: Duration = Duration::from_millis(500);

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn trip(&self) {
        let until = self.now_ms() + BREAKER_OPEN.as_millis() as u64;
        self.open_until_ms.store(until, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("switchboard_redis_breaker_trips_total").increment(1);
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// A connection to `config.url`. Connecting happens in the background:
    /// a node starts (and serves its local users) while Redis is down, and
    /// cluster operations fail fast until it is back.
    pub fn open(config: RedisConfig) -> Result<Self, RedisSetupError> {
        let bad_url = |error| RedisSetupError::BadUrl { url: config.url.clone(), error };
        // Small requests on a multiplexed connection: without TCP_NODELAY,
        // Nagle's algorithm holds one back until the previous is acked.
        // Keepalive and a user timeout notice a peer that vanished silently.
        let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5));
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive)
            .set_user_timeout(config.timeout * 10);
        let info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(bad_url)?
            .set_tcp_settings(tcp);
        let client = redis::Client::open(info).map_err(bad_url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.timeout);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager).map_err(bad_url)?;
        let breaker =
            Breaker { epoch: tokio::time::Instant::now(), open_until_ms: std::sync::atomic::AtomicU64::new(0) };
        Ok(Self { client, commands, config: std::sync::Arc::new(config), breaker: std::sync::Arc::new(breaker) })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Answers whether Redis answers `PING` now.
    pub async fn ping(&self) -> bool {
        let mut connection = self.commands.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        matches!(tokio::time::timeout(self.config.timeout, ping).await, Ok(Ok(_)))
    }

    /// Runs `invocation`, failing after the configured timeout whatever the
    /// connection is doing (reconnecting included). A connection found
    /// broken (Redis restarted, say) is replaced and the call made once more
    /// when `retry` allows it for that failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        retry: Retry,
    ) -> Result<T, String> {
        if self.breaker.is_open() {
            return Err("Redis is unreachable (retrying in the background)".into());
        }
        let mut connection = self.commands.clone();
        // Twice the timeout: one response timeout plus one reconnect attempt.
        let limit = self.config.timeout * 2;
        let mut outcome = tokio::time::timeout(limit, invocation.invoke_async(&mut connection)).await;
        if let Ok(Err(error)) = &outcome
            && retry.allows(error)
        {
            tracing::debug!(%error, "Redis connection was broken; trying once more on a new one");
            outcome = tokio::time::timeout(limit, invocation.invoke_async(&mut connection)).await;
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout() {
                    self.breaker.trip();
                }
                Err(error.to_string())
            }
            Err(_) => {
                self.breaker.trip();
                Err("Redis did not answer in time".into())
            }
        }
    }

    /// Runs a script of another crate (the webhook outbox) under the same
    /// timeout, breaker and one retry on a dropped connection; the script
    /// must be safe to run twice.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        self.run(invocation, Retry::IfDropped).await
    }

    /// A call of `script` whose first arguments are the key prefix and this
    /// node's id, as the node-scoped scripts take them.
    fn node_call<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.config.prefix).arg(self.config.node_id);
        invocation
    }

    fn key(&self, parts: std::fmt::Arguments<'_>) -> String {
        format!("{}:{parts}", self.config.prefix)
    }
}
