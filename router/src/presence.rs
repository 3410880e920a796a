//! Who is online, across every node.
//!
//! The gateway's registry is the one counter of a node's devices. When a
//! device connects or leaves, the gateway asks this registry to bring the
//! user's registration in line with it ([`PresenceRegistry::sync`]); the
//! answer says whether that changed the user's presence for the whole
//! deployment (first device anywhere, last device gone), which is when
//! `presence` events are sent. [`LocalPresence`] keeps the set of online
//! users in this process; [`crate::redis::RedisPresence`] registers users
//! per node in Redis under a lease, so the users of a node that dies
//! without a goodbye go offline for everyone when its lease runs out.

use std::collections::{HashMap, HashSet};
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

/// Reads whether a user has a device on this node now: the gateway's
/// registry, asked at the moment of the sync.
pub type Here<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// Who is online, for the whole deployment.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// A device of `user_id` connected to this node or left it: registers
    /// or deregisters the user on this node as `here` says now. `here` is
    /// read inside the sync, one sync at a time, so syncs that race each
    /// other still leave the registration as the registry stands, never
    /// as it stood when a late one started. Answers the user's change for
    /// the whole deployment: `Some(true)` when they had no device anywhere
    /// before (they came online), `Some(false)` when they have none
    /// anywhere now (they went offline), `None` for no change.
    async fn sync(&self, user_id: UserId, here: Here<'_>) -> Result<Option<bool>, PresenceError>;

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

    /// Records how many devices `user_id` has on this node now (the
    /// gateway's registry counts them), while they are registered here.
    async fn set_devices(&self, user_id: UserId, count: u32) -> Result<(), PresenceError>;

    /// How many devices each of `user_ids` has over every node, in order.
    async fn devices(&self, user_ids: &[UserId]) -> Result<Vec<u32>, PresenceError>;

    /// Keeps this node's latest [`NodeReport`].
    async fn report(&self, report: &NodeReport) -> Result<(), PresenceError>;

    /// The latest report of every live node.
    async fn reports(&self) -> Result<Vec<NodeReport>, PresenceError>;
}

/// What a gateway node says of itself every few seconds (the server API's
/// stats read them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeReport {
    pub node_id: u16,
    /// Live WebSocket connections.
    pub connections: u64,
    /// Users with at least one connection on this node.
    pub users_online: u64,
    /// Messages sent through this node per second, over the last interval.
    pub messages_per_second: f64,
    /// When it was made, Unix milliseconds.
    pub at: protocol::time::Millis,
}

/// What [`PresenceRegistry::sync`] does to a set of registered users:
/// adds or removes `user_id` as `here` says; answers the change.
pub(crate) fn reconcile(users: &mut HashSet<UserId>, user_id: UserId, here: bool) -> Option<bool> {
    match (here, users.contains(&user_id)) {
        (true, false) => {
            users.insert(user_id);
            Some(true)
        }
        (false, true) => {
            users.remove(&user_id);
            Some(false)
        }
        _ => None,
    }
}

/// The single-node registry: the set of online users, in memory.
#[derive(Debug, Default)]
pub struct LocalPresence {
    /// A std mutex: held for one set operation, never across an await.
    users: Mutex<HashSet<UserId>>,
    /// Devices per online user.
    devices: Mutex<HashMap<UserId, u32>>,
    report: Mutex<Option<NodeReport>>,
}

impl LocalPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashSet<UserId>> {
        // A panic while holding it cannot leave the set half-written.
        self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl PresenceRegistry for LocalPresence {
    async fn sync(&self, user_id: UserId, here: Here<'_>) -> Result<Option<bool>, PresenceError> {
        let mut users = self.users();
        Ok(reconcile(&mut users, user_id, here()))
    }

    async fn online(&self, user_ids: &[UserId]) -> Result<Vec<bool>, PresenceError> {
        let users = self.users();
        Ok(user_ids.iter().map(|user| users.contains(user)).collect())
    }

    async fn run(&self, _changes: mpsc::Sender<Vec<PresenceChange>>, shutdown: CancellationToken) {
        // Nothing to keep alive: this process is the whole deployment.
        shutdown.cancelled().await;
    }

    async fn set_devices(&self, user_id: UserId, count: u32) -> Result<(), PresenceError> {
        let mut devices = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if count == 0 {
            devices.remove(&user_id);
        } else {
            devices.insert(user_id, count);
        }
        Ok(())
    }

    async fn devices(&self, user_ids: &[UserId]) -> Result<Vec<u32>, PresenceError> {
        let devices = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(user_ids.iter().map(|user| devices.get(user).copied().unwrap_or(0)).collect())
    }

    async fn report(&self, report: &NodeReport) -> Result<(), PresenceError> {
        *self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report.clone());
        Ok(())
    }

    async fn reports(&self) -> Result<Vec<NodeReport>, PresenceError> {
        Ok(self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalPresence, PresenceRegistry};

    #[tokio::test]
    async fn presence_follows_what_the_registry_says_now() {
        let presence = LocalPresence::new();
        let (here, gone) = (|| true, || false);
        assert_eq!(presence.sync(1, &here).await.unwrap(), Some(true), "the first device");
        assert_eq!(presence.sync(1, &here).await.unwrap(), None, "a second device is not news");
        assert_eq!(presence.online(&[1, 2]).await.unwrap(), vec![true, false]);
        assert_eq!(presence.sync(1, &gone).await.unwrap(), Some(false), "the last device leaving is");
        assert_eq!(presence.sync(1, &gone).await.unwrap(), None, "a late sync of a departure changes nothing");
        assert_eq!(presence.online(&[1]).await.unwrap(), vec![false]);
    }
}
