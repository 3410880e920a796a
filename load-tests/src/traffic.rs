//! The traffic `chat` and `fanout` make: connections that send timestamped
//! messages (at a rate, or keeping a window of unacknowledged sends in
//! flight) or only listen, and measure how long each message takes to
//! reach the other members. Sending starts once every connection is open
//! and lasts the given duration; a drain then collects what is still in
//! flight, and every delivery is accounted for: each acked send owes one
//! to every other member of its chat ([`Accounting`]).
//!
//! Latency runs from the moment a send was due: in an open loop that is
//! its slot in the schedule, not the moment the generator got to it, so a
//! server that makes the generator fall behind pays for the queue it
//! causes (no coordinated omission).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::dialect::{Dialect, Inbound};
use crate::net::{self, Socket, Sources};
use crate::pacer::Pacer;
use crate::proc_stats::ServerProbe;
use crate::progress::{Progress, Sample};

/// One user's connection in a chat.
#[derive(Debug, Clone)]
pub struct Connection {
    pub user_id: i64,
    pub token: String,
    pub chat: i64,
    /// Whether it sends (as set by [`Load`]) or only listens.
    pub sends: bool,
}

/// How hard each sending connection sends.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Open loop: this many messages per second, whatever the server does.
    Rate(u32),
    /// Closed loop: keep this many sends unacknowledged, sending the next
    /// on each ack; finds the server's maximum throughput.
    Window(u32),
}

/// Everything about a run but its connections.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: String,
    /// Cluster gateways to connect to instead of `url` (see [`crate::Common::gateways`]).
    pub gateways: Vec<String>,
    pub dialect: Dialect,
    pub load: Load,
    /// Sending before the measured window (caches, buffers and the
    /// previous phase's tear-down settle); shown on the timeline, left out
    /// of the rates and percentiles.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    pub sources: Sources,
    /// Connections being opened at once.
    pub connect_concurrency: usize,
    pub server: ServerProbe,
}

impl Plan {
    /// Where connection `n` opens: `url` on one node; in a cluster, senders
    /// on the first gateway and everyone else spread over the others.
    fn gateway_for(&self, me: &Connection, n: usize) -> &str {
        match self.gateways.as_slice() {
            [] => &self.url,
            [only] => only,
            [first, rest @ ..] => {
                if me.sends {
                    first
                } else {
                    &rest[n % rest.len()]
                }
            }
        }
    }
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Measured {
    pub connections: usize,
    pub failed_connections: u64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub disconnects: u64,
    /// Text frames received over the whole run: with the deliveries and
    /// acks, how many events a frame carried on average.
    pub frames: u64,
    /// Every delivery owed, received, lost or repeated.
    pub accounting: Accounting,
    /// Acks and deliveries that arrived within the measured window, per second of it.
    pub acked_per_s: f64,
    pub deliveries_per_s: f64,
    pub latency_ms: Percentiles,
    /// The deliveries `latency_ms` was taken from: every one in the
    /// measured window.
    pub latency_samples: u64,
    /// In an open loop, how long after its slot each send of the measured
    /// window left the generator: part of every latency above, since those
    /// run from the slot. None in a closed loop, which sends at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<Percentiles>,
    pub server_rss_bytes: Option<u64>,
    pub server_cpu_s: Option<f64>,
    /// The generator's own CPU seconds over the measured window.
    pub generator_cpu_s: Option<f64>,
    /// CPU seconds the hypervisor took from this machine's cores over the
    /// measured window (all cores together; see `Sample::machine_steal_s`).
    pub machine_steal_s: Option<f64>,
    pub timeline: Vec<Sample>,
}

/// Deliveries owed and made over a whole run (warm-up and drain included).
/// An acked send owes a delivery to every other connected member of its
/// chat; whatever of that is missing when the drain ends is lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Acked sends times the other members connected in their chat.
    pub expected: u64,
    /// Owed deliveries that arrived (each counted once).
    pub received: u64,
    /// Owed deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a message the member already had.
    pub duplicated: u64,
    /// Deliveries of sends that were never acked (in flight when the run
    /// ended, or refused after being fanned out): owed to nobody, not lost.
    pub unacked_delivered: u64,
}

