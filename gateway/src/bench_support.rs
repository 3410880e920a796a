//! The fan-out's internals for the bench crate's micro-benchmarks (feature
//! `bench-support`): a registry of local connections whose outbound
//! queues the benchmark drains itself, fed by the real [`deliver`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU16};

use router::Delivery;
use storage::model::UserId;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::fanout::deliver;
use crate::registry::{Handle, Registry};
use protocol::Encoding;

/// `connections` local connections, one per user `1..=connections`.
#[derive(Debug)]
pub struct LocalConnections {
    registry: Registry,
    queues: Vec<mpsc::Receiver<Message>>,
}

impl LocalConnections {
    /// Every `msgpack_every`-th connection speaks MessagePack (0: none).
    pub fn new(connections: usize, msgpack_every: usize, queue: usize) -> Self {
        let registry = Registry::default();
        let mut queues = Vec::with_capacity(connections);
        for n in 0..connections {
            let (outbound, receiver) = mpsc::channel(queue);
            let msgpack = msgpack_every > 0 && n % msgpack_every == 0;
            registry.insert(Arc::new(Handle {
                id: n as u64,
                user_id: n as UserId + 1,
                claims: protocol::Claims { sub: n as UserId + 1, jti: String::new(), iat: 0, exp: i64::MAX, fam: None },
                encoding: if msgpack { Encoding::MsgPack } else { Encoding::Json },
                outbound,
                last_seen: AtomicI64::new(0),
                close_code: AtomicU16::new(0),
                kick: Notify::new(),
                close_reason: std::sync::OnceLock::new(),
            }));
            queues.push(receiver);
        }
        Self { registry, queues }
    }

    /// The real fan-out step; answers the connections reached.
    pub fn deliver(&self, delivery: &Delivery) -> u64 {
        deliver(&self.registry, delivery, 0)
    }

    /// Empties every queue (what connection tasks would do); answers the frames taken.
    pub fn drain(&mut self) -> usize {
        let mut frames = 0;
        for queue in &mut self.queues {
            while queue.try_recv().is_ok() {
                frames += 1;
            }
        }
        frames
    }
}
