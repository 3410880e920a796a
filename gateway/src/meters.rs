//! Handles of the metrics recorded for every frame, command and delivery.
//! `metrics::counter!` looks its metric up in the recorder's registry on
//! every call (the name and labels hashed, a lock taken, a label list
//! built); on the send and fan-out paths those lookups cost 1.5-2% of the
//! server's CPU. These are looked up once per process, on first use (a
//! server installs its recorder before it serves), and then only counted.

use std::sync::LazyLock;

use metrics::{Counter, Histogram};
use router::Family;

/// Frames read from clients.
pub(crate) static FRAMES_IN: LazyLock<Counter> = LazyLock::new(|| metrics::counter!("switchboard_ws_frames_in_total"));
/// Frames written to clients after their greeting: replies and events
/// (after packing, with `batch=1`, as many as went on the wire); close
/// frames are counted by `switchboard_ws_closed_total`.
pub(crate) static FRAMES_OUT: LazyLock<Counter> =
    LazyLock::new(|| metrics::counter!("switchboard_ws_frames_out_total"));
/// From a batch of sends read to its acks.
pub(crate) static ACK_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| metrics::histogram!("switchboard_ws_ack_seconds"));
/// Queueing one run of deliveries on its devices.
pub(crate) static FANOUT_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| metrics::histogram!("switchboard_ws_fanout_seconds"));
/// From a run's queueing on a connection to the end of the write that
/// carried it, for the oldest run of a write: the fan-out's last stretch
/// (the connection's turn, the encoding, the socket). One write in
/// [`DELIVERY_SAMPLE`] per runtime thread is measured, so that the clock
/// and the record stay off nearly every write.
pub(crate) static DELIVERY_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| metrics::histogram!("switchboard_ws_delivery_seconds"));
/// One write in this many carries a [`DELIVERY_SECONDS`] sample.
pub(crate) const DELIVERY_SAMPLE: u32 = 32;

std::thread_local! {
    static WRITES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this write of queued events is one to measure.
pub(crate) fn sample_delivery() -> bool {
    WRITES.with(|writes| {
        let next = writes.get().wrapping_add(1);
        writes.set(next);
        next.is_multiple_of(DELIVERY_SAMPLE)
    })
}

/// Commands run, by type.
pub(crate) static COMMANDS: Family = Family::new("switchboard_ws_commands_total", "type");
/// Events queued on devices, by type.
pub(crate) static DELIVERIES: Family = Family::new("switchboard_ws_deliveries_total", "type");
