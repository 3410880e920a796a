//! Deliveries between nodes over Redis pub/sub, one channel per node.
//!
//! A publish always reaches this node's own subscribers first, through the
//! in-process broadcast, so local delivery goes on while Redis is down.
//! Then the MessagePack-encoded delivery joins an ordered outbox, and the
//! publisher task makes one script call per delivery that looks up which
//! other nodes hold any recipient (the presence registrations) and
//! publishes it once to each of those nodes' channels: Redis work per
//! message grows with the recipients and the nodes that hold them, never
//! with idle nodes. The sender's ack waits for the store, not for Redis.
//!
//! Each node reads its channel on a dedicated pub/sub connection. When that
//! connection is lost, deliveries meant for this node are lost with it:
//! after resubscribing, the router bumps its resync counter, and the
//! gateway asks every local client to reconnect and `sync` from the store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use storage::model::UserId;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::scripts::SCRIPTS;
use super::{RedisConnection, Retry};
use crate::bus::{Bus, Subscription};
use crate::router::{Delivery, Router, RouterError};

/// First wait before resubscribing after the pub/sub connection is lost;
/// doubled per failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Deliveries waiting to be published to other nodes. Bounded: when Redis
/// falls this far behind, publishers wait up to the Redis timeout, then get
/// an error (the message is stored; clients `sync` it).
const OUTBOX_CAPACITY: usize = 8_192;

/// Publishes drained from the outbox and sent to Redis together.
const PUBLISH_BATCH: usize = 128;

/// A delivery on its way to other nodes.
struct Outgoing {
    recipients: Vec<UserId>,
    payload: Vec<u8>,
}

/// The cluster's router. Cheap to clone; must be made inside a Tokio
/// runtime (it starts its publisher task, which ends with the last clone).
#[derive(Clone)]
pub struct RedisRouter {
    redis: RedisConnection,
    /// To the publisher task, which keeps publishes in order without
    /// making the sender wait for Redis.
    outbox: mpsc::Sender<Outgoing>,
    /// This node's subscribers. Bounded: publishers wait while a
    /// subscriber is far behind, and one that stays behind lags and resyncs.
    local: Bus,
    /// Bumped each time the node's subscription came back after a loss.
    resyncs: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for RedisRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRouter").field("redis", &self.redis).finish_non_exhaustive()
    }
}

impl RedisRouter {
    pub fn new(redis: RedisConnection) -> Self {
        let (outbox, queued) = mpsc::channel(OUTBOX_CAPACITY);
        tokio::spawn(publish(redis.clone(), queued));
        Self { redis, outbox, local: Bus::default(), resyncs: Arc::new(watch::channel(0).0) }
    }

    fn channel(&self) -> String {
        self.redis.key(format_args!("node:{}", self.redis.config().node_id))
    }

    /// Reads this node's channel until `shutdown`, resubscribing with
    /// backoff whenever the connection is lost. Only nodes that hold
    /// connections run it; a sidecar only publishes.
    pub async fn run(self, shutdown: CancellationToken) {
        let channel = self.channel();
        let mut backoff = FIRST_BACKOFF;
        let mut subscribed_before = false;
        loop {
            let subscription = tokio::select! {
                () = shutdown.cancelled() => return,
                subscription = self.subscribe(&channel) => subscription,
            };
            match subscription {
                Ok(pubsub) => {
                    backoff = FIRST_BACKOFF;
                    metrics::gauge!("switchboard_router_subscribed").set(1.0);
                    if subscribed_before {
                        // Whatever was published to us meanwhile is gone.
                        tracing::warn!(channel, "router resubscribed; local clients must resync");
                        metrics::counter!("switchboard_router_resyncs_total").increment(1);
                        self.resyncs.send_modify(|count| *count += 1);
                    } else {
                        tracing::info!(channel, "router subscribed");
                    }
                    subscribed_before = true;
                    if self.forward(pubsub, &shutdown).await {
                        return;
                    }
                    metrics::gauge!("switchboard_router_subscribed").set(0.0);
                    tracing::warn!(channel, "router subscription lost; resubscribing");
                }
                Err(error) => {
                    tracing::warn!(channel, %error, retry_in_ms = backoff.as_millis(), "router cannot subscribe");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, String> {
        let timeout = self.redis.config().timeout;
        let subscribe = async {
            let mut pubsub = self.redis.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(timeout * 2, subscribe).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("Redis did not answer in time".into()),
        }
    }

    /// Hands every delivery read from `pubsub` to the local subscribers
    /// until the connection ends; answers whether it ended for shutdown.
    async fn forward(&self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) -> bool {
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return true,
                message = messages.next() => message,
            };
            let Some(message) = message else { return false };
            match Delivery::from_wire(message.get_payload_bytes()) {
                Ok(delivery) => {
                    metrics::counter!("switchboard_router_received_total").increment(1);
                    // Waits while the gateway is far behind: the pub/sub
                    // connection then backs up in Redis.
                    self.local.send(delivery).await;
                }
                Err(error) => {
                    metrics::counter!("switchboard_router_undecodable_total").increment(1);
                    tracing::warn!(%error, "undecodable delivery on the router channel");
                }
            }
        }
    }
}

/// Sends queued deliveries to the nodes holding their recipients, in queue
/// order: each drained batch goes out together over the multiplexed
/// connection, which Redis runs in the order it arrives.
async fn publish(redis: RedisConnection, mut queued: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queued.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        metrics::histogram!("switchboard_router_publish_batch").record(batch.len() as f64);
        let sends = batch.drain(..).map(|outgoing| {
            let redis = redis.clone();
            async move {
                let mut invocation = redis.node_call(&SCRIPTS.route);
                invocation.arg(outgoing.payload);
                for user in &outgoing.recipients {
                    invocation.arg(*user);
                }
                redis.run::<u64>(&invocation, Retry::IfDropped).await
            }
        });
        let mut failed = 0u64;
        for outcome in futures_util::future::join_all(sends).await {
            match outcome {
                Ok(nodes) => metrics::histogram!("switchboard_router_nodes_per_publish").record(nodes as f64),
                Err(error) => {
                    if failed == 0 {
                        tracing::warn!(%error, "deliveries not published to other nodes; their clients will sync");
                    }
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            metrics::counter!("switchboard_router_publish_failures_total").increment(failed);
        }
    }
}

#[async_trait]
impl Router for RedisRouter {
    async fn publish(&self, delivery: Delivery) -> Result<(), RouterError> {
        delivery.count_published();
        // Encoded once, here, in both formats: receiving nodes write these
        // bytes as they come.
        let payload = delivery.to_wire()?;
        let outgoing = Outgoing { recipients: delivery.recipients.clone(), payload };
        // Local subscribers first: they need nothing from Redis.
        self.local.send(delivery).await;
        if outgoing.recipients.is_empty() {
            return Ok(());
        }
        match self.outbox.try_send(outgoing) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(outgoing)) => {
                // Redis is slower than this node's publishers: wait, briefly.
                let wait = self.redis.config().timeout;
                match tokio::time::timeout(wait, self.outbox.send(outgoing)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(RouterError::Unavailable("the router's publisher stopped".into())),
                    Err(_) => {
                        metrics::counter!("switchboard_router_outbox_full_total").increment(1);
                        Err(RouterError::Unavailable("Redis is not keeping up with publishes".into()))
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(RouterError::Unavailable("the router's publisher stopped".into()))
            }
        }
    }

    fn subscribe(&self) -> Subscription {
        self.local.subscribe()
    }

    fn resyncs(&self) -> Option<watch::Receiver<u64>> {
        Some(self.resyncs.subscribe())
    }
}
