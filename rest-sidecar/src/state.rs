use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use router::redis::RedisConnection;
use service::Services;
use storage::{Store, StoreError};

use crate::rate_limit::{LoginBackoff, RateConfig, RateLimits};
use crate::sms::{SmsCodes, SmsRules, SmsSender};
use service::TokenService;

/// What the sidecar is configured with.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Reported by `/health`.
    pub version: &'static str,
    /// Where uploaded files live; `/health` reports it as `storage`.
    pub files_dir: PathBuf,
    /// The largest JSON request body accepted, in bytes.
    pub body_limit: usize,
    /// The largest upload accepted, in bytes.
    pub upload_limit: u64,
    /// Development conveniences (SMS codes in responses).
    pub dev: bool,
    /// Registering a phone number needs a code sent to it.
    pub require_phone_code: bool,
    /// HS256 key for access tokens.
    pub jwt_secret: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub rates: RateConfig,
    pub sms: SmsRules,
    /// STUN/TURN servers handed to call peers.
    pub ice: IceConfig,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` is believed
    /// when keying per-address rate limits; none by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The seed dialects whose REST mounts are served besides `/api`.
    pub dialects: Vec<protocol::dialect::Dialect>,
    /// Keys of the server API (`Authorization: apikey <key>`); none, and
    /// `/api/server/…` is not served.
    pub server_api_keys: Vec<String>,
    /// Who may read `/metrics` on the main listener.
    pub metrics_access: ops::MetricsAccess,
    /// How long HTTP clients may take.
    pub http: ops::HttpLimits,
    /// The store in use (`sqlite`, `scylla`), as system info reports it.
    pub store_kind: &'static str,
    /// This process's node id in a cluster.
    pub node_id: u64,
}

/// STUN and TURN servers for WebRTC calls.
#[derive(Debug, Clone)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub turn_secret: Option<String>,
    /// How long a TURN credential is valid.
    pub turn_ttl: Duration,
}

impl SidecarConfig {
    /// Defaults for a server keeping files in `files_dir` and signing with
    /// `jwt_secret`.
    pub fn new(files_dir: impl Into<PathBuf>, jwt_secret: Vec<u8>) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            files_dir: files_dir.into(),
            body_limit: crate::DEFAULT_BODY_LIMIT,
            upload_limit: 50 * 1024 * 1024,
            dev: false,
            require_phone_code: false,
            jwt_secret,
            access_ttl: Duration::from_secs(86_400),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            rates: RateConfig::default(),
            sms: SmsRules::default(),
            trusted_proxies: Vec::new(),
            dialects: protocol::dialect::Dialect::ALL.to_vec(),
            server_api_keys: Vec::new(),
            metrics_access: ops::MetricsAccess::default(),
            http: ops::HttpLimits::default(),
            store_kind: "sqlite",
            node_id: 0,
            ice: IceConfig {
                stun_urls: Vec::new(),
                turn_urls: Vec::new(),
                turn_secret: None,
                turn_ttl: Duration::from_secs(86_400),
            },
        }
    }
}

/// Shared state of the HTTP handlers: cheap handles over `Arc`s, one per
/// domain. The use cases are the service layer's; what is here besides is
/// HTTP's own (tokens, codes, rate limits).
#[derive(Clone)]
pub struct SidecarState {
    pub(crate) services: Services,
    /// The services' store, for what is not a use case yet (auth, files).
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tokens: TokenService,
    pub(crate) sms: SmsCodes,
    pub(crate) limits: Arc<RateLimits>,
    /// Failed logins per account and the delay they earn.
    pub(crate) login_backoff: Arc<LoginBackoff>,
    pub(crate) config: Arc<SidecarConfig>,
    /// Cluster mode's Redis (health checks it); `None` on the embedded default.
    pub(crate) redis: Option<RedisConnection>,
    pub(crate) started: Instant,
}

impl std::fmt::Debug for SidecarState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarState").field("dev", &self.config.dev).finish_non_exhaustive()
    }
}

impl SidecarState {
    /// State over `services`, delivering codes with `sms`, with a token
    /// service of its own loaded from `config` (the denylist included).
    pub async fn new(services: Services, sms: Arc<dyn SmsSender>, config: SidecarConfig) -> Result<Self, StoreError> {
        let tokens =
            TokenService::load(services.store().clone(), &config.jwt_secret, config.access_ttl, config.refresh_ttl)
                .await?;
        Ok(Self::with_tokens(services, tokens, sms, config))
    }

    /// State over `services` sharing `tokens` with the rest of the process
    /// (the gateway verifies with the same service, so a logout here is
    /// refused there at once).
    pub fn with_tokens(
        services: Services,
        tokens: TokenService,
        sms: Arc<dyn SmsSender>,
        config: SidecarConfig,
    ) -> Self {
        Self {
            store: services.store().clone(),
            services,
            tokens,
            sms: SmsCodes::new(sms, config.sms.clone()),
            limits: Arc::new(RateLimits::new(config.rates)),
            login_backoff: Arc::default(),
            config: Arc::new(config),
            redis: None,
            started: Instant::now(),
        }
    }

    /// Cluster mode: `/health` checks `redis`.
    #[must_use]
    pub fn with_redis(mut self, redis: RedisConnection) -> Self {
        self.redis = Some(redis);
        self
    }

    /// The service layer the handlers call.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The token service (the gateway checks tokens with it).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }
}
