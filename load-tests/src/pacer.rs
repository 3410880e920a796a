//! Wake-ups at a precise instant, for open-loop senders. Tokio's timer
//! works in whole milliseconds and rounds every deadline up, and the
//! worker it runs on sleeps in whole milliseconds too: a send due at a
//! given instant left 0-2 ms after it (1 ms at the median on an idle
//! generator), and since latency is measured from the instant a send was
//! due, that wait was counted as the server's. A `timerfd` expires to
//! the microsecond and wakes the runtime through its event loop, like a
//! socket that became readable.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::unix::AsyncFd;

/// One timer, armed for one instant at a time.
#[derive(Debug)]
pub struct Pacer {
    fd: AsyncFd<OwnedFd>,
    /// The instant the timer is armed for, if it has not been read since.
    armed: Option<Instant>,
}

impl Pacer {
    /// A disarmed timer on the monotonic clock (`Instant`'s).
    ///
    /// # Errors
    /// When the kernel refuses a timer (out of descriptors), or outside a
    /// Tokio runtime with I/O enabled.
    pub fn new() -> io::Result<Self> {
        let fd =
            rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?;
        #[expect(
            deprecated,
            reason = "`new` is unsound for a borrowed raw descriptor that can be closed under it; an `OwnedFd` lives exactly as long as the `AsyncFd` that owns it, and the safe alternative (`register`) is `unsafe`, which this workspace forbids"
        )]
        let fd = AsyncFd::new(fd)?;
        Ok(Self { fd, armed: None })
    }

    /// Resolves at `at` (at once if it has passed). Cancel-safe: a wait
    /// dropped before it resolved leaves the timer armed, and waiting for
    /// the same instant again does not arm it again.
    ///
    /// # Errors
    /// When the kernel refuses to arm or read the timer.
    pub async fn until(&mut self, at: Instant) -> io::Result<()> {
        loop {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if self.armed != Some(at) {
                // Re-arming also clears an expiry nobody read.
                rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &once_after(left))?;
                self.armed = Some(at);
            }
            let mut ready = self.fd.readable().await?;
            let mut expiries = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expiries[..])?)) {
                // Expired; the clock above decides whether `at` has come.
                Ok(Ok(_)) => self.armed = None,
                Ok(Err(error)) => return Err(error),
                // Readiness left over from an earlier expiry: wait again.
                Err(_would_block) => {}
            }
        }
    }
}

/// A one-shot expiry `after` from now (never zero, which would disarm).
fn once_after(after: Duration) -> Itimerspec {
    let after = after.max(Duration::from_nanos(1));
    Itimerspec {
        it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: Timespec { tv_sec: after.as_secs() as i64, tv_nsec: i64::from(after.subsec_nanos()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_wakes_before_the_instant() {
        // How close after it is measured by the generator itself
        // (`send_lag_ms` in every open-loop summary), not asserted here.
        let mut pacer = Pacer::new().unwrap();
        for micros in [0, 1, 50, 300, 1_500] {
            let at = Instant::now() + Duration::from_micros(micros);
            pacer.until(at).await.unwrap();
            assert!(Instant::now() >= at, "woke before an instant {micros} µs ahead");
        }
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_next_one_on_time() {
        let mut pacer = Pacer::new().unwrap();
        let first = Instant::now() + Duration::from_millis(50);
        // Dropped while armed for `first`, which then expires unread.
        assert!(tokio::time::timeout(Duration::from_millis(5), pacer.until(first)).await.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The stale expiry must not end a wait for a later instant.
        let second = Instant::now() + Duration::from_millis(3);
        pacer.until(second).await.unwrap();
        assert!(Instant::now() >= second);
        // An instant already past resolves at once.
        pacer.until(first).await.unwrap();
    }
}
