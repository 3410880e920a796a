//! Per-chat message sequence numbers.
//!
//! On one node the store hands out seqs inside its own write transaction
//! ([`StoreSequencer`]). In a cluster, nodes that write to a store without
//! such transactions (or several writers to one) take seqs from Redis
//! ([`crate::redis::RedisSequencer`]); the store refuses a seq that is
//! already used (`StoreError::SeqTaken`), so a counter that was lost can
//! never make a write overwrite a message, and the pipeline repairs the
//! counter and tries again.

use async_trait::async_trait;
use storage::model::{ChatId, Seq};

/// Why a seq could not be handed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    /// The sequencer's backend (Redis) cannot be reached right now.
    #[error("sequencer unavailable: {0}")]
    Unavailable(String),
    /// The store could not say its highest seq while re-seeding.
    #[error("reading the highest stored seq failed: {0}")]
    Store(String),
}

/// Hands out per-chat seqs: contiguous, starting at 1, never twice.
#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// Whether this sequencer hands out seqs. When it does not, the store
    /// assigns them inside its write and [`Sequencer::next`] is not called.
    fn assigns(&self) -> bool;

    /// Reserves `count` consecutive seqs of `chat_id`; answers the first.
    async fn next(&self, chat_id: ChatId, count: u64) -> Result<Seq, SequencerError>;

    /// A write found `taken` already used: the counter was lost or fell
    /// behind the store. Raises it above the store's highest seq.
    async fn repair(&self, chat_id: ChatId, taken: Seq) -> Result<(), SequencerError>;
}

/// The single-node default: the store assigns `last_seq + 1` in the same
/// transaction that writes the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSequencer;

#[async_trait]
impl Sequencer for StoreSequencer {
    fn assigns(&self) -> bool {
        false
    }

    async fn next(&self, _chat_id: ChatId, _count: u64) -> Result<Seq, SequencerError> {
        Err(SequencerError::Unavailable("the store assigns seqs on this node".into()))
    }

    async fn repair(&self, _chat_id: ChatId, _taken: Seq) -> Result<(), SequencerError> {
        Ok(())
    }
}
