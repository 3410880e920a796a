//! Signed webhooks for app backends: the events use cases hand to
//! [`service::Hooks`] are written to a durable [`Outbox`] (a SQLite file in
//! embedded mode, Redis in a cluster) and delivered from it as signed POSTs,
//! at least once, with exponential backoff for up to a day.
//!
//! - **Signing.** Each delivery carries `Switchboard-Timestamp` (Unix
//!   seconds) and `Switchboard-Signature: v1=<hex HMAC-SHA256 of
//!   "{timestamp}.{body}" under the secret>` ([`sign`]). A receiver
//!   recomputes it, compares in constant time and refuses old timestamps.
//! - **At least once.** An entry leaves the outbox only when its receiver
//!   answers 2xx. Non-2xx answers, timeouts and refused connections retry
//!   with backoff; an entry older than [`WebhookConfig::give_up_after`] is
//!   dropped and counted as failed. The event `id` is the same on every
//!   try, for receivers' idempotency.
//! - **Once per deployment.** Deliverers on every node claim due entries
//!   atomically under a lease, so each attempt is made by one node.
//! - **Never in a send's way.** Use cases hand events to a bounded queue
//!   without waiting; the writer batches them into the outbox, which is
//!   bounded too: past [`WebhookConfig::max_pending`] events are dropped,
//!   counted and logged.

mod outbox;

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use protocol::time::{Millis, now_millis};
use service::HookEvent;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use outbox::{Claimed, Entry, Outbox, OutboxError, RedisOutbox, SqliteOutbox};

/// Where and how webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Every event goes to each of these.
    pub urls: Vec<String>,
    /// The HMAC key of the signatures.
    pub secret: Vec<u8>,
    /// Most entries waiting in the outbox; past it new events are dropped.
    pub max_pending: u64,
    /// The first retry's delay; each later one doubles it, up to `max_backoff`.
    pub retry_base: Duration,
    pub max_backoff: Duration,
    /// An entry not delivered by then is dropped (counted as failed).
    pub give_up_after: Duration,
    /// How long one POST may take.
    pub timeout: Duration,
    /// Deliveries in flight at once, per node.
    pub concurrency: usize,
    /// How often the deliverer looks for due entries when idle.
    pub poll: Duration,
}

impl WebhookConfig {
    /// Defaults for `urls` signed with `secret`.
    pub fn new(urls: Vec<String>, secret: Vec<u8>) -> Self {
        Self {
            urls,
            secret,
            max_pending: 100_000,
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3_600),
            give_up_after: Duration::from_secs(24 * 3_600),
            timeout: Duration::from_secs(10),
            concurrency: 16,
            poll: Duration::from_millis(250),
        }
    }

    /// How long to wait before try `attempt` (1 is the first retry).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.retry_base.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Refuses anything but an absolute `http` or `https` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("{url:?} must be an http or https URL"));
    }
    Ok(())
}

/// How many events may wait between the use cases and the outbox writer.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The signature header's value for `body` sent at `timestamp` (Unix
/// seconds): `v1=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"`.
///
/// # Panics
///
/// Never: HMAC takes a key of any length.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs the webhook machinery until `shutdown`: writes the events `events`
/// receives into `outbox` (one entry per URL), and delivers due entries.
pub async fn run(
    config: WebhookConfig,
    outbox: Arc<dyn Outbox>,
    events: mpsc::Receiver<HookEvent>,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    let writer = tokio::spawn(write(config.clone(), outbox.clone(), events, shutdown.clone()));
    let deliverer = tokio::spawn(deliver(config, outbox, shutdown));
    let _ = tokio::join!(writer, deliverer);
}

/// Moves events from the queue into the outbox, a batch at a time.
async fn write(
    config: Arc<WebhookConfig>,
    outbox: Arc<dyn Outbox>,
    mut events: mpsc::Receiver<HookEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            // Drain what is queued before stopping: it is not durable yet.
            () = shutdown.cancelled(), if events.is_empty() => return,
            received = events.recv_many(&mut batch, 256) => received,
        };
        if received == 0 {
            return;
        }
        let entries: Vec<Entry> = batch
            .drain(..)
            .flat_map(|event| {
                let body = serde_json::to_string(&event).unwrap_or_default();
                config.urls.iter().map(move |url| Entry::new(&event, url, body.clone()))
            })
            .collect();
        let count = entries.len() as u64;
        match outbox.push(entries, config.max_pending).await {
            Ok(accepted) if accepted < count => {
                metrics::counter!("switchboard_webhook_dropped_total", "reason" => "outbox_full")
                    .increment(count - accepted);
                tracing::warn!(
                    dropped = count - accepted,
                    max = config.max_pending,
                    "webhook outbox full: events dropped"
                );
            }
            Ok(_) => {}
            Err(error) => {
                metrics::counter!("switchboard_webhook_dropped_total", "reason" => "outbox_error").increment(count);
                tracing::error!(%error, dropped = count, "webhook events not written to the outbox");
            }
        }
    }
}

