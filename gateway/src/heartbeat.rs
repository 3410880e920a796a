//! One sweeper per node instead of a timer per connection: connections
//! silent for the heartbeat timeout are closed.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use crate::{Gateway, close_codes};

pub(crate) async fn sweep(gateway: Gateway, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(gateway.inner.config.sweep_interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                sweep_once(&gateway);
            }
        }
    }
}

/// Closes every connection silent for longer than the heartbeat timeout;
/// answers how many.
pub(crate) fn sweep_once(gateway: &Gateway) -> usize {
    let timeout = i64::try_from(gateway.inner.config.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
    let cutoff = gateway.clock_ms() - timeout;
    let mut closed = 0;
    for handle in gateway.inner.registry.all() {
        if handle.last_seen.load(Ordering::Relaxed) < cutoff {
            metrics::counter!("switchboard_ws_heartbeat_timeouts_total").increment(1);
            handle.close(close_codes::HEARTBEAT_TIMEOUT);
            closed += 1;
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::sweep_once;
    use crate::fixture::fixture;
    use crate::registry::Handle;
    use crate::{GatewayConfig, close_codes};
    use protocol::Encoding;

    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_for_90_seconds_is_closed() {
        let f = fixture(GatewayConfig::default()).await;
        let (outbound, _queue) = crate::outbound::queue(4);
        let claims = protocol::Claims { sub: f.alice, jti: "t".into(), iat: 0, exp: i64::MAX, fam: None };
        let handle = Arc::new(Handle::new(1, claims, Encoding::Json, outbound, f.gateway.clock_ms()));
        f.gateway.inner.registry.insert(handle.clone());

        tokio::time::advance(Duration::from_secs(60)).await;
        // A frame from the client resets the clock.
        handle.last_seen.store(f.gateway.clock_ms(), Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(sweep_once(&f.gateway), 0);
        assert_eq!(handle.close_code.load(Ordering::Acquire), 0);

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(sweep_once(&f.gateway), 1);
        assert_eq!(handle.close_code.load(Ordering::Acquire), close_codes::HEARTBEAT_TIMEOUT);
    }
}
