use std::sync::atomic::{AtomicU64, Ordering};

use protocol::time::now_millis;

/// Bits of the id given to the millisecond timestamp. 41 bits of
/// milliseconds from [`EPOCH_MILLIS`] last until 2093.
const TIME_BITS: u32 = 41;
/// Bits that tell nodes apart: 16 gateway/sidecar nodes can mint ids at once.
const NODE_BITS: u32 = 4;
/// Bits for the per-millisecond counter: 256 ids per millisecond per node
/// before the generator borrows from the next millisecond.
const COUNTER_BITS: u32 = 8;
const _: () = assert!(TIME_BITS + NODE_BITS + COUNTER_BITS == 53);

/// 2024-01-01T00:00:00Z: ids count milliseconds from here.
const EPOCH_MILLIS: i64 = 1_704_067_200_000;

/// The largest node id an [`IdGenerator`] accepts.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

/// Mints globally unique, time-ordered 53-bit ids (they stay exact in
/// JavaScript numbers).
///
/// Layout, high to low: 41 bits of milliseconds since 2024-01-01, 4 bits of
/// node id, 8 bits of counter. A burst of more than 256 ids in one
/// millisecond runs the clock ahead by a little instead of blocking, and a
/// wall clock that steps backwards never produces a smaller id.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// `(millis << COUNTER_BITS) | counter` of the last id handed out.
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for `node` (0..=[`MAX_NODE_ID`]).
    ///
    /// # Panics
    /// If `node` is larger than [`MAX_NODE_ID`]: two nodes sharing an id
    /// would mint duplicates, so this is a configuration error.
    pub fn new(node: u16) -> Self {
        assert!(node <= MAX_NODE_ID, "node id {node} is above {MAX_NODE_ID}");
        Self { node: u64::from(node), last: AtomicU64::new(0) }
    }

    /// The next id. Strictly greater than every id this generator returned.
    pub fn next_id(&self) -> i64 {
        let now = ((now_millis() - EPOCH_MILLIS).max(0) as u64) << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        let stamp = loop {
            let next = now.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(actual) => last = actual,
            }
        };
        let millis = stamp >> COUNTER_BITS;
        let counter = stamp & ((1 << COUNTER_BITS) - 1);
        ((millis << (NODE_BITS + COUNTER_BITS)) | (self.node << COUNTER_BITS) | counter) as i64
    }

    /// The creation time, in Unix milliseconds, encoded in `id`.
    pub fn millis_of(id: i64) -> i64 {
        (id >> (NODE_BITS + COUNTER_BITS)) + EPOCH_MILLIS
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::IdGenerator;

    #[test]
    fn ids_are_increasing_unique_and_fit_53_bits() {
        let ids = IdGenerator::new(3);
        let mut previous = 0;
        for _ in 0..100_000 {
            let id = ids.next_id();
            assert!(id > previous);
            assert!(id < 1 << 53);
            previous = id;
        }
        let age = protocol::time::now_millis() - IdGenerator::millis_of(previous);
        assert!(age.abs() < 60_000, "id time is off by {age} ms");
    }

    #[test]
    fn nodes_never_collide() {
        let a = IdGenerator::new(0);
        let b = IdGenerator::new(1);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(a.next_id()));
            assert!(seen.insert(b.next_id()));
        }
    }

    #[test]
    fn concurrent_callers_get_distinct_ids() {
        let ids = std::sync::Arc::new(IdGenerator::new(7));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..20_000).map(|_| ids.next_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for handle in handles {
            for id in handle.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 80_000);
    }

    #[test]
    #[should_panic(expected = "node id 16")]
    fn node_id_out_of_range_is_refused() {
        let _ = IdGenerator::new(16);
    }
}
