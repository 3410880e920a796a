//! Live connections by user, sharded by dashmap. Guards are only held to
//! copy handles out or to queue a frame on each; nothing awaits under them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};

use dashmap::DashMap;
use storage::model::UserId;
use tokio::sync::Notify;

use protocol::Encoding;

use crate::outbound::Outbound;

/// What a fan-out or sweeper can do to a connection.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) id: u64,
    pub(crate) user_id: UserId,
    /// The token the connection was opened with: when it expires or is
    /// revoked, the connection is closed.
    pub(crate) claims: protocol::Claims,
    pub(crate) encoding: Encoding,
    /// Outbound queue, bounded in frames: when it is full the consumer is
    /// too slow and is closed (4008); its client resyncs on reconnect.
    pub(crate) outbound: Outbound,
    /// Last frame from the client, in [`crate::Gateway::clock_ms`] (the sweeper reads it).
    pub(crate) last_seen: AtomicI64,
    /// A close code set by someone other than the connection task, and the
    /// bell that tells the task to look at it.
    pub(crate) close_code: AtomicU16,
    pub(crate) kick: Notify,
    /// Why the server closed it, when someone else said (the server API's
    /// `disconnect`); the close frame carries it.
    pub(crate) close_reason: std::sync::OnceLock<String>,
}

impl Handle {
    /// The handle of connection `id`, opened with `claims`, that last heard
    /// from its client at `last_seen` ([`crate::Gateway::clock_ms`]).
    pub(crate) fn new(
        id: u64,
        claims: protocol::Claims,
        encoding: Encoding,
        outbound: Outbound,
        last_seen: i64,
    ) -> Self {
        Self {
            id,
            user_id: claims.sub,
            claims,
            encoding,
            outbound,
            last_seen: AtomicI64::new(last_seen),
            close_code: AtomicU16::new(0),
            kick: Notify::new(),
            close_reason: std::sync::OnceLock::new(),
        }
    }

    /// Asks the connection task to close with `code` (first request wins).
    pub(crate) fn close(&self, code: u16) {
        if self.close_code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.kick.notify_one();
        }
    }
}

/// Every live connection on this node.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_user: DashMap<UserId, Vec<Arc<Handle>>>,
}

impl Registry {
    /// Adds a connection; answers whether it is the user's first here.
    pub(crate) fn insert(&self, handle: Arc<Handle>) -> bool {
        let mut devices = self.by_user.entry(handle.user_id).or_default();
        devices.push(handle);
        devices.len() == 1
    }

    /// Removes a connection; answers whether the user has none left here.
    pub(crate) fn remove(&self, user_id: UserId, id: u64) -> bool {
        let mut last = false;
        self.by_user.remove_if_mut(&user_id, |_, devices| {
            devices.retain(|handle| handle.id != id);
            last = devices.is_empty();
            last
        });
        last
    }

    /// Whether the user has a connection here: what presence registers.
    pub(crate) fn holds(&self, user_id: UserId) -> bool {
        self.by_user.contains_key(&user_id)
    }

    /// The user's connections (cloned handles; no guard kept).
    pub(crate) fn devices(&self, user_id: UserId) -> Vec<Arc<Handle>> {
        self.by_user.get(&user_id).map(|devices| devices.clone()).unwrap_or_default()
    }

    /// Runs `each` on every connection of the user, under the map's read
    /// guard: the fan-out's path, with no copy of the list per recipient.
    /// `each` must not wait, nor touch the registry.
    pub(crate) fn each_device(&self, user_id: UserId, mut each: impl FnMut(&Handle)) {
        if let Some(devices) = self.by_user.get(&user_id) {
            devices.iter().for_each(|handle| each(handle));
        }
    }

    /// Every connection (for the sweeper and shutdown).
    pub(crate) fn all(&self) -> Vec<Arc<Handle>> {
        self.by_user.iter().flat_map(|entry| entry.value().clone()).collect()
    }

    /// Users with a connection here.
    pub(crate) fn users(&self) -> usize {
        self.by_user.len()
    }

    pub(crate) fn connections(&self) -> usize {
        self.by_user.iter().map(|entry| entry.value().len()).sum()
    }
}
