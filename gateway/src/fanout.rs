//! Router deliveries to local connections: each event is encoded at most
//! once per wire format and the frames shared; a connection whose queue is
//! full is closed as a slow consumer rather than allowed to grow memory.

use std::sync::Arc;

use protocol::Encoding;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use router::Delivery;

use crate::codec::SharedMessages;
use crate::outbound::{self, Refused};
use crate::registry::Registry;
use crate::{Gateway, close_codes};

/// Deliveries taken from the router in one turn of this task before it
/// yields: enough to keep up with thousands of connections publishing in
/// one scheduling round, few enough not to hold a worker thread for long.
const DRAIN_PER_TURN: usize = 1024;
/// Events in one run at most (see [`crate::outbound`]): the writer's batch.
const LONGEST_RUN: usize = 64;

pub(crate) async fn run(gateway: Gateway, shutdown: CancellationToken) {
    let mut deliveries = gateway.inner.services.router().subscribe();
    let mut resyncs = gateway.inner.services.router().resyncs();
    let mut runs = Runs::new(&gateway);
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
        let mut going_on = runs.take(delivery);
        // `recv` spends the task's cooperative budget (128 a turn), and a
        // node with thousands of busy connections gives this task a turn
        // once per round: what is already queued is taken now, and
        // consecutive events for the same recipients go out as one run.
        for _ in 0..DRAIN_PER_TURN {
            if !going_on {
                break;
            }
            let queued = match deliveries.try_recv() {
                Ok(delivery) => Ok(delivery),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            going_on = runs.take(queued);
        }
        runs.flush();
        if !going_on {
            return;
        }
    }
}

/// Deliveries read in one turn, grouped into runs as they come.
struct Runs<'g> {
    gateway: &'g Gateway,
    /// Consecutive deliveries of one kind for the same devices, not yet queued.
    pending: Vec<Arc<Delivery>>,
    /// Frames in a run at most: a batch's worth for the writer, and never
    /// more than a connection's queue holds.
    longest: usize,
}

impl<'g> Runs<'g> {
    fn new(gateway: &'g Gateway) -> Self {
        let longest = LONGEST_RUN.min(gateway.inner.config.outbound_queue).max(1);
        Self { gateway, pending: Vec::with_capacity(longest), longest }
    }

    /// Adds one delivery read from the router (queueing the run before it
    /// when it does not extend it), or has every client resync when
    /// deliveries were missed; answers false once the router is gone.
    fn take(&mut self, delivery: Result<Arc<Delivery>, RecvError>) -> bool {
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(RecvError::Lagged(missed)) => {
                self.flush();
                // Events were lost on this node: every client must resync.
                tracing::warn!(missed, "fan-out lagged behind the router; asking clients to resync");
                metrics::counter!("switchboard_ws_fanout_lagged_total").increment(missed);
                ask_everyone_to_resync(&self.gateway.inner.registry);
                return true;
            }
            Err(RecvError::Closed) => {
                self.flush();
                return false;
            }
        };
        let extends = self.pending.first().is_some_and(|first| same_audience(first, &delivery));
        if !extends || self.pending.len() == self.longest {
            self.flush();
        }
        if delivery.frame.kind() == protocol::kinds::DISCONNECT {
            let closed = disconnect(&self.gateway.inner.registry, &delivery);
            crate::meters::DELIVERIES.increment(protocol::kinds::DISCONNECT, closed);
        } else {
            self.pending.push(delivery);
        }
        true
    }

    /// Queues the pending run on its devices.
    fn flush(&mut self) {
        let Some(first) = self.pending.first() else { return };
        let kind = first.frame.kind();
        let started = std::time::Instant::now();
        let delivered =
            deliver(&self.gateway.inner.registry, &self.pending, self.gateway.inner.config.node_id, started);
        crate::meters::DELIVERIES.increment(kind, delivered);
        crate::meters::FANOUT_SECONDS.record(started.elapsed());
        self.pending.clear();
    }
}

