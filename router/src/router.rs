use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use protocol::dialect::Audience;
use protocol::time::Millis;
use protocol::{Encoding, Frame, ServerEvent};
use serde::{Deserialize, Serialize};
use storage::model::UserId;
use tokio::sync::watch;

use crate::bus::{Bus, Subscription};

/// An event and the users who should receive it (every device of each,
/// unless `devices` narrows it). The event travels as a [`Frame`]: encoded
/// at most once per wire format on the node that made it, and never decoded
/// again on its way.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub recipients: Vec<UserId>,
    pub devices: Devices,
    pub frame: Frame,
}

/// Which of the recipients' devices get a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Devices {
    /// Every device, on every node.
    #[default]
    All,
    /// Only this one (call signalling to the device in the call).
    Only(crate::DeviceRef),
    /// Every device but this one (`answered_elsewhere`).
    AllBut(crate::DeviceRef),
}

impl Devices {
    /// Whether connection `connection` of node `node` is among them.
    pub fn include(self, node: u16, connection: u64) -> bool {
        let this = crate::DeviceRef { node, connection };
        match self {
            Self::All => true,
            Self::Only(device) => device == this,
            Self::AllBut(device) => device != this,
        }
    }
}

/// `switchboard_router_published_total`, by event type.
static PUBLISHED: crate::Family = crate::Family::new("switchboard_router_published_total", "type");

impl Delivery {
    /// Counts this delivery as published (`switchboard_router_published_total`,
    /// by event type), whichever way a router publishes it.
    pub(crate) fn count_published(&self) {
        PUBLISHED.increment(self.frame.kind(), 1);
    }

    /// `event`, stamped now, for `recipients`.
    pub fn new(recipients: Vec<UserId>, event: ServerEvent) -> Self {
        Self { recipients, devices: Devices::All, frame: Frame::new(event) }
    }

    /// `event` about a chat of `audience` (what dialects need to know of
    /// it), stamped now, for `recipients`.
    pub fn about(recipients: Vec<UserId>, event: ServerEvent, audience: Audience) -> Self {
        let frame = Frame::stamped_for(event, protocol::time::now_millis(), audience);
        Self { recipients, devices: Devices::All, frame }
    }

    /// The delivery as it crosses nodes: the recipients and the frame in
    /// both encodings (MessagePack around two opaque byte strings).
    pub(crate) fn to_wire(&self) -> Result<Vec<u8>, RouterError> {
        let wire = Wire {
            recipients: self.recipients.clone(),
            devices: self.devices,
            kind: self.frame.kind().to_owned(),
            at: self.frame.at(),
            json: self.frame.bytes(Encoding::Json),
            msgpack: self.frame.bytes(Encoding::MsgPack),
            audience: self.frame.audience(),
        };
        rmp_serde::to_vec(&wire).map_err(|error| RouterError::Unavailable(format!("delivery not encoded: {error}")))
    }

    /// A delivery read from another node: its frame is kept as the bytes it came as.
    pub(crate) fn from_wire(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        let wire: Wire = rmp_serde::from_slice(bytes)?;
        let frame = Frame::encoded(&wire.kind, wire.at, wire.json, wire.msgpack, wire.audience);
        Ok(Self { recipients: wire.recipients, devices: wire.devices, frame })
    }
}

/// [`Delivery`] on the wire between nodes.
#[derive(Serialize, Deserialize)]
struct Wire {
    recipients: Vec<UserId>,
    devices: Devices,
    kind: String,
    at: Millis,
    json: Bytes,
    msgpack: Bytes,
    /// Last, and defaulted: a delivery from a node that does not send it reads as no audience.
    #[serde(default)]
    audience: Audience,
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

    /// How to publish from a thread outside the async runtime (the
    /// store's writer, right after a commit), if this router can: its
    /// deliveries go out in the same order as [`Self::publish`]'s.
    fn publisher_now(&self) -> Option<Arc<dyn PublishNow>> {
        None
    }

