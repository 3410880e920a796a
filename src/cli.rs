//! The command line: subcommands (roles) and every flag, each also read
//! from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Switchboard, a real-time messaging engine.
///
/// With no subcommand it runs `serve`.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway and REST sidecar in one process over the embedded SQLite store
    /// (with `--redis-url`, one process that can join a cluster).
    Serve(ServeArgs),
    /// A cluster's gateway node: `/ws`, `/health` and `/metrics`, routed
    /// through Redis. Needs `--redis-url` and a `--node-id` of its own.
    Gateway(ServeArgs),
    /// A cluster's REST sidecar: `/api/*`, `/health` and `/metrics`, and the
    /// release of scheduled messages. Needs `--redis-url` and a `--node-id`.
    Sidecar(ServeArgs),
}

/// What one process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Gateway and sidecar together.
    All,
    Gateway,
    Sidecar,
}

impl Command {
    pub fn into_parts(self) -> (Role, ServeArgs) {
        match self {
            Self::Serve(args) => (Role::All, args),
            Self::Gateway(args) => (Role::Gateway, args),
            Self::Sidecar(args) => (Role::Sidecar, args),
        }
    }
}

/// Which [`storage::Store`] a process runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The embedded SQLite database in --data-dir.
    Sqlite,
    /// A ScyllaDB cluster (--scylla-uri, --scylla-keyspace).
    Scylla,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder for the database and uploaded files (created if missing).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where messages, users and chats live: the embedded SQLite database in
    /// --data-dir, or a ScyllaDB cluster (--scylla-uri). Uploaded files stay
    /// in --data-dir either way.
    #[arg(long, env = "SWITCHBOARD_STORE", value_enum, default_value = "sqlite")]
    pub store: StoreKind,

    /// ScyllaDB contact points, `host:port` separated by commas (the driver
    /// finds the rest of the cluster). Required with `--store scylla`.
    #[arg(long, env = "SWITCHBOARD_SCYLLA_URI", value_delimiter = ',')]
    pub scylla_uri: Vec<String>,

    /// The ScyllaDB keyspace; created, and its schema migrated, on start.
    #[arg(long, env = "SWITCHBOARD_SCYLLA_KEYSPACE", default_value = "switchboard")]
    pub scylla_keyspace: String,

    /// The replication of a keyspace created on start, in CQL.
    #[arg(
        long,
        env = "SWITCHBOARD_SCYLLA_REPLICATION",
        default_value = "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
    )]
    pub scylla_replication: String,
    /// Development conveniences, such as SMS codes returned in responses.
    /// Never in production.
    #[arg(long, env = "SWITCHBOARD_DEV")]
    pub dev: bool,
    /// Registering with a phone number needs a valid SMS code sent to it
    /// (`send-code` with type `register`): only the phone's holder can
    /// claim it. Recommended in production.
    #[arg(long, env = "SWITCHBOARD_REQUIRE_PHONE_CODE")]
    pub require_phone_code: bool,
    /// Log output format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Redis for cluster mode: routing between nodes, seqs and presence.
    /// Without it, one process is the whole deployment.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of Switchboard's Redis keys and channels (deployments sharing
    /// a Redis need distinct ones).
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "sb")]
    pub redis_prefix: String,
    /// This node's id (0-15): in message ids, and its Redis channel and
    /// presence registrations. Distinct per process of a deployment.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=i64::from(storage::MAX_NODE_ID)))]
    pub node_id: u16,
    /// HS256 secret for access tokens (at least 32 bytes). Without it, one
    /// is generated and kept in `<data-dir>/jwt.secret`.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Seconds an access token lives.
    #[arg(long, env = "SWITCHBOARD_ACCESS_TTL_SECS", default_value_t = 86_400)]
    pub access_ttl_secs: u64,
    /// Seconds within which a refresh token presented again gets the same
    /// new pair (an app's concurrent refreshes); after it, reuse revokes
    /// the token's whole family.
    #[arg(long, env = "SWITCHBOARD_REFRESH_REUSE_GRACE_SECS", default_value_t = 10)]
    pub refresh_reuse_grace_secs: u64,
    /// API requests per hour per user (per address before login).
    #[arg(long, env = "SWITCHBOARD_RATE_API_PER_HOUR", default_value_t = 1_000)]
    pub rate_api_per_hour: u32,
    /// Login attempts per 15 minutes per phone.
    #[arg(long, env = "SWITCHBOARD_RATE_LOGIN_PER_15MIN", default_value_t = 10)]
    pub rate_login_per_15min: u32,
    /// SMS code requests per hour per client address.
    #[arg(long, env = "SWITCHBOARD_RATE_SEND_CODE_PER_HOUR", default_value_t = 20)]
    pub rate_send_code_per_hour: u32,
    /// Uploads per hour per user.
    #[arg(long, env = "SWITCHBOARD_RATE_UPLOAD_PER_HOUR", default_value_t = 50)]
    pub rate_upload_per_hour: u32,
    /// Largest upload, in MiB.
    #[arg(long, env = "SWITCHBOARD_UPLOAD_LIMIT_MIB", default_value_t = 50)]
    pub upload_limit_mib: u64,
    /// A separate address serving `/metrics` (for the scraper); the main
    /// listener then serves it only with `--metrics-token`. Without it,
    /// `/metrics` on the main listener answers only this machine (not
    /// through a proxy) or the token.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A bearer token that opens `/metrics` on the main listener from anywhere.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Most members a group may have (its owner included).
    #[arg(long, env = "SWITCHBOARD_MAX_GROUP_MEMBERS", default_value_t = 1_000)]
    pub max_group_members: usize,
    /// Seconds a client may take to send a request's headers (and, on a
    /// kept-alive connection, to start the next request).
    #[arg(long, env = "SWITCHBOARD_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,
    /// Seconds a request body may stall between two reads.
    #[arg(long, env = "SWITCHBOARD_HTTP_BODY_IDLE_SECS", default_value_t = 20)]
    pub http_body_idle_secs: u64,
    /// Seconds from a request's headers to its answer, upload included (408 past it).
    #[arg(long, env = "SWITCHBOARD_HTTP_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub http_request_timeout_secs: u64,
    /// Most concurrent WebSocket connections from one client address
    /// (behind `--trusted-proxy`, the forwarded one).
    #[arg(long, env = "SWITCHBOARD_WS_MAX_PER_ADDRESS", default_value_t = 1_000)]
    pub ws_max_per_address: usize,
    /// Most concurrent WebSocket connections still to send their `auth`
    /// frame (no token in the upgrade), per node.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_UNAUTHENTICATED", default_value_t = 1_024)]
    pub ws_max_unauthenticated: usize,
    /// Most concurrent WebSocket connections.
    #[arg(long, env = "SWITCHBOARD_WS_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub ws_max_connections: usize,
    /// Commands per second per WebSocket connection (burst: twice that).
    #[arg(long, env = "SWITCHBOARD_WS_COMMANDS_PER_SECOND", default_value_t = 50)]
    pub ws_commands_per_second: u32,
    /// Commands per second per user over all of their WebSocket
    /// connections on a node (burst: twice that).
    #[arg(long, env = "SWITCHBOARD_WS_USER_COMMANDS_PER_SECOND", default_value_t = 100)]
    pub ws_user_commands_per_second: u32,
    /// Seconds a silent WebSocket connection lives (clients ping every 30 s).
    #[arg(long, env = "SWITCHBOARD_WS_HEARTBEAT_TIMEOUT_SECS", default_value_t = 90)]
    pub ws_heartbeat_timeout_secs: u64,
    /// Largest WebSocket frame, in KiB (larger ones get an error).
    #[arg(long, env = "SWITCHBOARD_WS_MAX_FRAME_KIB", default_value_t = 64)]
    pub ws_max_frame_kib: usize,
    /// Seconds a call may ring unanswered before it ends (`timeout`).
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT_SECS", default_value_t = 45)]
    pub ring_timeout_secs: u64,
    /// STUN server URLs for call peers (repeat, or comma-separate in the environment).
    #[arg(long = "stun-url", env = "SWITCHBOARD_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// TURN server URLs for call peers.
    #[arg(long = "turn-url", env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn `static-auth-secret`).
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Seconds a TURN credential is valid.
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS", default_value_t = 86_400)]
    pub turn_ttl_secs: u64,
    /// A proxy (address or network) whose X-Forwarded-For is believed for
    /// per-address rate limits (repeat, or comma-separate in the environment).
    #[arg(long = "trusted-proxy", env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// The seed contracts served, by seed number: 002 (the canonical `/api`
    /// and `/ws`, always served), 000 (`/v1`), 001 (`/api/v1`), 003 (`/api/v1`),
    /// 004 (`/api`).
    #[arg(long, env = "SWITCHBOARD_DIALECTS", value_delimiter = ',', value_parser = parse_seed, default_value = "002,000,001,003,004")]
    pub dialects: Vec<Seed>,
    /// A key of the server API for app backends, `Authorization: apikey
    /// <key>` (repeat, or comma-separate in the environment); with none,
    /// `/api/server/…` is not served.
    #[arg(long = "server-api-key", env = "SWITCHBOARD_SERVER_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub server_api_keys: Vec<String>,
    /// Days a notification is kept.
    #[arg(long, env = "SWITCHBOARD_NOTIFICATION_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub notification_retention_days: u32,
    /// Where webhooks are posted (repeat, or comma-separate in the
    /// environment); needs `--webhook-secret`.
    #[arg(long = "webhook-url", env = "SWITCHBOARD_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,
    /// The HMAC-SHA256 key of webhook signatures (16+ bytes).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Most webhook deliveries waiting; past it new events are dropped (and counted).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_MAX_PENDING", default_value_t = 100_000)]
    pub webhook_max_pending: u64,
    /// The first webhook retry's delay in milliseconds; each later one doubles it (up to an hour).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_RETRY_BASE_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub webhook_retry_base_ms: u64,
}

/// A seed contract named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub Option<protocol::dialect::Dialect>);

impl ServeArgs {
    /// The dialects chosen (the canonical contract is not one).
    pub fn dialects(&self) -> Vec<protocol::dialect::Dialect> {
        let mut dialects: Vec<_> = self.dialects.iter().filter_map(|seed| seed.0).collect();
        dialects.dedup();
        dialects
    }
}

fn parse_seed(text: &str) -> Result<Seed, String> {
    if text.trim().trim_start_matches('0') == "2" {
        return Ok(Seed(None));
    }
    protocol::dialect::Dialect::from_seed(text)
        .map(|dialect| Seed(Some(dialect)))
        .ok_or_else(|| format!("{text:?} is not a served seed: choose from 002, 000, 001, 003, 004"))
}

/// A network (`10.0.0.0/8`) or a single address (`10.0.0.5`).
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a network like 10.0.0.0/8"))
}
