//! Per-chat seqs from Redis: `INCRBY` on a counter per chat, inside a
//! script that refuses to count from a missing counter. A missing counter
//! (first use, idle expiry, or lost with a Redis restart or failover) is
//! re-seeded from the store's highest seq first, so a seq is never handed
//! out twice because Redis forgot it; the store's refusal of a taken seq
//! covers the window of writes still in flight while it re-seeds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use storage::Store;
use storage::model::{ChatId, Seq};

use super::scripts::SCRIPTS;
use super::{RedisConnection, Retry};
use crate::sequencer::{Sequencer, SequencerError};

/// A chat's counter is dropped after this long without a send and
/// re-seeded from the store on the next one: idle chats cost Redis nothing.
const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The cluster's sequencer. Cheap to clone.
#[derive(Clone)]
pub struct RedisSequencer {
    redis: RedisConnection,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for RedisSequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSequencer").field("redis", &self.redis).finish_non_exhaustive()
    }
}

impl RedisSequencer {
    /// Seqs of chats in `store`, counted in `redis`.
    pub fn new(redis: RedisConnection, store: Arc<dyn Store>) -> Self {
        Self { redis, store }
    }

    fn key(&self, chat_id: ChatId) -> String {
        self.redis.key(format_args!("seq:{chat_id}"))
    }

    /// Raises the counter to at least the store's highest seq, then takes
    /// `count` (0: only raise). Answers the last seq taken.
    async fn seed(&self, chat_id: ChatId, count: u64) -> Result<Seq, SequencerError> {
        let floor = self.store.max_seq(chat_id).await.map_err(|error| SequencerError::Store(error.to_string()))?;
        let mut invocation = SCRIPTS.seq_seed.prepare_invoke();
        invocation.key(self.key(chat_id)).arg(floor).arg(count).arg(IDLE_TTL.as_secs());
        self.redis.run(&invocation, Retry::IfUnsent).await.map_err(SequencerError::Unavailable)
    }
}

#[async_trait]
impl Sequencer for RedisSequencer {
    fn assigns(&self) -> bool {
        true
    }

    async fn next(&self, chat_id: ChatId, count: u64) -> Result<Seq, SequencerError> {
        let mut invocation = SCRIPTS.seq_next.prepare_invoke();
        invocation.key(self.key(chat_id)).arg(count).arg(IDLE_TTL.as_secs());
        let last: Option<Seq> =
            self.redis.run(&invocation, Retry::IfUnsent).await.map_err(SequencerError::Unavailable)?;
        let last = if let Some(last) = last {
            last
        } else {
            metrics::counter!("switchboard_sequencer_seeded_total").increment(1);
            tracing::debug!(chat_id, "seq counter missing in Redis; seeding it from the store");
            self.seed(chat_id, count).await?
        };
        Ok(last + 1 - count)
    }

    async fn repair(&self, chat_id: ChatId, taken: Seq) -> Result<(), SequencerError> {
        metrics::counter!("switchboard_sequencer_repaired_total").increment(1);
        tracing::warn!(chat_id, taken, "seq already used in the store; raising the Redis counter above it");
        self.seed(chat_id, 0).await.map(drop)
    }
}
