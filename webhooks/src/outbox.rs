//! The durable outbox of webhook deliveries: one entry per event and URL,
//! due at a time, claimed under a lease by one deliverer at a time.
//! [`SqliteOutbox`] keeps it in a file of its own beside the embedded
//! store; [`RedisOutbox`] keeps it in the cluster's Redis, where every
//! node's deliverer claims from it atomically.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use protocol::time::{Millis, now_millis};
use redis::Script;
use router::redis::RedisConnection;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use service::HookEvent;

/// Why the outbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for OutboxError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// One delivery to make: an event's body for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub event_id: String,
    pub kind: String,
    pub url: String,
    /// The JSON body, exactly as it is signed and sent on every try.
    pub body: String,
    pub created_at: Millis,
    /// Tries that failed so far.
    pub attempts: u32,
}

impl Entry {
    pub fn new(event: &HookEvent, url: &str, body: String) -> Self {
        Self {
            event_id: event.id.clone(),
            kind: event.kind.to_owned(),
            url: url.to_owned(),
            body,
            created_at: event.created_at,
            attempts: 0,
        }
    }

    /// Its key in the outbox: one per event and URL.
    pub fn key(&self) -> String {
        format!("{}@{}", self.event_id, self.url)
    }
}

/// An entry a deliverer holds until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub key: String,
    pub entry: Entry,
}

/// Where webhook deliveries wait.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Adds entries, due now, while fewer than `max_pending` wait; answers
    /// how many were taken (an entry already there counts as taken).
    async fn push(&self, entries: Vec<Entry>, max_pending: u64) -> Result<u64, OutboxError>;
    /// Up to `limit` entries due at `now`, each leased to the caller for
    /// `lease_ms` (no one else claims it meanwhile).
    async fn claim(&self, now: Millis, lease_ms: Millis, limit: usize) -> Result<Vec<Claimed>, OutboxError>;
    /// Removes a delivered (or abandoned) entry.
    async fn done(&self, key: &str) -> Result<(), OutboxError>;
    /// Keeps `entry` (its attempts counted) for another try at `due`.
    async fn retry(&self, key: &str, entry: &Entry, due: Millis) -> Result<(), OutboxError>;
    /// How many entries wait.
    async fn pending(&self) -> Result<u64, OutboxError>;
}

/// The embedded outbox: `webhooks.db` in the data dir, written with
/// `synchronous = FULL`, so an entry it took survives a crash.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteOutbox {
    /// Opens (or creates) the outbox file in `dir`.
    pub fn open(dir: &Path) -> Result<Self, OutboxError> {
        let connection = Connection::open(dir.join("webhooks.db"))?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS outbox (
                 key        TEXT PRIMARY KEY,
                 event_id   TEXT    NOT NULL,
                 kind       TEXT    NOT NULL,
                 url        TEXT    NOT NULL,
                 body       TEXT    NOT NULL,
                 created_at INTEGER NOT NULL,
                 attempts   INTEGER NOT NULL,
                 due_at     INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at);",
        )?;
        // The file is this process's alone: a lease held when it last
        // stopped (a crash in mid-attempt) is void, so what waits is due now
        // rather than after the lease.
        let released = connection.execute("UPDATE outbox SET due_at = ?1 WHERE due_at > ?1", [now_millis()])?;
        if released > 0 {
            tracing::info!(released, "webhook deliveries waiting since the last run are due now");
        }
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|error| OutboxError::Unavailable(error.to_string()))?
        .map_err(Into::into)
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn push(&self, entries: Vec<Entry>, max_pending: u64) -> Result<u64, OutboxError> {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            let waiting: i64 = transaction.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?;
            let mut room = max_pending.saturating_sub(waiting as u64);
            let mut taken = 0;
            for entry in entries {
                let known: Option<i64> = transaction
                    .query_row("SELECT 1 FROM outbox WHERE key = ?1", [entry.key()], |row| row.get(0))
                    .optional()?;
                if known.is_some() {
                    taken += 1;
                    continue;
                }
                if room == 0 {
                    continue;
                }
                transaction.execute(
                    "INSERT INTO outbox (key, event_id, kind, url, body, created_at, attempts, due_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
                    params![
                        entry.key(),
                        entry.event_id,
                        entry.kind,
                        entry.url,
                        entry.body,
                        entry.created_at,
                        entry.attempts
                    ],
                )?;
                room -= 1;
                taken += 1;
            }
            transaction.commit()?;
            Ok(taken)
        })
        .await
    }

    async fn claim(&self, now: Millis, lease_ms: Millis, limit: usize) -> Result<Vec<Claimed>, OutboxError> {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            let claimed: Vec<Claimed> = {
                let mut due = transaction.prepare(
                    "SELECT key, event_id, kind, url, body, created_at, attempts FROM outbox \
                     WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2",
                )?;
                due.query_map(params![now, limit as i64], |row| {
                    Ok(Claimed {
                        key: row.get(0)?,
                        entry: Entry {
                            event_id: row.get(1)?,
                            kind: row.get(2)?,
                            url: row.get(3)?,
                            body: row.get(4)?,
                            created_at: row.get(5)?,
                            attempts: row.get(6)?,
                        },
                    })
                })?
                .collect::<Result<_, _>>()?
            };
            for claimed in &claimed {
                transaction
                    .execute("UPDATE outbox SET due_at = ?1 WHERE key = ?2", params![now + lease_ms, claimed.key])?;
            }
            transaction.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn done(&self, key: &str) -> Result<(), OutboxError> {
        let key = key.to_owned();
        self.with(move |connection| connection.execute("DELETE FROM outbox WHERE key = ?1", [key]).map(drop)).await
    }

    async fn retry(&self, key: &str, entry: &Entry, due: Millis) -> Result<(), OutboxError> {
        let (key, attempts) = (key.to_owned(), entry.attempts);
        self.with(move |connection| {
            connection
                .execute("UPDATE outbox SET attempts = ?1, due_at = ?2 WHERE key = ?3", params![attempts, due, key])
                .map(drop)
        })
        .await
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        self.with(|connection| connection.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get::<_, i64>(0)))
            .await
            .map(|count| count as u64)
    }
}

