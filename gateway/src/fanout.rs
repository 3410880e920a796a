//! Router deliveries to local connections: each event is encoded at most
//! once per wire format and the frames shared; a connection whose queue is
//! full is closed as a slow consumer rather than allowed to grow memory.

use protocol::time::now_millis;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use router::Delivery;

use crate::codec::SharedMessages;
use crate::registry::Registry;
use crate::{Gateway, close_codes};

/// Deliveries taken from the router in one turn of this task before it
/// yields: enough to keep up with thousands of connections publishing in
/// one scheduling round, few enough not to hold a worker thread for long.
const DRAIN_PER_TURN: usize = 1024;

pub(crate) async fn run(gateway: Gateway, shutdown: CancellationToken) {
    let mut deliveries = gateway.inner.services.router().subscribe();
    let mut resyncs = gateway.inner.services.router().resyncs();
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => return,
            delivery = deliveries.recv() => delivery,
            changed = resync_needed(resyncs.as_mut()) => {
                if changed {
                    // The router may have missed deliveries for this node.
                    ask_everyone_to_resync(&gateway.inner.registry);
                } else {
                    resyncs = None;
                }
                continue;
            }
        };
        if !take(&gateway, delivery) {
            return;
        }
        // `recv` spends the task's cooperative budget (128 a turn), and a
        // node with thousands of busy connections gives this task a turn
        // once per round: what is already queued is taken now.
        for _ in 0..DRAIN_PER_TURN {
            let queued = match deliveries.try_recv() {
                Ok(delivery) => Ok(delivery),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            if !take(&gateway, queued) {
                return;
            }
        }
    }
}

/// Delivers one delivery read from the router, or has every client resync
/// when deliveries were missed; answers false once the router is gone.
fn take(gateway: &Gateway, delivery: Result<std::sync::Arc<Delivery>, RecvError>) -> bool {
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(RecvError::Lagged(missed)) => {
            // Events were lost on this node: every client must resync.
            tracing::warn!(missed, "fan-out lagged behind the router; asking clients to resync");
            metrics::counter!("switchboard_ws_fanout_lagged_total").increment(missed);
            ask_everyone_to_resync(&gateway.inner.registry);
            return true;
        }
        Err(RecvError::Closed) => return false,
    };
    let started = now_millis();
    let delivered = deliver(&gateway.inner.registry, &delivery, gateway.inner.config.node_id);
    metrics::counter!("switchboard_ws_deliveries_total", "type" => delivery.frame.kind()).increment(delivered);
    metrics::histogram!("switchboard_ws_fanout_seconds").record((now_millis() - started) as f64 / 1000.0);
    true
}

/// Resolves when the router's resync counter moves (true) or can no longer
/// move (false); never, when the router has none.
async fn resync_needed(resyncs: Option<&mut tokio::sync::watch::Receiver<u64>>) -> bool {
    match resyncs {
        Some(resyncs) => resyncs.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Closes every local connection with 4009: each client reconnects and
/// `sync`s what it missed from the store.
fn ask_everyone_to_resync(registry: &Registry) {
    let handles = registry.all();
    tracing::warn!(connections = handles.len(), "asking every local client to resync");
    for handle in handles {
        handle.close(close_codes::RESYNC);
    }
}

/// Queues `delivery` on every local device of its recipients, encoded at
/// most once per wire format; answers how many connections it reached.
pub(crate) fn deliver(registry: &Registry, delivery: &Delivery, node: u16) -> u64 {
    if delivery.frame.kind() == protocol::kinds::DISCONNECT {
        return disconnect(registry, delivery);
    }
    let frame = SharedMessages::new(&delivery.frame);
    let mut delivered = 0u64;
    for &user in &delivery.recipients {
        // Nothing here waits: a full queue closes its connection.
        registry.each_device(user, |handle| {
            if !delivery.devices.include(node, handle.id) {
                return;
            }
            // A dialect with no frame for this event: nothing to send this device.
            let Some(message) = frame.get(handle.encoding) else { return };
            match handle.outbound.try_send(message) {
                Ok(()) => delivered += 1,
                Err(TrySendError::Full(_)) => {
                    metrics::counter!("switchboard_ws_slow_consumers_total").increment(1);
                    tracing::info!(user_id = user, connection = handle.id, "slow consumer closed");
                    handle.close(close_codes::SLOW_CONSUMER);
                }
                Err(TrySendError::Closed(_)) => {}
            }
        });
    }
    delivered
}

/// Closes every local connection of the recipients with the code and
/// reason the `disconnect` carries (read from its JSON, which every node
/// has); answers how many it closed.
fn disconnect(registry: &Registry, delivery: &Delivery) -> u64 {
    #[derive(serde::Deserialize)]
    struct Order {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        code: u16,
        reason: String,
    }
    let json = delivery.frame.bytes(protocol::Encoding::Json);
    let Ok(Order { data }) = serde_json::from_slice::<Order>(&json) else {
        tracing::warn!("a disconnect order did not decode; ignored");
        return 0;
    };
    let mut closed = 0;
    for &user in &delivery.recipients {
        for handle in registry.devices(user) {
            let _ = handle.close_reason.set(data.reason.clone());
            handle.close(data.code);
            closed += 1;
        }
        if closed > 0 {
            tracing::info!(user_id = user, reason = %data.reason, "sessions closed by the server API");
        }
    }
    metrics::counter!("switchboard_ws_disconnected_total", "reason" => "server_api").increment(closed);
    closed
}
