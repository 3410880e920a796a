//! One sweeper per node instead of a timer per connection: connections
//! silent for the heartbeat timeout are closed.

use std::sync::atomic::Ordering;

use protocol::time::now_millis;
use tokio_util::sync::CancellationToken;

use crate::{Gateway, close_codes};

pub(crate) async fn sweep(gateway: Gateway, shutdown: CancellationToken) {
    let typing = tokio::spawn(crate::typing::expire(gateway.clone(), shutdown.clone()));
    let mut tick = tokio::time::interval(gateway.inner.config.sweep_interval);
    let timeout = gateway.inner.config.heartbeat_timeout.as_millis() as i64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let cutoff = now_millis() - timeout;
        for handle in gateway.inner.registry.all() {
            if handle.last_seen.load(Ordering::Relaxed) < cutoff {
                metrics::counter!("switchboard_ws_heartbeat_timeouts_total").increment(1);
                handle.close(close_codes::HEARTBEAT_TIMEOUT);
            }
        }
    }
    let _ = typing.await;
}