    /// A new subscription receiving every delivery published from now on.
    /// Publishers wait (briefly) while a subscriber is far behind; one that
    /// falls [`crate::ROUTER_CAPACITY`] deliveries behind all the same gets
    /// `RecvError::Lagged` and must resync its clients from the store.
    fn subscribe(&self) -> Subscription;

    /// A counter that moves each time this node may have missed deliveries
    /// meant for it (its cluster subscription was lost and came back): its
    /// clients must resync from the store. `None` where nothing can be missed.
    fn resyncs(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// [`Router::publish`] for a thread outside the async runtime, which waits
/// itself (up to the same bound) while a subscriber is far behind.
pub trait PublishNow: Send + Sync + 'static {
    fn publish_now(&self, delivery: Delivery);
}

/// The in-process router of a single node: one [`Bus`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LocalRouter {
    bus: Bus,
}

impl LocalRouter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Router for LocalRouter {
    async fn publish(&self, delivery: Delivery) -> Result<(), RouterError> {
        delivery.count_published();
        self.bus.send(delivery).await;
        Ok(())
    }

    fn publisher_now(&self) -> Option<Arc<dyn PublishNow>> {
        Some(Arc::new(self.clone()))
    }

    fn subscribe(&self) -> Subscription {
        self.bus.subscribe()
    }
}

impl PublishNow for LocalRouter {
    fn publish_now(&self, delivery: Delivery) {
        delivery.count_published();
        self.bus.send_now(delivery);
    }
}

#[cfg(test)]
mod tests {
    use protocol::server::{CallRinging, TypingState};
    use protocol::{Encoding, ServerEvent};

    use super::{Delivery, Devices, LocalRouter, Router};

    fn ringing(id: &str) -> ServerEvent {
        ServerEvent::CallRinging(CallRinging { call_id: id.into() })
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_delivery() {
        let router = LocalRouter::new();
        router.publish(Delivery::new(vec![1], ringing("nobody listens"))).await.unwrap();
        let mut first = router.subscribe();
        let mut second = router.subscribe();
        let delivery = Delivery::new(vec![1, 2], ringing("c7"));
        router.publish(delivery.clone()).await.unwrap();
        for subscriber in [&mut first, &mut second] {
            let got = subscriber.recv().await.unwrap();
            assert_eq!(got.recipients, vec![1, 2]);
            assert_eq!(got.frame.event(), Some(&ringing("c7")), "in process, the event itself");
        }
        assert!(first.try_recv().is_err(), "nothing published before subscribing arrives");
    }

    #[test]
    fn a_delivery_crosses_nodes_as_the_bytes_it_was_encoded_to() {
        let event = ServerEvent::Typing(TypingState { chat_id: 3, user_id: 4, is_typing: true, timestamp: "t".into() });
        let answering = crate::DeviceRef { node: 2, connection: 9 };
        let delivery = Delivery { devices: Devices::AllBut(answering), ..Delivery::new(vec![4, 5], event) };
        let arrived = Delivery::from_wire(&delivery.to_wire().unwrap()).unwrap();
        assert_eq!(arrived.recipients, vec![4, 5]);
        assert_eq!(arrived.devices, Devices::AllBut(answering), "aimed at the same devices");
        assert!(!arrived.devices.include(2, 9) && arrived.devices.include(2, 8) && arrived.devices.include(1, 9));
        assert!(Devices::Only(answering).include(2, 9) && !Devices::Only(answering).include(1, 9));
        assert_eq!((arrived.frame.kind(), arrived.frame.at()), ("typing", delivery.frame.at()));
        assert!(arrived.frame.event().is_none(), "the payload is not decoded");
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            assert_eq!(arrived.frame.bytes(encoding), delivery.frame.bytes(encoding));
        }
        assert!(Delivery::from_wire(b"\x93garbage").is_err());
    }
}
