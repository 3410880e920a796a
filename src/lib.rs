//! Switchboard's composition root: [`run`] builds one process of a role
//! (gateway and sidecar together, or one half of a cluster) from its
//! [`Config`] and serves it on a listener until shutdown. The binary, the
//! integration tests and the bench all start the engine through it.

pub mod cli;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway::{Gateway, GatewayConfig};
use rest_sidecar::rate_limit::{Rate, RateConfig};
use rest_sidecar::sms::LogSms;
use rest_sidecar::{IceConfig, SidecarConfig, SidecarState};
use router::redis::{RedisCalls, RedisConfig, RedisConnection, RedisPresence, RedisRouter, RedisSequencer};
use router::{CallRegistry, LocalCalls, LocalPresence, LocalRouter, PresenceRegistry, Router};
use service::{ServiceConfig, Services, TokenService};
use storage::{ScyllaConfig, ScyllaStore, SqliteConfig, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cli::StoreKind;
pub use cli::{Role, ServeArgs};

const HOUR: Duration = Duration::from_secs(3_600);

impl Role {
    /// The subcommand that runs this role.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "serve",
            Self::Gateway => "gateway",
            Self::Sidecar => "sidecar",
        }
    }
}

/// The parts that differ between one process and a cluster.
struct Cluster {
    router: Arc<dyn Router>,
    presence: Arc<dyn PresenceRegistry>,
    /// Redis's side of the router, which reads this node's channel.
    subscriber: Option<RedisRouter>,
    /// Redis's presence registry (the same one as `presence`), which claims the node id.
    registrations: Option<RedisPresence>,
    redis: Option<RedisConnection>,
}

impl Cluster {
    fn new(args: &ServeArgs) -> anyhow::Result<Self> {
        let Some(url) = &args.redis_url else {
            return Ok(Self {
                router: Arc::new(LocalRouter::new()),
                presence: Arc::new(LocalPresence::new()),
                subscriber: None,
                registrations: None,
                redis: None,
            });
        };
        let config = RedisConfig { prefix: args.redis_prefix.clone(), ..RedisConfig::new(url.clone(), args.node_id) };
        let redis = RedisConnection::open(config)?;
        let router = RedisRouter::new(redis.clone());
        let registrations = RedisPresence::new(redis.clone());
        Ok(Self {
            router: Arc::new(router.clone()),
            presence: Arc::new(registrations.clone()),
            subscriber: Some(router),
            registrations: Some(registrations),
            redis: Some(redis),
        })
    }
}

/// What a process runs with: its flags, and the two servers'
/// configurations built from them (tests adjust the timings flags do not
/// reach).
#[derive(Debug, Clone)]
pub struct Config {
    pub args: ServeArgs,
    pub gateway: GatewayConfig,
    pub sidecar: SidecarConfig,
}

impl Config {
    /// The configuration `args` describe (creates the data dir, and reads or
    /// makes the JWT secret file there when no secret is given).
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        // The secret file and the store live there.
        std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
        let files_dir = args.data_dir.join("files");
        Ok(Self { gateway: gateway_config(&args), sidecar: sidecar_config(&args, files_dir)?, args })
    }
}

/// A running process: what tests reach into, and the task to wait for.
pub struct Node {
    router: Arc<dyn Router>,
    finished: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl Node {
    /// The router this process publishes through (tests inject deliveries).
    pub fn router(&self) -> &Arc<dyn Router> {
        &self.router
    }

    /// Waits until the process has shut down and flushed its store.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.finished.await.context("the node's task panicked")?
    }
}

/// Runs one process of `role` on `listener` until `shutdown`, then drains
/// and flushes: `All` is the gateway and the sidecar over one store;
/// `Gateway` and `Sidecar` are the halves of a cluster, routed through
/// Redis. The one composition root: `main`, the tests and the bench all
/// come through here.
pub async fn run(role: Role, config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(role, config, listener, shutdown).await?.wait().await
}

