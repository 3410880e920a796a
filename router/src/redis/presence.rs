//! Presence across nodes: each node registers its online users in Redis
//! (`user -> nodes`, `node -> users`) under a lease it refreshes every few
//! seconds. Any node that finds another node's lease expired drops that
//! node's registrations in one atomic script (so exactly one node does it)
//! and announces the users it left with no node as offline.
//!
//! Only a user's first device on this node and last device leaving it touch
//! Redis; the gateway's registry counts the devices. Syncs run one at a
//! time under an async lock and read the registry inside it, so Redis
//! always ends as the registry stands. When a transition could not reach
//! Redis, or Redis lost the node's registrations (a restart), the next
//! lease refresh rewrites the node's registrations from the users
//! registered here and reports who came back online.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use storage::model::UserId;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::scripts::SCRIPTS;
use super::{RedisConnection, Retry};
use crate::presence::{Here, NodeReport, PresenceChange, PresenceError, PresenceRegistry, reconcile};

/// The cluster's presence registry. Cheap to clone.
#[derive(Clone)]
pub struct RedisPresence {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisConnection,
    /// The users registered on this node. An async lock held across the
    /// Redis call of a transition, so transitions reach Redis in order.
    users: Mutex<HashSet<UserId>>,
    /// A transition failed to reach Redis: rewrite the registrations.
    dirty: AtomicBool,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").field("redis", &self.inner.redis).finish_non_exhaustive()
    }
}

fn unavailable(error: String) -> PresenceError {
    PresenceError::Unavailable(error)
}

fn changes(users: Vec<UserId>, online: bool) -> Vec<PresenceChange> {
    users.into_iter().map(|user_id| PresenceChange { user_id, online }).collect()
}

impl RedisPresence {
    pub fn new(redis: RedisConnection) -> Self {
        Self { inner: Arc::new(Inner { redis, users: Mutex::default(), dirty: AtomicBool::new(true) }) }
    }

    fn redis(&self) -> &RedisConnection {
        &self.inner.redis
    }

    async fn transition(&self, script: &redis::Script, user_id: UserId) -> Result<bool, PresenceError> {
        let mut invocation = self.redis().node_call(script);
        invocation.arg(user_id);
        match self.redis().run::<i64>(&invocation, Retry::IfDropped).await {
            Ok(changed) => Ok(changed == 1),
            Err(error) => {
                self.inner.dirty.store(true, Ordering::Release);
                Err(unavailable(error))
            }
        }
    }

    /// Makes sure no live process holds this node id: a lease that is still
    /// being renewed (it moves within one refresh interval) belongs to
    /// another process, and two nodes with one id would undo each other's
    /// registrations. A lease that stands still was left by a process that
    /// died; it is taken over. Answers `Err` when the id is taken.
    pub async fn claim(&self) -> Result<(), PresenceError> {
        let config = self.redis().config();
        let lease = || async {
            let invocation = self.redis().node_call(&SCRIPTS.lease_of);
            self.redis().run::<Option<i64>>(&invocation, Retry::IfDropped).await.map_err(unavailable)
        };
        let Some(first) = lease().await? else { return Ok(()) };
        tracing::info!(node = config.node_id, "a lease for this node id exists; checking whether its holder is alive");
        tokio::time::sleep(config.lease_refresh + std::time::Duration::from_secs(1)).await;
        match lease().await? {
            Some(now) if now != first => Err(PresenceError::NodeIdInUse(config.node_id)),
            _ => Ok(()),
        }
    }