/// A claimed entry is someone's for this long: longer than a POST may take.
const LEASE: Duration = Duration::from_secs(60);

/// Claims due entries and delivers them, `concurrency` at a time.
async fn deliver(config: Arc<WebhookConfig>, outbox: Arc<dyn Outbox>, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook HTTP client not built; webhooks stay in the outbox");
            return;
        }
    };
    let mut poll = tokio::time::interval(config.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = poll.tick() => {}
        }
        match outbox.pending().await {
            Ok(pending) => metrics::gauge!("switchboard_webhook_pending").set(pending as f64),
            Err(error) => tracing::debug!(%error, "outbox size unknown"),
        }
        loop {
            let limit = config.concurrency.max(1);
            let claimed = match outbox.claim(now_millis(), LEASE.as_millis() as i64, limit).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "webhook outbox unavailable");
                    break;
                }
            };
            let full = claimed.len() == limit;
            let attempts = claimed.into_iter().map(|claimed| attempt(&config, &client, outbox.as_ref(), claimed));
            futures_util::future::join_all(attempts).await;
            if !full || shutdown.is_cancelled() {
                break;
            }
        }
    }
}

/// One delivery attempt: done on 2xx, rescheduled otherwise, dropped once too old.
async fn attempt(config: &WebhookConfig, client: &reqwest::Client, outbox: &dyn Outbox, claimed: Claimed) {
    let Claimed { key, mut entry } = claimed;
    let timestamp = now_millis() / 1000;
    let signature = sign(&config.secret, timestamp, entry.body.as_bytes());
    let sent = client
        .post(&entry.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("switchboard-event-id", &entry.event_id)
        .header("switchboard-timestamp", timestamp.to_string())
        .header("switchboard-signature", signature)
        .body(entry.body.clone())
        .send()
        .await;
    let outcome = match &sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Some("timed out".to_owned()),
        Err(error) => Some(error.to_string()),
    };
    let Some(why) = outcome else {
        metrics::counter!("switchboard_webhook_delivered_total", "type" => entry.kind.clone()).increment(1);
        if let Err(error) = outbox.done(&key).await {
            // Delivered, and will be delivered again after the lease: at least once.
            tracing::warn!(%error, event_id = entry.event_id, "delivered webhook not cleared");
        }
        return;
    };
    entry.attempts += 1;
    let now = now_millis();
    if now - entry.created_at > config.give_up_after.as_millis() as Millis {
        metrics::counter!("switchboard_webhook_failed_total", "type" => entry.kind.clone()).increment(1);
        tracing::error!(event_id = entry.event_id, url = entry.url, attempts = entry.attempts, why, "webhook given up");
        let _ = outbox.done(&key).await;
        return;
    }
    let due = now + config.backoff(entry.attempts).as_millis() as Millis;
    metrics::counter!("switchboard_webhook_retried_total", "type" => entry.kind.clone()).increment(1);
    tracing::info!(
        event_id = entry.event_id,
        url = entry.url,
        attempts = entry.attempts,
        why,
        "webhook will be retried"
    );
    if let Err(error) = outbox.retry(&key, &entry, due).await {
        tracing::warn!(%error, event_id = entry.event_id, "webhook retry not scheduled; the lease brings it back");
    }
}

#[cfg(test)]
mod tests {
    use super::{WebhookConfig, sign};
    use std::time::Duration;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let signature = sign(b"secret", 1_700_000_000, br#"{"id":"evt_1"}"#);
        assert!(signature.starts_with("v1=") && signature.len() == 3 + 64);
        assert_eq!(signature, sign(b"secret", 1_700_000_000, br#"{"id":"evt_1"}"#));
        assert_ne!(signature, sign(b"secret", 1_700_000_001, br#"{"id":"evt_1"}"#), "a replayed body at another time");
        assert_ne!(signature, sign(b"other", 1_700_000_000, br#"{"id":"evt_1"}"#));
        assert_ne!(signature, sign(b"secret", 1_700_000_000, br#"{"id":"evt_2"}"#));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = WebhookConfig::new(Vec::new(), Vec::new());
        let waits: Vec<Duration> = (1..=14).map(|attempt| config.backoff(attempt)).collect();
        assert_eq!(waits[0], Duration::from_secs(1));
        assert_eq!(waits[1], Duration::from_secs(2));
        assert_eq!(waits[5], Duration::from_secs(32));
        assert_eq!(waits[13], Duration::from_secs(3_600), "capped");
        assert_eq!(config.backoff(u32::MAX), Duration::from_secs(3_600));
    }
}