/// [`run`], answering once the process serves.
pub async fn start(
    role: Role,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Node> {
    ops::install_recorder();
    let Config { args, gateway: gateway_config, sidecar: config } = config;
    let node_id = args.node_id;
    let cluster = Cluster::new(&args)?;
    let store = open_store(&args, cluster.redis.as_ref()).await?;
    let files_dir = config.files_dir.clone();
    tokio::fs::create_dir_all(&files_dir).await.with_context(|| format!("creating {}", files_dir.display()))?;
    if let (Some(redis), Some(registrations)) = (&cluster.redis, &cluster.registrations) {
        if !redis.ping().await {
            tracing::warn!(url = args.redis_url.as_deref(), "Redis is not answering; serving local users and retrying");
        } else if role != Role::Sidecar {
            // Two live nodes with one id would undo each other's presence.
            match registrations.claim().await {
                Err(error @ router::PresenceError::NodeIdInUse(_)) => return Err(error.into()),
                Err(error) => tracing::warn!(%error, "could not check that this node id is free"),
                Ok(()) => {}
            }
        }
    }

    let addr = listener.local_addr()?;
    tracing::info!(%addr, role = role.name(), node_id, cluster = cluster.redis.is_some(), data_dir = %args.data_dir.display(), dev = args.dev, version = env!("CARGO_PKG_VERSION"), "switchboard serving");

    let service_config = ServiceConfig {
        notification_retention_ms: i64::from(args.notification_retention_days) * 86_400 * 1000,
        max_group_members: args.max_group_members.max(2),
        ..ServiceConfig::default()
    };
    let services = Services::new(store.clone(), cluster.router.clone(), cluster.presence.clone(), service_config);
    let (services, webhooks) = with_webhooks(&args, &cluster, services)?;
    // One token service per process: the sidecar issues and revokes with
    // it, the gateway verifies with it, so a logout here is refused here at once.
    let tokens = TokenService::load(store.clone(), &config.jwt_secret, config.access_ttl, config.refresh_ttl)
        .await
        .context("loading auth state")?
        .with_reuse_grace(Duration::from_secs(args.refresh_reuse_grace_secs));
    let calls: Arc<dyn CallRegistry> = match &cluster.redis {
        Some(redis) => Arc::new(RedisCalls::new(redis.clone())),
        None => Arc::new(LocalCalls::new()),
    };
    let gateway = Gateway::new(gateway_config, services.clone(), Arc::new(tokens.clone()), calls);
    let sidecar = || {
        let state = SidecarState::with_tokens(services.clone(), tokens.clone(), Arc::new(LogSms), config.clone());
        match &cluster.redis {
            Some(redis) => state.with_redis(redis.clone()),
            None => state,
        }
    };
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let router = cluster.router.clone();
    // Every background task of the process, drained on shutdown.
    let tasks = TaskTracker::new();
    let mut http = match role {
        Role::All => {
            tasks.spawn(gateway.clone().run(shutdown.clone(), grace));
            tokio::spawn(rest_sidecar::run_with(listener, sidecar(), gateway.routes(), shutdown.clone()))
        }
        Role::Gateway => tokio::spawn(gateway::run(listener, gateway, cluster.redis.clone(), shutdown.clone(), grace)),
        Role::Sidecar => tokio::spawn(rest_sidecar::run(listener, sidecar(), shutdown.clone())),
    };
    // A sidecar holds no connections: it publishes, and reads nothing.
    if let Some(subscriber) = cluster.subscriber.filter(|_| role != Role::Sidecar) {
        tasks.spawn(subscriber.run(shutdown.clone()));
    }
    if let Some(addr) = args.metrics_listen {
        tasks
            .spawn(serve_metrics(TcpListener::bind(addr).await.context("binding --metrics-listen")?, shutdown.clone()));
    }
    if let Some((config, outbox, events)) = webhooks {
        tasks.spawn(webhooks::run(config, outbox, events, shutdown.clone()));
    }
    // Logouts on other processes reach this one through the store.
    if cluster.redis.is_some() {
        let (tokens, shutdown) = (tokens.clone(), shutdown.clone());
        tasks.spawn(async move { tokens.follow_revocations(REVOCATION_POLL, shutdown).await });
    }
    tasks.close();
    let finished = tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => tracing::info!("shutting down: no new connections"),
            finished = &mut http => {
                // The server stopped on its own: that is a failure to report.
                shutdown.cancel();
                drain(&tasks, grace).await;
                store.shutdown().await.ok();
                return match finished {
                    Ok(Ok(())) => Err(anyhow::anyhow!("http server stopped unexpectedly")),
                    Ok(Err(error)) => Err(error).context("http server failed"),
                    Err(error) => Err(error).context("http server task panicked"),
                };
            }
        }
        // WebSocket clients get 1001 first: every acknowledged write is already durable.
        drain(&tasks, grace).await;
        match tokio::time::timeout(grace, &mut http).await {
            Ok(Ok(Ok(()))) => tracing::info!("http drained"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "http server ended with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "http server task panicked"),
            // Not aborted: the requests still running end with the runtime, after the store is flushed.
            Err(_) => tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still in flight after the grace period; closing them"
            ),
        }
        store.shutdown().await.context("flushing the store")?;
        tracing::info!("store flushed; bye");
        Ok(())
    });
    Ok(Node { router, finished })
}

