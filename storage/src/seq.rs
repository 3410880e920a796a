//! Per-chat seqs counted outside the store.
//!
//! Each backend is the one owner of its seqs and of duplicate detection.
//! SQLite hands seqs out inside its write transaction, which serialises
//! every writer of the file, other processes included. ScyllaDB has no
//! such transaction: on its own it claims `top + 1` with a lightweight
//! transaction and probes upward when another writer got there first.
//! Given a [`SeqCounter`] (Redis in a cluster), it takes each seq from the
//! counter instead, so writers on many nodes stop racing for one slot; the
//! seq claim still refuses a taken seq, and the store then raises the
//! counter above its highest seq and takes another.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::model::{ChatId, Seq};
use crate::store::StoreResult;

/// A per-chat counter the store takes seqs from. Implementations answer
/// [`crate::StoreError::Unavailable`] when their backend cannot be reached.
#[async_trait]
pub trait SeqCounter: Debug + Send + Sync + 'static {
    /// Reserves `count` consecutive seqs of `chat_id` and answers the
    /// first; `None` when the counter holds nothing for the chat (first
    /// use, expired while idle, or lost with its backend): the store then
    /// calls [`SeqCounter::seed`] with its highest seq.
    async fn take(&self, chat_id: ChatId, count: u64) -> StoreResult<Option<Seq>>;

    /// Raises the chat's counter to at least `floor`, then reserves
    /// `count` seqs (0: only raise) and answers the first of them.
    async fn seed(&self, chat_id: ChatId, floor: Seq, count: u64) -> StoreResult<Seq>;
}
