//! How a chat's messages split into partitions for a wide-column store.
//!
//! A chat's history is partitioned by `(chat_id, bucket)`, where a bucket
//! holds a fixed span of consecutive seqs (seqs `1..=span` are bucket 0),
//! clustered by seq descending. "The latest N before X" then starts in
//! `X - 1`'s bucket and reads downwards, which is one partition unless the
//! page crosses a bucket boundary; "N after X" reads upwards the same way.
//! The walking is plain arithmetic here, so it is tested without a
//! database; the conformance suite pages long histories across the default
//! span's boundaries.

use std::ops::RangeInclusive;

use crate::model::Seq;

/// Seqs per partition by default: at a few hundred bytes a message, a full
/// bucket is a couple of MiB, far below where wide partitions hurt, and a
/// chat of a million messages is a few hundred partitions.
pub const DEFAULT_SPAN: u64 = 4_096;

/// The bucket layout of message partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    span: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Self { span: DEFAULT_SPAN }
    }
}

impl Buckets {
    /// Buckets of `span` seqs each; `None` for an empty span.
    pub fn new(span: u64) -> Option<Self> {
        (span > 0).then_some(Self { span })
    }

    pub fn span(self) -> u64 {
        self.span
    }

    /// The bucket holding `seq` (seqs start at 1; 0 falls in bucket 0).
    pub fn of(self, seq: Seq) -> u64 {
        seq.saturating_sub(1) / self.span
    }

    /// The seqs bucket `bucket` holds.
    pub fn seqs(self, bucket: u64) -> RangeInclusive<Seq> {
        bucket * self.span + 1..=(bucket + 1) * self.span
    }

    /// The buckets to read, newest first, for messages with seq below
    /// `before` (exclusive): from `before - 1`'s bucket down to bucket 0.
    /// Empty when `before` is 1 or less. The reader stops early once its
    /// page is full.
    pub fn descending(self, before: Seq) -> impl Iterator<Item = u64> {
        let top = (before > 1).then(|| self.of(before - 1));
        top.into_iter().flat_map(|top| (0..=top).rev())
    }

    /// The buckets to read, oldest first, for messages with seq above
    /// `after` (exclusive) up to `last` (the chat's highest seq). Empty
    /// when there is nothing above `after`.
    pub fn ascending(self, after: Seq, last: Seq) -> impl Iterator<Item = u64> {
        let range = (after < last).then(|| self.of(after + 1)..=self.of(last));
        range.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::{Buckets, DEFAULT_SPAN};

    /// The seqs the walk visits, in the order it visits them (below or
    /// above the bound only, as a reader filters within a partition).
    fn visited_down(buckets: Buckets, before: u64) -> Vec<u64> {
        buckets.descending(before).flat_map(|b| buckets.seqs(b).rev()).filter(|&seq| seq < before).collect()
    }

    fn visited_up(buckets: Buckets, after: u64, last: u64) -> Vec<u64> {
        buckets.ascending(after, last).flat_map(|b| buckets.seqs(b)).filter(|&seq| seq > after && seq <= last).collect()
    }

    #[test]
    fn seqs_map_to_buckets_of_one_span() {
        let buckets = Buckets::new(100).unwrap();
        assert_eq!([1, 100, 101, 200, 201].map(|seq| buckets.of(seq)), [0, 0, 1, 1, 2]);
        assert_eq!(buckets.seqs(1), 101..=200);
        assert_eq!(buckets.of(0), 0, "no message has seq 0; it still maps somewhere");
        assert!(Buckets::new(0).is_none(), "an empty span is refused");
        assert_eq!(Buckets::default().span(), DEFAULT_SPAN);
    }

    #[test]
    fn walking_down_visits_every_seq_below_once_newest_first() {
        for span in [1, 3, 100] {
            let buckets = Buckets::new(span).unwrap();
            for before in [0, 1, 2, span, span + 1, span + 2, 3 * span, 3 * span + 1, 1_000] {
                let expected: Vec<u64> = (1..before).rev().collect();
                assert_eq!(visited_down(buckets, before), expected, "span {span}, before {before}");
            }
        }
    }

    #[test]
    fn walking_up_visits_every_seq_above_once_oldest_first() {
        for span in [1, 3, 100] {
            let buckets = Buckets::new(span).unwrap();
            for (after, last) in
                [(0, 0), (0, 1), (0, span), (span, span), (span - 1, span + 1), (5, 3 * span + 2), (9, 4)]
            {
                let expected: Vec<u64> = (after + 1..=last).collect();
                assert_eq!(visited_up(buckets, after, last), expected, "span {span}, after {after}, last {last}");
            }
        }
    }

    #[test]
    fn a_page_inside_one_bucket_reads_one_partition() {
        let buckets = Buckets::default();
        assert_eq!(buckets.descending(4_000).take(1).count(), 1);
        assert_eq!(buckets.descending(4_000).next(), Some(0));
        assert_eq!(buckets.ascending(4_000, 4_090).collect::<Vec<_>>(), vec![0]);
        assert_eq!(buckets.ascending(4_090, 4_200).collect::<Vec<_>>(), vec![0, 1], "crossing reads the next one");
    }
}