impl Accounting {
    /// Whether every owed delivery arrived exactly once.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

/// Which sends (numbered from 1) of one sender were seen: a bit each.
#[derive(Debug, Default, Clone)]
struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Sends numbered above this are not ours (a run sends far fewer); a
    /// frame naming one is not recorded.
    const MAX: u64 = 1 << 30;

    /// Marks `n`; answers whether it was new.
    fn mark(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let new = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        new
    }

    /// How many are marked.
    fn count(&self) -> u64 {
        self.bits.iter().map(|word| u64::from(word.count_ones())).sum()
    }

    /// How many of these are not in `other`.
    fn missing_from(&self, other: &Self) -> u64 {
        let theirs = other.bits.iter().chain(std::iter::repeat(&0));
        self.bits.iter().zip(theirs).map(|(mine, theirs)| u64::from((mine & !theirs).count_ones())).sum()
    }
}

/// What one connection sent and saw, for the run's [`Accounting`].
#[derive(Debug, Default)]
struct Ledger {
    user_id: i64,
    chat: i64,
    /// Its sends the server acked.
    acked: Seen,
    /// Acks that named no send, which stand for the sends in order.
    acked_in_order: u64,
    /// Each sender's messages it received.
    received: HashMap<i64, Seen>,
    duplicated: u64,
    /// Text frames it received.
    frames: u64,
}

impl Ledger {
    fn new(me: &Connection) -> Self {
        Self { user_id: me.user_id, chat: me.chat, ..Self::default() }
    }

    fn ack(&mut self, n: Option<u64>) {
        let n = n.unwrap_or_else(|| {
            self.acked_in_order += 1;
            self.acked_in_order
        });
        if n <= Seen::MAX {
            self.acked.mark(n);
        }
    }

    /// Records send `n` of `sender`; answers whether it is the first time.
    fn deliver(&mut self, sender: i64, n: u64) -> bool {
        if n > Seen::MAX {
            return false;
        }
        let new = self.received.entry(sender).or_default().mark(n);
        self.duplicated += u64::from(!new);
        new
    }
}

/// Adds up the connections' ledgers: who owed what to whom, and what came.
fn account(ledgers: &[Ledger]) -> Accounting {
    let mut chats: HashMap<i64, Vec<&Ledger>> = HashMap::new();
    for ledger in ledgers {
        chats.entry(ledger.chat).or_default().push(ledger);
    }
    let none = Seen::default();
    let mut total = Accounting::default();
    for members in chats.values() {
        for receiver in members {
            total.duplicated += receiver.duplicated;
            for sender in members.iter().filter(|sender| sender.user_id != receiver.user_id) {
                let got = receiver.received.get(&sender.user_id).unwrap_or(&none);
                let (acked, lost) = (sender.acked.count(), sender.acked.missing_from(got));
                total.expected += acked;
                total.received += acked - lost;
                total.lost += lost;
                total.unacked_delivered += got.missing_from(&sender.acked);
            }
            // Messages from someone with no connection in the run: owed to nobody.
            let strangers = receiver.received.iter().filter(|(id, _)| !members.iter().any(|m| m.user_id == **id));
            total.unacked_delivered += strangers.map(|(_, seen)| seen.count()).sum::<u64>();
        }
    }
    total
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A histogram of latencies in microseconds, from 1 µs to 10 minutes at 3
/// significant figures; anything longer is recorded as 10 minutes.
///
/// # Panics
/// Never: the bounds are constant and valid.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Self { p50: ms(0.5), p90: ms(0.9), p99: ms(0.99), p999: ms(0.999), max: histogram.max() as f64 / 1000.0 }
    }
}

/// Counters every connection bumps; the progress sampler reads them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections opened and closed so far (open now is the difference).
    pub(crate) open: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) acked_in_window: AtomicU64,
    pub(crate) delivered_in_window: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) disconnects: AtomicU64,
}

struct Shared {
    plan: Plan,
    /// Time zero of the payload timestamps.
    epoch: Instant,
    /// Unique per run (wall-clock microseconds), part of every client message id.
    run_id: u64,
    /// Set once every connection is open (or failed): sending starts.
    start: watch::Receiver<Option<Instant>>,
    /// Set when the drain is over: everyone closes.
    stop: watch::Receiver<bool>,
    counters: Counters,
    /// The measured window's latencies, and one histogram per second of the
    /// run for the timeline.
    latencies: Mutex<Histogram<u64>>,
    per_second: Mutex<Vec<Histogram<u64>>>,
    /// How late the open-loop sends of the measured window left.
    send_lags: Mutex<Histogram<u64>>,
    /// Each finished connection's ledger.
    ledgers: Mutex<Vec<Ledger>>,
}

