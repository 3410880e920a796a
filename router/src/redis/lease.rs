use std::time::Duration;

use async_trait::async_trait;

use super::scripts::SCRIPTS;
use super::{RedisConnection, Retry};
use crate::lease::Lease;

/// A [`Lease`] kept in Redis under `{prefix}:lease:{name}`, naming its
/// holder; it runs out `ttl` after the holder last extended it.
#[derive(Debug, Clone)]
pub struct RedisLease {
    redis: RedisConnection,
    key: String,
    /// This process, uniquely: the node id and a random part, so that two
    /// processes given one node id by mistake do not both hold it.
    holder: String,
    ttl: Duration,
}

impl RedisLease {
    pub fn new(redis: RedisConnection, name: &str, ttl: Duration) -> Self {
        let key = redis.key(format_args!("lease:{name}"));
        let holder = format!("{}-{:016x}", redis.config().node_id, rand::random::<u64>());
        Self { redis, key, holder, ttl }
    }
}

#[async_trait]
impl Lease for RedisLease {
    async fn hold(&self) -> bool {
        let mut invocation = SCRIPTS.lease_hold.prepare_invoke();
        invocation.key(&self.key).arg(&self.holder).arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        match self.redis.run::<i64>(&invocation, Retry::IfDropped).await {
            Ok(held) => held == 1,
            Err(error) => {
                // Without Redis nobody can tell who holds it: nobody does.
                tracing::warn!(%error, key = %self.key, "lease not held: Redis did not answer");
                false
            }
        }
    }

    async fn release(&self) {
        let mut invocation = SCRIPTS.lease_release.prepare_invoke();
        invocation.key(&self.key).arg(&self.holder);
        if let Err(error) = self.redis.run::<i64>(&invocation, Retry::IfDropped).await {
            tracing::debug!(%error, key = %self.key, "lease not released; it runs out on its own");
        }
    }
}