    /// Drops whatever an earlier process with this node id left registered
    /// (it died without a goodbye); answers those users who are now offline.
    async fn drop_own(&self) -> Result<Vec<UserId>, PresenceError> {
        let invocation = self.redis().node_call(&SCRIPTS.drop_node);
        self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)
    }

    /// Renews the lease; rewrites the registrations when Redis lost them or
    /// a transition failed. Answers the presence changes that caused.
    async fn refresh(&self) -> Result<Vec<PresenceChange>, PresenceError> {
        let config = self.redis().config();
        let ttl_ms = config.lease_ttl.as_millis() as u64;
        if !self.inner.dirty.load(Ordering::Acquire) {
            let mut invocation = self.redis().node_call(&SCRIPTS.lease);
            invocation.arg(ttl_ms);
            let known: i64 = self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
            if known == 1 {
                return Ok(Vec::new());
            }
            tracing::warn!(node = config.node_id, "Redis lost this node's registrations; registering again");
        }
        let users = self.inner.users.lock().await;
        let mut invocation = self.redis().node_call(&SCRIPTS.reregister);
        invocation.arg(ttl_ms);
        for user in users.iter() {
            invocation.arg(*user);
        }
        let (came, went): (Vec<UserId>, Vec<UserId>) =
            self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        self.inner.dirty.store(false, Ordering::Release);
        drop(users);
        metrics::counter!("switchboard_presence_reregistered_total").increment(1);
        let mut found = changes(came, true);
        found.extend(changes(went, false));
        Ok(found)
    }

    /// Drops the registrations of every node whose lease ran out.
    async fn reap(&self) -> Result<Vec<UserId>, PresenceError> {
        let invocation = self.redis().node_call(&SCRIPTS.reap);
        self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)
    }
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    async fn node_alive(&self, node: u16) -> Result<bool, PresenceError> {
        let mut invocation = SCRIPTS.node_alive.prepare_invoke();
        invocation.arg(&self.redis().config().prefix).arg(node);
        let alive: u8 = self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(alive == 1)
    }

    async fn sync(&self, user_id: UserId, here: Here<'_>) -> Result<Option<bool>, PresenceError> {
        let mut users = self.inner.users.lock().await;
        // The registration changes here even when Redis cannot be told:
        // the next lease refresh rewrites Redis from this set.
        let Some(arrived) = reconcile(&mut users, user_id, here()) else { return Ok(None) };
        let script = if arrived { &SCRIPTS.user_online } else { &SCRIPTS.user_offline };
        // Whether the user came online (or went offline) for everyone.
        Ok(self.transition(script, user_id).await?.then_some(arrived))
    }

    async fn set_devices(&self, user_id: UserId, count: u32) -> Result<(), PresenceError> {
        let mut invocation = self.redis().node_call(&SCRIPTS.set_devices);
        invocation.arg(user_id).arg(count);
        self.redis().run::<i64>(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(())
    }

    async fn devices(&self, user_ids: &[UserId]) -> Result<Vec<u32>, PresenceError> {
        let mut invocation = SCRIPTS.devices.prepare_invoke();
        invocation.arg(&self.redis().config().prefix);
        for user in user_ids {
            invocation.arg(*user);
        }
        let counts: Vec<i64> = self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(counts.into_iter().map(|count| u32::try_from(count).unwrap_or(0)).collect())
    }

    async fn report(&self, report: &NodeReport) -> Result<(), PresenceError> {
        let text = serde_json::to_string(report).map_err(|error| unavailable(error.to_string()))?;
        let mut invocation = self.redis().node_call(&SCRIPTS.report);
        invocation.arg(text);
        self.redis().run::<i64>(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(())
    }

    async fn reports(&self) -> Result<Vec<NodeReport>, PresenceError> {
        let mut invocation = SCRIPTS.reports.prepare_invoke();
        invocation.arg(&self.redis().config().prefix);
        let texts: Vec<String> = self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(texts.iter().filter_map(|text| serde_json::from_str(text).ok()).collect())
    }

    async fn online(&self, user_ids: &[UserId]) -> Result<Vec<bool>, PresenceError> {
        let config = self.redis().config();
        let mut invocation = SCRIPTS.users_online.prepare_invoke();
        invocation.arg(&config.prefix);
        for user in user_ids {
            invocation.arg(*user);
        }
        let online: Vec<i64> = self.redis().run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(online.into_iter().map(|flag| flag == 1).collect())
    }

    async fn run(&self, changes_out: mpsc::Sender<Vec<PresenceChange>>, shutdown: CancellationToken) {
        let node = self.redis().config().node_id;
        match self.drop_own().await {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(
                    node,
                    users = gone.len(),
                    "dropped what an earlier process of this node left registered"
                );
                let _ = changes_out.send(changes(gone, false)).await;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(node, %error, "could not clear this node's earlier registrations"),
        }
        let mut tick = tokio::time::interval(self.redis().config().lease_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match self.refresh().await {
                Ok(found) if !found.is_empty() => {
                    let _ = changes_out.send(found).await;
                }
                Ok(_) => {}
                Err(error) => {
                    metrics::counter!("switchboard_presence_lease_failures_total").increment(1);
                    tracing::warn!(node, %error, "presence lease not renewed");
                    continue;
                }
            }
            match self.reap().await {
                Ok(gone) if !gone.is_empty() => {
                    metrics::counter!("switchboard_presence_reaped_users_total").increment(gone.len() as u64);
                    tracing::warn!(node, users = gone.len(), "a node's lease ran out; its users are offline");
                    let _ = changes_out.send(changes(gone, false)).await;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(node, %error, "looking for dead nodes failed"),
            }
        }
        // A clean exit: nobody needs to wait for the lease to run out.
        match self.drop_own().await {
            Ok(gone) if !gone.is_empty() => {
                let _ = changes_out.try_send(changes(gone, false));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(node, %error, "could not deregister this node"),
        }
    }
}