/// Latencies a connection collects before handing them over to the run's
/// histograms: at the end of each second of the run, when
/// [`Recorder::BATCH`] have gathered, and at the end. Raw samples, not a
/// histogram of its own: one histogram at 3 significant figures is about
/// 170 KiB, and one (or two) per connection made the generator touch
/// hundreds of MiB while a phase ran, and merge and clear them every second.
struct Recorder {
    second: usize,
    /// Latencies (µs) of `second` not handed over yet, each with whether
    /// it falls in the measured window.
    pending: Vec<(u64, bool)>,
    /// Open-loop sends' lags (µs) in the measured window not handed over yet.
    lags: Vec<u64>,
}

impl Recorder {
    /// The most samples a connection holds before handing them over.
    const BATCH: usize = 256;

    fn new() -> Self {
        Self { second: 0, pending: Vec::new(), lags: Vec::new() }
    }

    /// Notes how late an open-loop send due at `due` (µs of the run's
    /// clock) left, if it is `measured`.
    fn left(&mut self, shared: &Shared, due: u64, measured: bool) {
        if measured {
            self.lags.push((shared.epoch.elapsed().as_micros() as u64).saturating_sub(due));
        }
    }

    async fn record(&mut self, shared: &Shared, started: Instant, micros: u64, measured: bool) -> anyhow::Result<()> {
        let second = started.elapsed().as_secs() as usize;
        if second != self.second {
            self.flush(shared).await?;
            self.second = second;
        }
        self.pending.push((micros, measured));
        if self.pending.len() >= Self::BATCH {
            self.flush(shared).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, shared: &Shared) -> anyhow::Result<()> {
        if !self.lags.is_empty() {
            let mut lags = shared.send_lags.lock().await;
            for &micros in &self.lags {
                lags.saturating_record(micros.max(1));
            }
            self.lags.clear();
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        {
            let mut slots = shared.per_second.lock().await;
            while slots.len() <= self.second {
                slots.push(latency_histogram());
            }
            let slot = &mut slots[self.second];
            for &(micros, _) in &self.pending {
                slot.saturating_record(micros);
            }
        }
        if self.pending.iter().any(|&(_, measured)| measured) {
            let mut total = shared.latencies.lock().await;
            for &(micros, _) in self.pending.iter().filter(|(_, measured)| *measured) {
                total.saturating_record(micros);
            }
        }
        self.pending.clear();
        Ok(())
    }
}

/// Opens `me`'s connection to the server at `base` from `source` and runs
/// the dialect's handshake (greeting, then each step and its answer).
pub(crate) async fn open(base: &str, dialect: Dialect, me: &Connection, source: IpAddr) -> anyhow::Result<Socket> {
    let url = dialect.ws_url(base, &me.token, me.chat);
    let mut socket = net::connect(&url, net::server_addr(base)?, source).await?;
    if dialect.greets() {
        expect(&mut socket, dialect, me.user_id, |frame| dialect.handshake_done(None, frame)).await?;
    }
    for (step, frame) in dialect.handshake(&me.token, me.chat).into_iter().enumerate() {
        socket.send(Message::Text(frame.into())).await?;
        expect(&mut socket, dialect, me.user_id, |frame| dialect.handshake_done(Some(step), frame)).await?;
    }
    Ok(socket)
}

/// Reads frames until one that `accept`s, answering pings on the way.
async fn expect(socket: &mut Socket, dialect: Dialect, me: i64, accept: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let wait = async {
        while let Some(frame) = socket.next().await {
            let Message::Text(text) = frame? else { continue };
            if accept(text.as_str()) {
                return Ok(());
            }
            for message in dialect.messages(text.as_str()) {
                if let Inbound::Reply(reply) = dialect.classify(message, me) {
                    socket.send(Message::Text(reply.into())).await?;
                }
            }
        }
        anyhow::bail!("closed during the handshake")
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.map_err(|_| anyhow::anyhow!("handshake timed out"))?
}

/// [`open`] under the connect gate, counted as open or failed.
async fn open_counted(me: &Connection, n: usize, shared: &Shared, gate: &Semaphore) -> anyhow::Result<Socket> {
    let opened = {
        let _permit = gate.acquire().await?;
        let plan = &shared.plan;
        open(plan.gateway_for(me, n), plan.dialect, me, plan.sources.for_connection(n)).await
    };
    let counter = if opened.is_ok() { &shared.counters.open } else { &shared.counters.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    opened
}

async fn drive(me: Connection, n: usize, shared: Arc<Shared>, gate: Arc<Semaphore>) -> anyhow::Result<()> {
    let counters = &shared.counters;
    // One unsplit socket: sends happen between reads in this one task, so
    // there is no lock between a reading half and a writing half.
    let mut socket = open_counted(&me, n, &shared, &gate).await?;
    let mut start = shared.start.clone();
    let started = *start.wait_for(Option::is_some).await?.as_ref().expect("waited for Some");
    let measure_from = started + shared.plan.warmup;
    let until = measure_from + shared.plan.duration;
    let dialect = shared.plan.dialect;
    let mut stop = shared.stop.clone();
    let mut recorder = Recorder::new();
    let mut ledger = Ledger::new(&me);
    let sends = me.sends;
    let (rate, window) = match shared.plan.load {
        Load::Rate(rate) => (rate.max(1), 0),
        Load::Window(window) => (0, window),
    };
    // The pacer only wakes the loop; what is owed comes from the clock, so
    // a late wake-up sends the backlog instead of losing it.
    let schedule = Schedule::of(started, rate, n);
    let mut pacer = if sends && window == 0 { Some(Pacer::new()?) } else { None };
    let mut n = 0u64;
    let mut due = if sends { u64::from(window) } else { 0 };
    // Set when the server closed or reset the connection during the run.
    let mut closed_by_server = false;
    'run: loop {
        // Sends owed by the schedule or by acks that freed the window.
        while due > 0 && sends && Instant::now() < until {
            due -= 1;
            n += 1;
            let due = due_at(&shared, schedule.origin, rate, n);
            let frame = dialect.send_frame(me.chat, me.user_id, shared.run_id, n, due);
            if socket.send(Message::Text(frame.into())).await.is_err() {
                closed_by_server = true;
                break;
            }
            // How late it left its slot (part of every latency from the slot).
            recorder.left(&shared, due, rate > 0 && Instant::now() >= measure_from);
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        if closed_by_server {
            break;
        }
        let rate_tick = sends && window == 0;
        tokio::select! {
            biased;
            () = released(&mut stop) => break,
            frame = socket.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => { closed_by_server = true; break }
                    Some(Ok(_)) => continue,
                };
                ledger.frames += 1;
                for message in dialect.messages(text.as_str()) {
                    match dialect.classify(message, me.user_id) {
                        Inbound::Ack { n } => {
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                            ledger.ack(n);
                            let now = Instant::now();
                            if now <= until {
                                due += u64::from(window > 0);
                                if now >= measure_from {
                                    counters.acked_in_window.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Inbound::Delivery { sent_at_micros, sender, n } => {
                            if !ledger.deliver(sender, n) {
                                continue;
                            }
                            let now = shared.epoch.elapsed().as_micros() as u64;
                            let at = Instant::now();
                            let measured = at >= measure_from && at <= until;
                            recorder.record(&shared, started, now.saturating_sub(sent_at_micros), measured).await?;
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                            if measured {
                                counters.delivered_in_window.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Inbound::Error => { counters.errors.fetch_add(1, Ordering::Relaxed); }
                        Inbound::Reply(reply) => if socket.send(Message::Text(reply.into())).await.is_err() {
                            closed_by_server = true;
                            break 'run;
                        },
                        Inbound::Echo | Inbound::Other => {}
                    }
                }
            }
            woke = next_send(pacer.as_mut(), schedule.due(n + 1)), if rate_tick && Instant::now() < until => {
                woke?;
                due = schedule.owed(Instant::now()).saturating_sub(n);
            }
        }
    }
    recorder.flush(&shared).await?;
    shared.ledgers.lock().await.push(ledger);
    counters.closed.fetch_add(1, Ordering::Relaxed);
    if closed_by_server {
        counters.disconnects.fetch_add(1, Ordering::Relaxed);
    } else {
        net::close(socket).await;
    }
    Ok(())
}

/// An open loop's timetable: send `n` (from 1) is due `n / rate` seconds
/// after `origin`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    origin: Instant,
    rate: u32,
}

impl Schedule {
    /// Connection `n`'s timetable at `rate` from `started`. Each
    /// connection's starts at its own point of the first period (spread by
    /// the golden ratio), as people's messages do: many senders at a low
    /// rate do not all send in the same instant.
    fn of(started: Instant, rate: u32, n: usize) -> Self {
        let period = if rate > 0 { Duration::from_secs_f64(1.0 / f64::from(rate)) } else { Duration::from_secs(3600) };
        Self { origin: started + period.mul_f64((n as f64 * 0.618_033_988_749_895) % 1.0), rate }
    }

    /// When send `n` is due (rounded up to the nanosecond, so that
    /// [`Schedule::owed`] counts it at that instant).
    fn due(self, n: u64) -> Instant {
        let rate = u128::from(self.rate.max(1));
        let nanos = (u128::from(n) * 1_000_000_000).div_ceil(rate);
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many sends are due by `now`.
    fn owed(self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX)
    }
}

/// Resolves when the next send is due, on the open loop's pacer.
async fn next_send(pacer: Option<&mut Pacer>, at: Instant) -> std::io::Result<()> {
    match pacer {
        Some(pacer) => pacer.until(at).await,
        None => std::future::pending().await,
    }
}

/// When send `n` was due, in µs of the run's clock: now in a closed loop
/// (`rate` 0), its slot in the schedule in an open one.
fn due_at(shared: &Shared, origin: Instant, rate: u32, n: u64) -> u64 {
    if rate > 0 {
        (origin - shared.epoch).as_micros() as u64 + n * 1_000_000 / u64::from(rate)
    } else {
        shared.epoch.elapsed().as_micros() as u64
    }
}

/// Resolves once `flag` is true (or its sender is gone).
pub(crate) async fn released(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await.map(drop);
}

/// Runs `connections` under `plan` and answers what it measured.
pub async fn run(connections: Vec<Connection>, plan: Plan, label: &str) -> anyhow::Result<Measured> {
    let total = connections.len();
    let (start_tx, start) = watch::channel(None);
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        epoch: Instant::now(),
        run_id: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64,
        start,
        stop,
        counters: Counters::default(),
        latencies: Mutex::new(latency_histogram()),
        per_second: Mutex::new(Vec::new()),
        send_lags: Mutex::new(latency_histogram()),
        ledgers: Mutex::new(Vec::new()),
    });
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, connection) in connections.into_iter().enumerate() {
        tasks.spawn(drive(connection, n, shared.clone(), gate.clone()));
    }
    let counters = &shared.counters;
    let settled = || counters.open.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
    let opening = Instant::now();
    while settled() < total as u64 && opening.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = counters.failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed < total as u64, "no connection could be opened");
    flush_dirty_pages().await;
    let mut progress = Progress::start(label, plan.server);
    let started = Instant::now();
    start_tx.send_replace(Some(started));
    let sampling = async {
        let until = started + plan.warmup + plan.duration;
        while Instant::now() < until {
            tokio::time::sleep_until(progress.next_tick().into()).await;
            progress.sample(counters, Instant::now() >= until);
        }
        // Drain: until deliveries stop growing for half a second. What has
        // not come after 10 s is counted lost.
        let drain_until = Instant::now() + Duration::from_secs(10);
        let mut last = counters.delivered.load(Ordering::Relaxed);
        while Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = counters.delivered.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
    };
    sampling.await;
    stop_tx.send_replace(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            progress.note(&format!("connection failed: {error}"));
        }
    }
    let mut timeline = progress.finish();
    let per_second = shared.per_second.lock().await;
    for (second, sample) in timeline.iter_mut().enumerate() {
        if let Some(histogram) = per_second.get(second).filter(|h| !h.is_empty()) {
            sample.p50_ms = Some(histogram.value_at_quantile(0.5) as f64 / 1000.0);
            sample.p99_ms = Some(histogram.value_at_quantile(0.99) as f64 / 1000.0);
        }
    }
    let seconds = plan.duration.as_secs_f64();
    let latencies = shared.latencies.lock().await;
    let ledgers = shared.ledgers.lock().await;
    Ok(Measured {
        connections: total,
        failed_connections: failed,
        sent: counters.sent.load(Ordering::Relaxed),
        acked: counters.acked.load(Ordering::Relaxed),
        delivered: counters.delivered.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        disconnects: counters.disconnects.load(Ordering::Relaxed),
        frames: ledgers.iter().map(|ledger| ledger.frames).sum(),
        accounting: account(&ledgers),
        acked_per_s: counters.acked_in_window.load(Ordering::Relaxed) as f64 / seconds,
        deliveries_per_s: counters.delivered_in_window.load(Ordering::Relaxed) as f64 / seconds,
        latency_ms: Percentiles::of(&latencies),
        latency_samples: latencies.len(),
        send_lag_ms: Some(&*shared.send_lags.lock().await).filter(|lags| !lags.is_empty()).map(Percentiles::of),
        server_rss_bytes: plan.server.rss_bytes(),
        server_cpu_s: in_window(&timeline, plan.warmup, plan.duration, |sample| sample.server_cpu_s),
        generator_cpu_s: in_window(&timeline, plan.warmup, plan.duration, |sample| sample.generator_cpu_s),
        machine_steal_s: in_window(&timeline, plan.warmup, plan.duration, |sample| sample.machine_steal_s),
        timeline,
    })
}

/// Writes back what this machine's files hold unwritten before a run
/// starts. The kernel writes a dirty page back about 30 s after it was
/// dirtied: a build, a copied binary or the files of the phase before would
/// otherwise reach the disk inside the measured window, and every fsync of a
/// durable server waits behind them (200 MB written with `dd conv=fsync`
/// during a run made one second's p99 107 ms). Every system is measured
/// on a quiet disk alike; its own writes during the run still count.
async fn flush_dirty_pages() {
    let failed = match tokio::process::Command::new("sync").status().await {
        Ok(status) if status.success() => return,
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    };
    eprintln!("sync before the run failed ({failed}): the disk may still be writing back other files");
}

/// One figure of the timeline (server CPU seconds, stolen seconds) summed
/// over the measured window.
fn in_window(
    timeline: &[Sample],
    warmup: Duration,
    duration: Duration,
    figure: impl Fn(&Sample) -> Option<f64>,
) -> Option<f64> {
    let window = warmup.as_secs()..warmup.as_secs() + duration.as_secs();
    timeline.iter().filter(|sample| window.contains(&(u64::from(sample.t_s) - 1))).map(figure).sum()
}

#[cfg(test)]
mod tests {
    use super::{Accounting, Ledger, account};

