use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use router::redis::RedisConnection;
use router::{Router, SendLimits, SendPipeline, Sequencer};
use storage::{Store, StoreError};

use crate::rate_limit::{RateConfig, RateLimits};
use crate::sms::{SmsCodes, SmsRules, SmsSender};
use crate::tokens::TokenService;

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
    /// HS256 key for access tokens.
    pub jwt_secret: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub rates: RateConfig,
    pub sms: SmsRules,
    pub send: SendLimits,
    /// Most members a group may have.
    pub max_group_members: usize,
    /// STUN/TURN servers handed to call peers.
    pub ice: IceConfig,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` is believed
    /// when keying per-address rate limits; none by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
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
            jwt_secret,
            access_ttl: Duration::from_secs(86_400),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            rates: RateConfig::default(),
            sms: SmsRules::default(),
            send: SendLimits::default(),
            max_group_members: 1_000,
            trusted_proxies: Vec::new(),
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
/// domain.
#[derive(Clone)]
pub struct SidecarState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) pipeline: SendPipeline,
    pub(crate) tokens: TokenService,
    pub(crate) sms: SmsCodes,
    pub(crate) limits: Arc<RateLimits>,
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
    /// State over `store`, publishing through `router`, delivering codes
    /// with `sms`. Loads the access-token denylist.
    pub async fn new(
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        sms: Arc<dyn SmsSender>,
        config: SidecarConfig,
    ) -> Result<Self, StoreError> {
        let tokens =
            TokenService::load(store.clone(), &config.jwt_secret, config.access_ttl, config.refresh_ttl).await?;
        Ok(Self {
            pipeline: SendPipeline::new(store.clone(), router, config.send.clone()),
            tokens,
            sms: SmsCodes::new(sms, config.sms.clone()),
            limits: Arc::new(RateLimits::new(config.rates)),
            store,
            config: Arc::new(config),
            redis: None,
            started: Instant::now(),
        })
    }

    /// Cluster mode: sends take seqs from `sequencer`, and `/health` checks `redis`.
    #[must_use]
    pub fn with_cluster(mut self, redis: RedisConnection, sequencer: Arc<dyn Sequencer>) -> Self {
        self.pipeline = self.pipeline.with_sequencer(sequencer);
        self.redis = Some(redis);
        self
    }

    /// The send pipeline (shared with the gateway in one process).
    pub fn pipeline(&self) -> &SendPipeline {
        &self.pipeline
    }

    /// The token service (the gateway checks tokens with it).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }
}