/// Whether `next` can share a run with `first`: the same kind of event for
/// the same devices of the same recipients.
fn same_audience(first: &Delivery, next: &Delivery) -> bool {
    first.frame.kind() == next.frame.kind() && first.devices == next.devices && first.recipients == next.recipients
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

/// Queues `run` (deliveries of one kind for the same devices of the same
/// recipients) on every local device of its recipients, as one shared run
/// whose frames are encoded at most once per wire format, dated
/// `queued_at`; answers how many frames it queued in all.
pub(crate) fn deliver(registry: &Registry, run: &[Arc<Delivery>], node: u16, queued_at: std::time::Instant) -> u64 {
    let Some(first) = run.first() else { return 0 };
    let frames: outbound::Run =
        run.iter().map(|delivery| SharedMessages::queued(delivery.frame.clone(), queued_at)).collect();
    let mut delivered = 0u64;
    for &user in &first.recipients {
        // Nothing here waits: a full queue closes its connection.
        registry.each_device(user, |handle| {
            if !first.devices.include(node, handle.id) {
                return;
            }
            // A dialect may have no frame for some events: they are not sent to its devices.
            let sent = match handle.encoding {
                Encoding::Dialect(_) => frames.iter().filter(|frame| frame.get(handle.encoding).is_some()).count(),
                Encoding::Json | Encoding::MsgPack | Encoding::CompactJson => frames.len(),
            };
            if sent == 0 {
                return;
            }
            match handle.outbound.push(&frames) {
                Ok(()) => delivered += sent as u64,
                Err(Refused::Full) => {
                    metrics::counter!("switchboard_ws_slow_consumers_total").increment(1);
                    tracing::info!(user_id = user, connection = handle.id, "slow consumer closed");
                    handle.close(close_codes::SLOW_CONSUMER);
                }
                Err(Refused::Closed) => {}
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use protocol::server::{CallRinging, Pong};
    use protocol::{Encoding, ServerEvent};
    use router::{Delivery, DeviceRef, Devices};
    use storage::model::UserId;

    use super::Runs;
    use crate::fixture::fixture;
    use crate::outbound::{Inbox, queue};
    use crate::registry::Handle;
    use crate::{GatewayConfig, close_codes};

    fn connect(registry: &crate::registry::Registry, user_id: UserId, id: u64, limit: usize) -> (Arc<Handle>, Inbox) {
        let (outbound, inbox) = queue(limit);
        let claims = protocol::Claims { sub: user_id, jti: String::new(), iat: 0, exp: i64::MAX, fam: None };
        let handle = Arc::new(Handle::new(id, claims, Encoding::Json, outbound, 0));
        registry.insert(handle.clone());
        (handle, inbox)
    }

    fn ringing(recipients: Vec<UserId>, call: &str) -> Arc<Delivery> {
        Arc::new(Delivery::new(recipients, ServerEvent::CallRinging(CallRinging { call_id: call.into() })))
    }

    /// The events of each run in `inbox`, as their `call_id`s or types.
    fn runs(inbox: &mut Inbox) -> Vec<Vec<String>> {
        let mut runs = Vec::new();
        while let Some(run) = inbox.try_recv() {
            let frames = run.iter().map(|frame| {
                let event = frame.get(Encoding::Json).expect("JSON has every frame");
                let value: serde_json::Value = serde_json::from_str(event.to_text().unwrap()).unwrap();
                value["data"]["call_id"]
                    .as_str()
                    .map_or_else(|| value["type"].as_str().unwrap().to_owned(), str::to_owned)
            });
            runs.push(frames.collect());
        }
        runs
    }

    #[tokio::test]
    async fn consecutive_events_for_the_same_devices_share_one_run_in_order() {
        let config = GatewayConfig { outbound_queue: 3, ..GatewayConfig::default() };
        let f = fixture(config).await;
        let registry = &f.gateway.inner.registry;
        // The queues hold more than the configured limit: nobody is closed here.
        let (_, mut alice) = connect(registry, f.alice, 1, 16);
        let (_, mut bob) = connect(registry, f.bob, 2, 16);
        let (_, mut bobs_phone) = connect(registry, f.bob, 3, 16);
        let both = || vec![f.alice, f.bob];
        let not_the_phone = Devices::AllBut(DeviceRef { node: f.gateway.inner.config.node_id, connection: 3 });

        let mut turn = Runs::new(&f.gateway);
        for delivery in [
            ringing(both(), "a"),
            ringing(both(), "b"),
            // Another kind of event for the same users starts a run.
            Arc::new(Delivery::new(both(), ServerEvent::Pong(Pong { timestamp: "t".into() }))),
            ringing(both(), "c"),
            // Other recipients, then other devices: a run each.
            ringing(vec![f.bob], "d"),
            Arc::new(Delivery { devices: not_the_phone, ..(*ringing(vec![f.bob], "e")).clone() }),
            // A run holds no more than the configured queue does (3 here).
            ringing(vec![f.alice], "f"),
            ringing(vec![f.alice], "g"),
            ringing(vec![f.alice], "h"),
            ringing(vec![f.alice], "i"),
        ] {
            assert!(turn.take(Ok(delivery)));
        }
        turn.flush();
        assert_eq!(runs(&mut alice), [vec!["a", "b"], vec!["pong"], vec!["c"], vec!["f", "g", "h"], vec!["i"]]);
        assert_eq!(runs(&mut bob), [vec!["a", "b"], vec!["pong"], vec!["c"], vec!["d"], vec!["e"]]);
        assert_eq!(runs(&mut bobs_phone), [vec!["a", "b"], vec!["pong"], vec!["c"], vec!["d"]]);
        assert!(turn.pending.is_empty());
    }

    #[tokio::test]
    async fn a_run_that_would_overfill_a_queue_closes_that_connection_only() {
        let f = fixture(GatewayConfig { outbound_queue: 4, ..GatewayConfig::default() }).await;
        let registry = &f.gateway.inner.registry;
        let (slow, mut slow_inbox) = connect(registry, f.alice, 1, 4);
        let (quick, mut quick_inbox) = connect(registry, f.bob, 2, 8);
        let mut turn = Runs::new(&f.gateway);
        for call in ["1", "2", "3"] {
            assert!(turn.take(Ok(ringing(vec![f.alice, f.bob], call))));
        }
        turn.flush();
        // Three frames wait on each; two more fit only the larger queue.
        for call in ["4", "5"] {
            assert!(turn.take(Ok(ringing(vec![f.alice, f.bob], call))));
        }
        turn.flush();
        assert_eq!(slow.close_code.load(Ordering::Acquire), close_codes::SLOW_CONSUMER);
        assert_eq!(quick.close_code.load(Ordering::Acquire), 0);
        assert_eq!(runs(&mut slow_inbox), [vec!["1", "2", "3"]]);
        assert_eq!(runs(&mut quick_inbox), [vec!["1", "2", "3"], vec!["4", "5"]]);
    }

    #[tokio::test]
    async fn a_closed_router_ends_the_turn_after_what_was_read() {
        let f = fixture(GatewayConfig::default()).await;
        let (_, mut alice) = connect(&f.gateway.inner.registry, f.alice, 1, 8);
        let mut turn = Runs::new(&f.gateway);
        assert!(turn.take(Ok(ringing(vec![f.alice], "last"))));
        assert!(!turn.take(Err(tokio::sync::broadcast::error::RecvError::Closed)));
        assert_eq!(runs(&mut alice), [vec!["last"]]);
    }
}
