//! Sessions end with their tokens: every second, and whenever a revocation
//! becomes known (a logout here, a refresh family revoked for reuse, or
//! either on another node through the revocation follower), each
//! connection's token is checked again; an expired or revoked one's
//! connection is closed with 4001.

use std::time::Duration;

use protocol::time::now_millis;
use tokio_util::sync::CancellationToken;

use crate::{Gateway, close_codes};

/// How often sessions are checked for expiry even when nothing was revoked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn watch(gateway: Gateway, shutdown: CancellationToken) {
    let mut changes = gateway.inner.tokens.changes();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let revoked = async {
            match changes.as_mut() {
                Some(changes) => changes.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            live = revoked => if !live { changes = None },
        }
        check(&gateway);
    }
}

/// Closes every connection whose token is no longer good.
fn check(gateway: &Gateway) {
    let now_secs = now_millis() / 1000;
    let mut ended = 0u64;
    for handle in gateway.inner.registry.all() {
        if !gateway.inner.tokens.still_valid(&handle.claims, now_secs) {
            let _ = handle.close_reason.set("session ended: sign in again".to_owned());
            handle.close(close_codes::AUTH_FAILED);
            ended += 1;
        }
    }
    if ended > 0 {
        tracing::info!(ended, "connections of expired or revoked sessions closed");
        metrics::counter!("switchboard_ws_sessions_ended_total").increment(ended);
    }
}