/// `/metrics` alone on a listener of its own until `shutdown`.
async fn serve_metrics(listener: TcpListener, shutdown: CancellationToken) {
    if let Err(error) = ops::serve(listener, ops::metrics_routes(), shutdown, ops::HttpLimits::default()).await {
        tracing::warn!(%error, "the metrics listener stopped");
    }
}

/// Waits up to `grace` for the process's background tasks, and says how
/// many were still running when it gave up.
async fn drain(tasks: &TaskTracker, grace: Duration) {
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(still_running = tasks.len(), "background tasks still running after the grace period");
    }
}

/// The store `args` name: SQLite in the data dir, or a ScyllaDB cluster.
/// The store `args` name. SQLite sequences inside its write transaction,
/// which serialises every process sharing the file; a ScyllaDB keyspace
/// written by a cluster takes its seqs from Redis.
async fn open_store(args: &ServeArgs, redis: Option<&RedisConnection>) -> anyhow::Result<Arc<dyn Store>> {
    let node_id = args.node_id;
    match args.store {
        StoreKind::Sqlite => {
            let data_dir = args.data_dir.clone();
            let shared = args.redis_url.is_some();
            let sqlite = tokio::task::spawn_blocking(move || {
                // With Redis, other nodes of the cluster may share the file.
                SqliteStore::open(&SqliteConfig { node_id, shared, ..SqliteConfig::new(data_dir) })
            })
            .await?
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
            Ok(Arc::new(sqlite))
        }
        StoreKind::Scylla => {
            let config = ScyllaConfig {
                keyspace: args.scylla_keyspace.clone(),
                replication: args.scylla_replication.clone(),
                node_id,
                ..ScyllaConfig::new(args.scylla_uri.clone())
            };
            let nodes = args.scylla_uri.join(",");
            let scylla = ScyllaStore::open(&config)
                .await
                .with_context(|| format!("opening ScyllaDB keyspace {} at {nodes}", args.scylla_keyspace))?;
            tracing::info!(
                nodes,
                keyspace = args.scylla_keyspace,
                seqs_from_redis = redis.is_some(),
                "ScyllaDB store open"
            );
            match redis {
                Some(redis) => Ok(Arc::new(scylla.with_seq_counter(Arc::new(RedisSequencer::new(redis.clone()))))),
                None => Ok(Arc::new(scylla)),
            }
        }
    }
}

