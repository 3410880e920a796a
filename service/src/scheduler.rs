use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::time::now_millis;
use router::Lease;
use storage::model::{MessageId, Millis};
use tokio_util::sync::CancellationToken;

use crate::SendPipeline;

/// How often due scheduled messages are looked for: the most a scheduled
/// message is late.
const TICK: Duration = Duration::from_millis(500);

/// The first wait before a message whose release failed is tried again;
/// each further failure doubles it, up to [`RETRY_MAX_MS`].
const RETRY_FIRST_MS: Millis = 1_000;
const RETRY_MAX_MS: Millis = 5 * 60 * 1_000;

/// Past this many messages waiting to be retried, the oldest records are
/// forgotten (each is then tried at once again): a bound on memory.
const RETRIES_KEPT: usize = 10_000;

/// Releases scheduled messages as they fall due, until `shutdown`, while
/// this process holds `lease` (one process of a deployment does it).
pub async fn run_scheduler(pipeline: SendPipeline, lease: Arc<dyn Lease>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retries = Retries::default();
    let mut holding = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let held = lease.hold().await;
        if held != holding {
            tracing::info!(held, "scheduled-message lease");
            holding = held;
        }
        if !held {
            continue;
        }
        match pipeline.release_due(now_millis(), &mut retries).await {
            Ok(0) => {}
            Ok(released) => tracing::debug!(released, "scheduled messages released"),
            Err(error) => tracing::warn!(%error, "looking for due scheduled messages failed"),
        }
    }
    if holding {
        lease.release().await;
    }
}

/// Scheduled messages whose release failed, each waiting for its next try:
/// one that keeps failing is tried less often and holds no other back.
#[derive(Debug, Default)]
pub struct Retries {
    waiting: HashMap<MessageId, Retry>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    next_at: Millis,
}

impl Retries {
    /// How many messages wait for a retry.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether message `id` may be tried at `now`.
    pub(crate) fn due(&self, id: MessageId, now: Millis) -> bool {
        self.waiting.get(&id).is_none_or(|retry| retry.next_at <= now)
    }

    pub(crate) fn failed(&mut self, id: MessageId, now: Millis) -> u32 {
        if self.waiting.len() >= RETRIES_KEPT && !self.waiting.contains_key(&id) {
            let oldest = self.waiting.iter().min_by_key(|(_, retry)| retry.next_at).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.waiting.remove(&oldest);
            }
        }
        let retry = self.waiting.entry(id).or_insert(Retry { failures: 0, next_at: now });
        retry.failures += 1;
        let wait = RETRY_FIRST_MS.saturating_mul(1 << (retry.failures - 1).min(20)).min(RETRY_MAX_MS);
        retry.next_at = now + wait;
        retry.failures
    }

    pub(crate) fn done(&mut self, id: MessageId) {
        self.waiting.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::{RETRY_MAX_MS, Retries};

    #[test]
    fn a_failing_message_waits_longer_each_time_up_to_a_cap() {
        let mut retries = Retries::default();
        assert!(retries.due(7, 0));
        retries.failed(7, 0);
        assert!(!retries.due(7, 999) && retries.due(7, 1_000));
        retries.failed(7, 1_000);
        assert!(!retries.due(7, 2_999) && retries.due(7, 3_000));
        for _ in 0..30 {
            retries.failed(7, 0);
        }
        assert!(retries.due(7, RETRY_MAX_MS), "the wait stops growing");
        assert!(retries.due(8, 0), "another message is not held back");
        retries.done(7);
        assert!(retries.is_empty());
    }
}