    fn ledger(user_id: i64, chat: i64) -> Ledger {
        Ledger { user_id, chat, ..Ledger::default() }
    }

    #[test]
    fn every_owed_delivery_is_counted_once_and_every_missing_one_lost() {
        // Chat 1: sends 1 to 4 acked, 5 not; two receivers.
        let mut sender = ledger(1, 1);
        for n in 1..=4 {
            sender.ack(Some(n));
        }
        let mut full = ledger(2, 1);
        for n in [1, 2, 3, 4, 5] {
            assert!(full.deliver(1, n));
        }
        assert!(!full.deliver(1, 2), "a repeat is not new");
        let mut partial = ledger(3, 1);
        for n in [1, 3] {
            partial.deliver(1, n);
        }
        partial.deliver(99, 1);
        assert!(!partial.deliver(1, 1 << 40), "a number no run reaches is not recorded");
        // Chat 2: acks that name no send stand for the sends in order.
        let mut ordered = ledger(4, 2);
        for _ in 0..3 {
            ordered.ack(None);
        }
        let mut listener = ledger(5, 2);
        for n in 1..=3 {
            listener.deliver(4, n);
        }
        let accounting = account(&[sender, full, partial, ordered, listener]);
        let expected =
            Accounting { expected: 4 * 2 + 3, received: 4 + 2 + 3, lost: 2, duplicated: 1, unacked_delivered: 2 };
        assert_eq!(accounting, expected);
        assert!(!accounting.is_clean());
        assert!(account(&[]).is_clean());
    }
}
