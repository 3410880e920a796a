use std::sync::Arc;

use async_trait::async_trait;
use protocol::Event;
use serde::{Deserialize, Serialize};
use storage::model::UserId;
use tokio::sync::{broadcast, watch};

/// An event and the users who should receive it (every device of each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub recipients: Vec<UserId>,
    pub event: Event,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The transport (Redis in cluster mode) cannot take events right now.
    #[error("router unavailable: {0}")]
    Unavailable(String),
}

/// Publish/subscribe of deliveries between the code that makes events
/// (sidecar, gateway) and the code that holds connections (gateway).
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// Hands `delivery` to every subscriber (on every node, in a cluster).
    async fn publish(&self, delivery: Delivery) -> Result<(), RouterError>;

    /// A new subscription receiving every delivery published from now on.
    /// A subscriber that falls [`ROUTER_CAPACITY`] deliveries behind gets
    /// `RecvError::Lagged` and must resync its clients from the store.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>>;

    /// A counter that moves each time this node may have missed deliveries
    /// meant for it (its cluster subscription was lost and came back): its
    /// clients must resync from the store. `None` where nothing can be missed.
    fn resyncs(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// How many deliveries a subscriber may fall behind before it lags.
pub const ROUTER_CAPACITY: usize = 16_384;

/// The in-process router of a single node: one broadcast channel. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct LocalRouter {
    /// Bounded: a slow subscriber lags (and resyncs) instead of making
    /// memory grow; publishers never wait.
    sender: broadcast::Sender<Arc<Delivery>>,
}

impl Default for LocalRouter {
    fn default() -> Self {
        Self { sender: broadcast::channel(ROUTER_CAPACITY).0 }
    }
}

impl LocalRouter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Router for LocalRouter {
    async fn publish(&self, delivery: Delivery) -> Result<(), RouterError> {
        metrics::counter!("switchboard_router_published_total", "type" => delivery.event.kind.clone()).increment(1);
        // No subscriber (no gateway yet, or none connected) is not an error:
        // the store holds the message and clients sync it.
        let _ = self.sender.send(Arc::new(delivery));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use protocol::Event;

    use super::{Delivery, LocalRouter, Router};

    #[tokio::test]
    async fn every_subscriber_gets_every_delivery() {
        let router = LocalRouter::new();
        router.publish(Delivery { recipients: vec![1], event: Event::new("nobody.listens", ()) }).await.unwrap();
        let mut first = router.subscribe();
        let mut second = router.subscribe();
        let delivery =
            Delivery { recipients: vec![1, 2], event: Event::new("message.new", serde_json::json!({"id": 7})) };
        router.publish(delivery.clone()).await.unwrap();
        assert_eq!(*first.recv().await.unwrap(), delivery);
        assert_eq!(*second.recv().await.unwrap(), delivery);
        assert!(first.try_recv().is_err(), "nothing published before subscribing arrives");
    }
}
