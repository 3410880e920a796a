//! The fan-out's internals for the bench crate's micro-benchmarks (feature
//! `bench-support`): a registry of local connections whose outbound
//! queues the benchmark drains itself (taking each frame in its
//! connection's encoding, as connection tasks do), fed by the real
//! [`deliver`].

use std::sync::Arc;

use router::Delivery;
use storage::model::UserId;

use crate::fanout::deliver;
use crate::outbound::{self, Inbox};
use crate::registry::{Handle, Registry};
use protocol::Encoding;

/// `connections` local connections, one per user `1..=connections`.
#[derive(Debug)]
pub struct LocalConnections {
    registry: Registry,
    queues: Vec<(Encoding, Inbox)>,
}

impl LocalConnections {
    /// Every `msgpack_every`-th connection speaks MessagePack (0: none).
    pub fn new(connections: usize, msgpack_every: usize, queue: usize) -> Self {
        let registry = Registry::default();
        let mut queues = Vec::with_capacity(connections);
        for n in 0..connections {
            let (outbound, receiver) = outbound::queue(queue);
            let msgpack = msgpack_every > 0 && n % msgpack_every == 0;
            let encoding = if msgpack { Encoding::MsgPack } else { Encoding::Json };
            let claims =
                protocol::Claims { sub: n as UserId + 1, jti: String::new(), iat: 0, exp: i64::MAX, fam: None };
            registry.insert(Arc::new(Handle::new(n as u64, claims, encoding, outbound, 0)));
            queues.push((encoding, receiver));
        }
        Self { registry, queues }
    }

    /// The real fan-out step for consecutive deliveries to the same
    /// recipients; answers the frames queued.
    pub fn deliver(&self, run: &[Arc<Delivery>]) -> u64 {
        deliver(&self.registry, run, 0, std::time::Instant::now())
    }

    /// Empties every queue, taking each frame in its connection's encoding
    /// (what connection tasks do before writing); answers the frames taken.
    pub fn drain(&mut self) -> usize {
        let mut frames = 0;
        for (encoding, queue) in &mut self.queues {
            while let Some(run) = queue.try_recv() {
                frames += run.iter().filter_map(|frame| frame.get(*encoding)).count();
            }
        }
        frames
    }
}
