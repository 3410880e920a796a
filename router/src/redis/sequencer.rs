//! Per-chat seq counters in Redis: `INCRBY` on a counter per chat, inside
//! a script that refuses to count from a missing counter. A missing
//! counter (first use, idle expiry, or lost with a Redis restart or
//! failover) answers `None`, and the store seeds it from its highest seq
//! first, so a seq is never handed out twice because Redis forgot it; the
//! store's refusal of a taken seq covers the window of writes still in
//! flight while it re-seeds.

use std::time::Duration;

use async_trait::async_trait;
use storage::model::{ChatId, Seq};
use storage::{SeqCounter, StoreError, StoreResult};

use super::scripts::SCRIPTS;
use super::{RedisConnection, Retry};

/// A chat's counter is dropped after this long without a send and
/// re-seeded from the store on the next one: idle chats cost Redis nothing.
const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The cluster's seq counter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisSequencer {
    redis: RedisConnection,
}

impl RedisSequencer {
    /// Counters kept in `redis`.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn key(&self, chat_id: ChatId) -> String {
        self.redis.key(format_args!("seq:{chat_id}"))
    }
}

#[async_trait]
impl SeqCounter for RedisSequencer {
    async fn take(&self, chat_id: ChatId, count: u64) -> StoreResult<Option<Seq>> {
        let mut invocation = SCRIPTS.seq_next.prepare_invoke();
        invocation.key(self.key(chat_id)).arg(count).arg(IDLE_TTL.as_secs());
        let last: Option<Seq> = self.redis.run(&invocation, Retry::IfUnsent).await.map_err(StoreError::Unavailable)?;
        Ok(last.map(|last| last + 1 - count))
    }

    async fn seed(&self, chat_id: ChatId, floor: Seq, count: u64) -> StoreResult<Seq> {
        let mut invocation = SCRIPTS.seq_seed.prepare_invoke();
        invocation.key(self.key(chat_id)).arg(floor).arg(count).arg(IDLE_TTL.as_secs());
        let last: Seq = self.redis.run(&invocation, Retry::IfUnsent).await.map_err(StoreError::Unavailable)?;
        Ok(last + 1 - count)
    }
}
