//! Events for app backends' webhooks: what a use case tells the outside
//! world happened (`message.created` with the recipients who were offline,
//! `message.read`, `user.online` and `user.offline`, `call.missed`,
//! `notification.created`). A use case hands an event over without
//! waiting: the queue is bounded, and an event that finds it full is
//! counted as dropped rather than slow a send. The outbox that keeps them
//! durable and delivers them is the `webhooks` crate's.

use protocol::time::{Millis, now_millis};
use rand::RngCore;
use serde::Serialize;
use tokio::sync::mpsc;

/// Webhook event types.
pub mod types {
    pub const MESSAGE_CREATED: &str = "message.created";
    pub const MESSAGE_READ: &str = "message.read";
    pub const USER_ONLINE: &str = "user.online";
    pub const USER_OFFLINE: &str = "user.offline";
    pub const CALL_MISSED: &str = "call.missed";
    pub const NOTIFICATION_CREATED: &str = "notification.created";
}

/// One webhook event: the body every receiver gets, `{id, type, created_at, data}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookEvent {
    /// Unique; the same on every retry, for receivers' idempotency.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix milliseconds.
    pub created_at: Millis,
    pub data: serde_json::Value,
}

impl HookEvent {
    /// A new event of `kind`, stamped now, with a fresh id.
    pub fn new(kind: &'static str, data: serde_json::Value) -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Self { id: format!("evt_{}", hex::encode(id)), kind, created_at: now_millis(), data }
    }
}

/// Where use cases hand their webhook events. Cheap to clone; with no
/// webhook configured it does nothing at all.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    sender: Option<mpsc::Sender<HookEvent>>,
}

impl Hooks {
    /// Hooks feeding a queue of `capacity` events, and its consuming end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<HookEvent>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Self { sender: Some(sender) }, receiver)
    }

    /// Whether anyone listens (skip building an event's data when not).
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Hands over an event without waiting.
    pub fn emit(&self, kind: &'static str, data: serde_json::Value) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(HookEvent::new(kind, data)) {
            Ok(()) => metrics::counter!("switchboard_webhook_events_total", "type" => kind).increment(1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("switchboard_webhook_dropped_total", "reason" => "queue_full").increment(1);
                tracing::warn!(kind, "webhook queue full: event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("switchboard_webhook_dropped_total", "reason" => "closed").increment(1);
            }
        }
    }
}