/// The cluster's outbox in Redis: `{p}:webhooks:due` (a sorted set of
/// entry keys by due time) and `{p}:webhooks:entries` (a hash of entry
/// key to entry). Every step is one Lua script, so claims are atomic
/// across nodes.
#[derive(Debug, Clone)]
pub struct RedisOutbox {
    redis: RedisConnection,
}

struct Scripts {
    push: Script,
    claim: Script,
    done: Script,
    retry: Script,
    pending: Script,
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    // ARGV: p, max, then key, entry, due for each entry.
    push: Script::new(
        r"
local due, entries = ARGV[1] .. ':webhooks:due', ARGV[1] .. ':webhooks:entries'
local room = tonumber(ARGV[2]) - redis.call('ZCARD', due)
local taken = 0
for i = 3, #ARGV, 3 do
  if redis.call('HEXISTS', entries, ARGV[i]) == 1 then
    taken = taken + 1
  elseif room > 0 then
    redis.call('HSET', entries, ARGV[i], ARGV[i + 1])
    redis.call('ZADD', due, ARGV[i + 2], ARGV[i])
    room = room - 1
    taken = taken + 1
  end
end
return taken
",
    ),
    // ARGV: p, now, lease, limit. Answers key, entry, key, entry, ...
    claim: Script::new(
        r"
local due, entries = ARGV[1] .. ':webhooks:due', ARGV[1] .. ':webhooks:entries'
local now = tonumber(ARGV[2])
local keys = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, key in ipairs(keys) do
  local entry = redis.call('HGET', entries, key)
  if entry then
    redis.call('ZADD', due, now + tonumber(ARGV[3]), key)
    table.insert(out, key)
    table.insert(out, entry)
  else
    redis.call('ZREM', due, key)
  end
end
return out
",
    ),
    // ARGV: p, key.
    done: Script::new(
        r"
redis.call('ZREM', ARGV[1] .. ':webhooks:due', ARGV[2])
return redis.call('HDEL', ARGV[1] .. ':webhooks:entries', ARGV[2])
",
    ),
    // ARGV: p, key, entry, due. Only while the entry is still there.
    retry: Script::new(
        r"
if redis.call('HEXISTS', ARGV[1] .. ':webhooks:entries', ARGV[2]) == 0 then return 0 end
redis.call('HSET', ARGV[1] .. ':webhooks:entries', ARGV[2], ARGV[3])
redis.call('ZADD', ARGV[1] .. ':webhooks:due', ARGV[4], ARGV[2])
return 1
",
    ),
    pending: Script::new("return redis.call('ZCARD', ARGV[1] .. ':webhooks:due')"),
});

impl RedisOutbox {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn prefix(&self) -> &str {
        &self.redis.config().prefix
    }
}

fn unavailable(error: String) -> OutboxError {
    OutboxError::Unavailable(error)
}

fn encode(entry: &Entry) -> Result<String, OutboxError> {
    serde_json::to_string(entry).map_err(|error| unavailable(error.to_string()))
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn push(&self, entries: Vec<Entry>, max_pending: u64) -> Result<u64, OutboxError> {
        let mut invocation = SCRIPTS.push.prepare_invoke();
        invocation.arg(self.prefix()).arg(max_pending);
        for entry in &entries {
            invocation.arg(entry.key()).arg(encode(entry)?).arg(entry.created_at);
        }
        let taken: i64 = self.redis.invoke(&invocation).await.map_err(unavailable)?;
        Ok(taken as u64)
    }

    async fn claim(&self, now: Millis, lease_ms: Millis, limit: usize) -> Result<Vec<Claimed>, OutboxError> {
        let mut invocation = SCRIPTS.claim.prepare_invoke();
        invocation.arg(self.prefix()).arg(now).arg(lease_ms).arg(limit);
        let flat: Vec<String> = self.redis.invoke(&invocation).await.map_err(unavailable)?;
        let mut claimed = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            match serde_json::from_str::<Entry>(&pair[1]) {
                Ok(entry) => claimed.push(Claimed { key: pair[0].clone(), entry }),
                Err(error) => {
                    tracing::error!(%error, key = pair[0], "unreadable outbox entry dropped");
                    self.done(&pair[0]).await?;
                }
            }
        }
        Ok(claimed)
    }

    async fn done(&self, key: &str) -> Result<(), OutboxError> {
        let mut invocation = SCRIPTS.done.prepare_invoke();
        invocation.arg(self.prefix()).arg(key);
        self.redis.invoke::<i64>(&invocation).await.map(drop).map_err(unavailable)
    }

    async fn retry(&self, key: &str, entry: &Entry, due: Millis) -> Result<(), OutboxError> {
        let mut invocation = SCRIPTS.retry.prepare_invoke();
        invocation.arg(self.prefix()).arg(key).arg(encode(entry)?).arg(due);
        self.redis.invoke::<i64>(&invocation).await.map(drop).map_err(unavailable)
    }

    async fn pending(&self) -> Result<u64, OutboxError> {
        let mut invocation = SCRIPTS.pending.prepare_invoke();
        invocation.arg(self.prefix());
        self.redis.invoke::<i64>(&invocation).await.map(|count| count as u64).map_err(unavailable)
    }
}
