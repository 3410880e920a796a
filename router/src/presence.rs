//! Who is online, across every node.
//!
//! A gateway tells the registry when a device connects and disconnects;
//! the registry answers whether that changed the user's presence for the
//! whole deployment (first device anywhere, last device gone), which is
//! when `presence` events are sent. [`LocalPresence`] counts devices in
//! this process; [`crate::redis::RedisPresence`] registers users per node
//! in Redis under a lease, so the users of a node that dies without a
//! goodbye go offline for everyone when its lease runs out.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use storage::model::UserId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a presence operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The registry's backend (Redis) cannot be reached right now.
    #[error("presence registry unavailable: {0}")]
    Unavailable(String),
    /// Another live process is registered under this node id.
    #[error("node id {0} is in use by another live process; give each process its own --node-id")]
    NodeIdInUse(u16),
}

/// A presence change the registry found on its own (not through
/// [`PresenceRegistry::connected`] or [`PresenceRegistry::disconnected`]):
/// users of a node that died, or users whose registration came back after
/// an outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub user_id: UserId,
    pub online: bool,
}

/// How many found presence changes may wait for the gateway to announce
/// them; when full, the reaper waits (it runs every few seconds, so the
/// wait costs nothing but delay).
pub const PRESENCE_CHANGES_CAPACITY: usize = 1_024;

/// User -> live devices, for the whole deployment.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// A device of `user_id` connected to this node. Answers whether the
    /// user had no device anywhere before (they came online).
    async fn connected(&self, user_id: UserId) -> Result<bool, PresenceError>;

    /// A device of `user_id` left this node. Answers whether the user has
    /// no device anywhere now (they went offline).
    async fn disconnected(&self, user_id: UserId) -> Result<bool, PresenceError>;

    /// Whether each of `user_ids` has a device anywhere, in order.
    async fn online(&self, user_ids: &[UserId]) -> Result<Vec<bool>, PresenceError>;

    /// Keeps this node's registrations alive and looks for dead nodes until
    /// `shutdown`, sending the changes it finds to `changes` (the gateway
    /// announces them). Deregisters this node on the way out.
    async fn run(&self, changes: mpsc::Sender<Vec<PresenceChange>>, shutdown: CancellationToken);

    /// Whether gateway node `node` is alive (its lease is being renewed).
    /// A single process is the only node there is.
    async fn node_alive(&self, _node: u16) -> Result<bool, PresenceError> {
        Ok(true)
    }
}

/// The single-node registry: device counts in memory.
#[derive(Debug, Default)]
pub struct LocalPresence {
    /// Devices per online user. A std mutex: held for one map operation,
    /// never across an await.
    devices: Mutex<HashMap<UserId, u32>>,
}

impl LocalPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, u32>> {
        // A panic while holding it cannot leave a count half-written.
        self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl PresenceRegistry for LocalPresence {
    async fn connected(&self, user_id: UserId) -> Result<bool, PresenceError> {
        let mut devices = self.devices();
        let count = devices.entry(user_id).or_default();
        *count += 1;
        Ok(*count == 1)
    }

    async fn disconnected(&self, user_id: UserId) -> Result<bool, PresenceError> {
        let mut devices = self.devices();
        let Some(count) = devices.get_mut(&user_id) else { return Ok(false) };
        *count -= 1;
        if *count == 0 {
            devices.remove(&user_id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn online(&self, user_ids: &[UserId]) -> Result<Vec<bool>, PresenceError> {
        let devices = self.devices();
        Ok(user_ids.iter().map(|user| devices.contains_key(user)).collect())
    }

    async fn run(&self, _changes: mpsc::Sender<Vec<PresenceChange>>, shutdown: CancellationToken) {
        // Nothing to keep alive: this process is the whole deployment.
        shutdown.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalPresence, PresenceRegistry};

    #[tokio::test]
    async fn first_and_last_device_change_presence() {
        let presence = LocalPresence::new();
        assert!(presence.connected(1).await.unwrap());
        assert!(!presence.connected(1).await.unwrap(), "a second device is not news");
        assert_eq!(presence.online(&[1, 2]).await.unwrap(), vec![true, false]);
        assert!(!presence.disconnected(1).await.unwrap());
        assert!(presence.disconnected(1).await.unwrap(), "the last device leaving is");
        assert!(!presence.disconnected(1).await.unwrap(), "an unknown device changes nothing");
        assert_eq!(presence.online(&[1]).await.unwrap(), vec![false]);
    }
}
