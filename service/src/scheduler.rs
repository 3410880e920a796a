use std::time::Duration;

use protocol::time::now_millis;
use tokio_util::sync::CancellationToken;

use crate::SendPipeline;

/// How often due scheduled messages are looked for: the most a scheduled
/// message is late.
const TICK: Duration = Duration::from_millis(500);

/// Releases scheduled messages as they fall due, until `shutdown`.
pub async fn run_scheduler(pipeline: SendPipeline, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match pipeline.release_due(now_millis()).await {
            Ok(0) => {}
            Ok(released) => tracing::debug!(released, "scheduled messages released"),
            Err(error) => tracing::warn!(%error, "releasing scheduled messages failed"),
        }
    }
}
