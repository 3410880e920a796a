//! The in-process channel from a node's publishers to its subscribers (the
//! gateway's fan-out). It is bounded, and it pushes back: while a
//! subscriber has [`BACKPRESSURE_AT`] deliveries unread, a publish waits
//! for it to catch up. Under more load than the node can deliver, senders
//! are therefore slowed (their acks wait, and their sockets fill) rather
//! than the subscriber falling a whole channel behind, which costs every
//! local client a reconnect and a `sync`. The wait is bounded by
//! [`MAX_PUBLISH_WAIT`], and once a wait has run out publishers stop
//! waiting until a subscriber reads again: a subscriber that stops reading
//! altogether costs one such wait, then lags and resyncs, and publishers
//! never hang on it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Notify, broadcast};

use crate::router::Delivery;

/// How many deliveries a subscriber may fall behind before it lags.
pub const ROUTER_CAPACITY: usize = 16_384;
/// Publishers wait while a subscriber has this many deliveries unread.
pub const BACKPRESSURE_AT: usize = ROUTER_CAPACITY / 2;
/// The longest one publish waits for a subscriber to catch up; then it
/// goes ahead, and a subscriber that stays behind lags and resyncs.
pub const MAX_PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// The sending side. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Bus {
    sender: broadcast::Sender<Arc<Delivery>>,
    caught_up: Arc<CaughtUp>,
    max_wait: Duration,
}

/// How publishers that wait learn that the subscribers caught up.
#[derive(Debug, Default)]
struct CaughtUp {
    /// Publishers waiting now: subscribers only signal when some are.
    waiting: AtomicUsize,
    notify: Notify,
    /// Where publishers outside the async runtime wait (see [`Bus::send_now`]).
    blocked: Mutex<()>,
    released: Condvar,
    /// A wait ran out and no subscriber has read since: publishers go ahead.
    gave_up: AtomicBool,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(MAX_PUBLISH_WAIT)
    }
}

impl Bus {
    pub(crate) fn new(max_wait: Duration) -> Self {
        Self { sender: broadcast::channel(ROUTER_CAPACITY).0, caught_up: Arc::default(), max_wait }
    }

    /// Hands `delivery` to every subscriber, first waiting (up to the
    /// bound) while one of them is far behind. No subscriber is not an
    /// error: the store holds what matters and clients sync it.
    pub(crate) async fn send(&self, delivery: Delivery) {
        if self.must_wait() {
            self.wait_for_subscribers().await;
        }
        let _ = self.sender.send(Arc::new(delivery));
    }

    /// Whether a publish waits now: a subscriber is far behind, and no
    /// wait has run out since a subscriber last read.
    fn must_wait(&self) -> bool {
        self.far_behind() && !self.caught_up.gave_up.load(Ordering::Relaxed)
    }

    /// Whether a subscriber has [`BACKPRESSURE_AT`] deliveries or more unread.
    fn far_behind(&self) -> bool {
        self.sender.len() >= BACKPRESSURE_AT
    }

    /// [`Self::send`] for a thread outside the async runtime (the store's
    /// writer): the thread itself waits, up to the same bound, while a
    /// subscriber is far behind.
    pub(crate) fn send_now(&self, delivery: Delivery) {
        if self.must_wait() {
            self.block_for_subscribers();
        }
        let _ = self.sender.send(Arc::new(delivery));
    }

    fn block_for_subscribers(&self) {
        let started = Instant::now();
        let caught_up = &self.caught_up;
        caught_up.waiting.fetch_add(1, Ordering::SeqCst);
        // Checked under the lock a subscriber takes to signal: a read in
        // between cannot be missed.
        let blocked = caught_up.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let (blocked, waited) = caught_up
            .released
            .wait_timeout_while(blocked, self.max_wait, |()| self.far_behind())
            .unwrap_or_else(PoisonError::into_inner);
        drop(blocked);
        caught_up.waiting.fetch_sub(1, Ordering::SeqCst);
        self.waited(started, !waited.timed_out());
    }

    async fn wait_for_subscribers(&self) {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.max_wait);
        self.caught_up.waiting.fetch_add(1, Ordering::SeqCst);
        let caught_up = loop {
            // Registered before the check, so a subscriber catching up in
            // between still wakes this publisher.
            let notified = self.caught_up.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.far_behind() {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break false;
            }
        };
        self.caught_up.waiting.fetch_sub(1, Ordering::SeqCst);
        self.waited(started, caught_up);
    }

    /// Records a publisher's wait that began at `started`; one that ran out
    /// lets publishers go ahead until a subscriber reads again.
    fn waited(&self, started: Instant, caught_up: bool) {
        metrics::histogram!("switchboard_router_publish_wait_seconds").record(started.elapsed().as_secs_f64());
        if !caught_up {
            self.caught_up.gave_up.store(true, Ordering::Relaxed);
            metrics::counter!("switchboard_router_publish_wait_expired_total").increment(1);
            tracing::warn!(
                waited_ms = self.max_wait.as_millis() as u64,
                "a subscriber stayed far behind the router; publishing anyway"
            );
        }
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription { receiver: self.sender.subscribe(), caught_up: self.caught_up.clone() }
    }
}

/// A subscriber: every delivery published from its start, in order.
/// Receiving is what lets waiting publishers go on.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Delivery>>,
    caught_up: Arc<CaughtUp>,
}