/// The sidecar's configuration from the command line.
pub fn sidecar_config(args: &ServeArgs, files_dir: std::path::PathBuf) -> anyhow::Result<SidecarConfig> {
    let jwt_secret = match &args.jwt_secret {
        Some(secret) if secret.len() >= 32 => secret.clone().into_bytes(),
        Some(_) => anyhow::bail!("--jwt-secret must be at least 32 bytes"),
        None => {
            let path = args.data_dir.join("jwt.secret");
            service::auth::secret_from_file(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let rates = RateConfig {
        send_code: Rate::new(args.rate_send_code_per_hour, HOUR),
        login: Rate::new(args.rate_login_per_15min, Duration::from_secs(15 * 60)),
        upload: Rate::new(args.rate_upload_per_hour, HOUR),
        other: Rate::new(args.rate_api_per_hour, HOUR),
        ..RateConfig::default()
    };
    Ok(SidecarConfig {
        dev: args.dev,
        require_phone_code: args.require_phone_code,
        access_ttl: Duration::from_secs(args.access_ttl_secs),
        upload_limit: args.upload_limit_mib.saturating_mul(1024 * 1024),
        rates,
        trusted_proxies: args.trusted_proxies.clone(),
        dialects: args.dialects(),
        store_kind: match args.store {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Scylla => "scylla",
        },
        node_id: u64::from(args.node_id),
        metrics_access: metrics_access(args),
        http: http_limits(args),
        server_api_keys: args
            .server_api_keys
            .iter()
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty())
            .collect(),
        ice: IceConfig {
            stun_urls: args.stun_urls.clone(),
            turn_urls: args.turn_urls.clone(),
            turn_secret: args.turn_secret.clone(),
            turn_ttl: Duration::from_secs(args.turn_ttl_secs),
        },
        ..SidecarConfig::new(files_dir, jwt_secret)
    })
}

/// What runs the webhooks, when configured: `services` telling a queue of
/// their events, and what drains it into the outbox (Redis in a cluster,
/// a file in the data dir otherwise).
type Webhooks = (webhooks::WebhookConfig, Arc<dyn webhooks::Outbox>, tokio::sync::mpsc::Receiver<service::HookEvent>);

fn with_webhooks(
    args: &ServeArgs,
    cluster: &Cluster,
    services: Services,
) -> anyhow::Result<(Services, Option<Webhooks>)> {
    let Some(config) = webhook_config(args)? else { return Ok((services, None)) };
    let outbox: Arc<dyn webhooks::Outbox> = match &cluster.redis {
        Some(redis) => Arc::new(webhooks::RedisOutbox::new(redis.clone())),
        None => Arc::new(webhooks::SqliteOutbox::open(&args.data_dir).context("opening the webhook outbox")?),
    };
    let (hooks, events) = service::Hooks::channel(webhooks::QUEUE_CAPACITY);
    tracing::info!(urls = config.urls.len(), "webhooks on");
    Ok((services.with_hooks(hooks), Some((config, outbox, events))))
}

/// The webhook configuration, when `--webhook-url` names any.
pub fn webhook_config(args: &ServeArgs) -> anyhow::Result<Option<webhooks::WebhookConfig>> {
    let urls: Vec<String> =
        args.webhook_urls.iter().map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect();
    if urls.is_empty() {
        return Ok(None);
    }
    for url in &urls {
        webhooks::check_url(url).map_err(|why| anyhow::anyhow!("--webhook-url: {why}"))?;
    }
    let secret = match &args.webhook_secret {
        Some(secret) if secret.len() >= 16 => secret.clone().into_bytes(),
        Some(_) => anyhow::bail!("--webhook-secret must be at least 16 bytes"),
        None => anyhow::bail!("--webhook-url needs --webhook-secret (receivers verify signatures with it)"),
    };
    Ok(Some(webhooks::WebhookConfig {
        max_pending: args.webhook_max_pending,
        retry_base: Duration::from_millis(args.webhook_retry_base_ms),
        ..webhooks::WebhookConfig::new(urls, secret)
    }))
}

/// Who may read `/metrics` on the main listener.
fn metrics_access(args: &ServeArgs) -> ops::MetricsAccess {
    ops::MetricsAccess {
        token: args.metrics_token.clone().filter(|token| !token.trim().is_empty()),
        elsewhere: args.metrics_listen.is_some(),
    }
}

/// How long HTTP clients may take, from the command line.
fn http_limits(args: &ServeArgs) -> ops::HttpLimits {
    ops::HttpLimits {
        header_read: Duration::from_secs(args.http_header_timeout_secs.max(1)),
        body_idle: Duration::from_secs(args.http_body_idle_secs.max(1)),
        request: Duration::from_secs(args.http_request_timeout_secs.max(1)),
    }
}

/// The gateway's configuration from the command line.
pub fn gateway_config(args: &ServeArgs) -> GatewayConfig {
    GatewayConfig {
        max_connections: args.ws_max_connections,
        commands_per_second: args.ws_commands_per_second,
        commands_per_user_per_second: args.ws_user_commands_per_second,
        heartbeat_timeout: Duration::from_secs(args.ws_heartbeat_timeout_secs),
        max_frame_bytes: args.ws_max_frame_kib.saturating_mul(1024),
        ring_timeout: Duration::from_secs(args.ring_timeout_secs),
        node_id: args.node_id,
        dialects: args.dialects(),
        metrics_access: metrics_access(args),
        http: http_limits(args),
        max_per_address: args.ws_max_per_address,
        max_unauthenticated: args.ws_max_unauthenticated,
        trusted_proxies: args.trusted_proxies.clone(),
        ..GatewayConfig::default()
    }
}

/// How soon a logout on one process of a cluster denies the token on the others.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