impl Subscription {
    /// The next delivery; `RecvError::Lagged` when this subscriber fell
    /// [`ROUTER_CAPACITY`] behind and missed some (its clients must resync).
    pub async fn recv(&mut self) -> Result<Arc<Delivery>, RecvError> {
        let received = self.receiver.recv().await;
        if !matches!(received, Err(RecvError::Closed)) {
            self.release_publishers();
        }
        received
    }

    /// The next delivery if one is queued. Unlike [`Self::recv`] it spends
    /// none of the task's cooperative budget, so a subscriber can drain
    /// what is queued in one turn.
    pub fn try_recv(&mut self) -> Result<Arc<Delivery>, TryRecvError> {
        let received = self.receiver.try_recv();
        if matches!(received, Ok(_) | Err(TryRecvError::Lagged(_))) {
            self.release_publishers();
        }
        received
    }

    /// After a read: once this subscriber is below the mark, waiting
    /// publishers may go on, and publishers wait again from now on.
    fn release_publishers(&self) {
        let caught_up = &self.caught_up;
        let waiting = caught_up.waiting.load(Ordering::SeqCst) > 0;
        let gave_up = caught_up.gave_up.load(Ordering::Relaxed);
        if (waiting || gave_up) && self.receiver.len() < BACKPRESSURE_AT {
            caught_up.gave_up.store(false, Ordering::Relaxed);
            caught_up.notify.notify_waiters();
            if waiting {
                let _blocked = caught_up.blocked.lock().unwrap_or_else(PoisonError::into_inner);
                caught_up.released.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::ServerEvent;
    use protocol::server::CallRinging;
    use tokio::sync::broadcast::error::TryRecvError;

    use super::{BACKPRESSURE_AT, Bus, ROUTER_CAPACITY};
    use crate::router::Delivery;

    fn delivery(n: usize) -> Delivery {
        Delivery::new(vec![1], ServerEvent::CallRinging(CallRinging { call_id: n.to_string() }))
    }

    fn call_id(delivery: &Delivery) -> String {
        match delivery.frame.event() {
            Some(ServerEvent::CallRinging(ringing)) => ringing.call_id.clone(),
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Fills `bus` to the mark, starts `publish` (which must wait while
    /// the subscriber is that far behind), reads one delivery, and checks
    /// that the publish went on with nothing lost.
    async fn waits_until_the_subscriber_reads(publish: impl FnOnce(Bus, Delivery) -> tokio::task::JoinHandle<()>) {
        // A wait far longer than the test: only the subscriber reading can end it.
        let bus = Bus::new(Duration::from_secs(600));
        let mut subscriber = bus.subscribe();
        for n in 0..BACKPRESSURE_AT {
            bus.send(delivery(n)).await;
        }
        let publisher = publish(bus.clone(), delivery(BACKPRESSURE_AT));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!publisher.is_finished(), "the publish waits while the subscriber is {BACKPRESSURE_AT} behind");
        let first = subscriber.recv().await.unwrap();
        assert_eq!(call_id(&first), "0");
        tokio::time::timeout(Duration::from_secs(30), publisher)
            .await
            .expect("reading one delivery lets the waiting publish go on")
            .unwrap();
        let mut rest = Vec::new();
        loop {
            match subscriber.try_recv() {
                Ok(delivery) => rest.push(call_id(&delivery)),
                Err(TryRecvError::Empty) => break,
                Err(other) => panic!("nothing is lost while publishers wait: {other:?}"),
            }
        }
        assert_eq!(rest.len(), BACKPRESSURE_AT, "every other delivery, the waiting one last");
        assert_eq!(rest.first().map(String::as_str), Some("1"));
        assert_eq!(rest.last(), Some(&BACKPRESSURE_AT.to_string()));
    }

    #[tokio::test]
    async fn a_publish_waits_while_a_subscriber_is_far_behind_and_goes_on_once_it_reads() {
        waits_until_the_subscriber_reads(|bus, delivery| tokio::spawn(async move { bus.send(delivery).await })).await;
    }

    #[tokio::test]
    async fn a_publish_from_outside_the_runtime_waits_on_its_thread_until_the_subscriber_reads() {
        waits_until_the_subscriber_reads(|bus, delivery| tokio::task::spawn_blocking(move || bus.send_now(delivery)))
            .await;
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_delays_publishers_once_by_the_bound_and_then_lags() {
        // One wait of the bound, not one per publish: this would take hours otherwise.
        let bus = Bus::new(Duration::from_millis(500));
        let mut stuck = bus.subscribe();
        let publishing = async {
            for n in 0..ROUTER_CAPACITY + 10 {
                bus.send(delivery(n)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), publishing)
            .await
            .expect("after one wait of the bound, publishes go ahead");
        match stuck.try_recv() {
            Err(TryRecvError::Lagged(missed)) => assert!(missed >= 10, "it missed {missed}"),
            other => panic!("a subscriber that never read lags: {other:?}"),
        }
    }

    #[tokio::test]
    async fn without_subscribers_a_publish_never_waits() {
        let bus = Bus::new(Duration::from_secs(600));
        let publishing = async {
            for n in 0..ROUTER_CAPACITY * 2 {
                bus.send(delivery(n)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), publishing).await.expect("nobody to wait for");
        let mut late = bus.subscribe();
        assert!(matches!(late.try_recv(), Err(TryRecvError::Empty)), "a new subscriber starts from now");
    }
}
