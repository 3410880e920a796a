//! The one thread that writes. Jobs arrive on a bounded queue; the thread
//! takes everything queued (up to [`MAX_BATCH`]) into one transaction, runs
//! each job inside its own savepoint (or, for a job that fails only before
//! its first write, without one), commits once (one fsync for the batch)
//! and only then answers the callers. A caller that got `Ok` holds a
//! durable write.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::{keys, last_seqs, seen};
use crate::StoreError;

/// How many writes may wait for the writer. When it is full, callers wait
/// (async back-pressure); nothing is dropped.
pub(crate) const WRITE_QUEUE_DEPTH: usize = 8192;
/// The most jobs one transaction takes. Bounds the latency a job at the end
/// of a batch sees and the size of the WAL a commit appends.
pub(crate) const MAX_BATCH: usize = 1024;

/// Whether a job runs in a savepoint of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Savepoint {
    /// A failing job is rolled back alone.
    Own,
    /// For work that refuses only in its answer (`Ok`), before writing
    /// anything: an `Err` from it rolls back its whole transaction, every
    /// job of the batch with it. A savepoint copies each page a job touches
    /// before its first change there; work whose refusals come before any
    /// write has no use for that copy.
    None,
}

/// A queued write: its work and the caller waiting for it.
trait WriteJob: Send {
    /// Runs against the writer's connection; answers whether it succeeded
    /// and how to tell the caller once the batch's commit is known. A
    /// failure rolls back the job's savepoint, or, for a job without one,
    /// the whole transaction.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply);
    /// Whether the job runs in a savepoint of its own.
    fn savepoint(&self) -> Savepoint;
    /// Tells the caller the work could not run at all.
    fn abort(self: Box<Self>, error: StoreError);
}

type Job = Box<dyn WriteJob>;
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What runs on the writer's thread with a job's final outcome, once its
/// batch's commit is known and before its caller hears of it.
pub(crate) type Written<T> = Box<dyn FnOnce(&Result<T, StoreError>) + Send>;

struct Pending<T, F> {
    work: F,
    caller: oneshot::Sender<Result<T, StoreError>>,
    savepoint: Savepoint,
    written: Option<Written<T>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply) {
        let Pending { work, caller, written, .. } = *self;
        let outcome = match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(outcome) => outcome,
            Err(panic) => Err(StoreError::Worker(panic_text(&*panic))),
        };
        let ok = outcome.is_ok();
        let reply: Reply = Box::new(move |commit| {
            // The caller may have gone away (timeout, disconnect): the write
            // stands regardless, so there is nobody to tell.
            // A job's own failure says more than the commit's.
            answer(caller, written, outcome.and_then(|value| commit.map(|()| value)));
        });
        (ok, reply)
    }

    fn savepoint(&self) -> Savepoint {
        self.savepoint
    }

    fn abort(self: Box<Self>, error: StoreError) {
        let Pending { caller, written, .. } = *self;
        answer(caller, written, Err(error));
    }
}

/// Hands a job's final outcome to its `written` hook, then to its caller.
/// A hook that panics is logged; the writer and the caller go on.
fn answer<T>(
    caller: oneshot::Sender<Result<T, StoreError>>,
    written: Option<Written<T>>,
    outcome: Result<T, StoreError>,
) {
    if let Some(written) = written
        && let Err(panic) = catch_unwind(AssertUnwindSafe(|| written(&outcome)))
    {
        tracing::error!(panic = panic_text(&*panic), "a write's completion hook panicked");
    }
    let _ = caller.send(outcome);
}

/// How long the queue must stay empty before the writer counts as idle and
/// runs background work. A queue that is empty only between two batches of
/// a busy stream is not idle. The writer waits out the grace on the queue
/// itself, so a write that arrives during it wakes the writer at once.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(3);

/// Deferred maintenance run by the writer thread between batches.
pub(crate) type Background = Box<dyn FnMut(&Connection, bool) -> bool + Send>;

/// Called after every transaction of the writer ends (committed or rolled
/// back), before any caller of it is answered.
pub(crate) type Ended = Box<dyn FnMut() + Send>;

enum Command {
    Run(Job),
    /// Time has passed: look for due background work (expiry) even though
    /// no write arrived.
    Nudge,
    /// Finish what is queued, checkpoint, stop.
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    queue: mpsc::Sender<Command>,
    /// Set by the checkpointer: checkpoint on this connection before the
    /// next batch (see [`Nudger::restart_wal`]).
    checkpoint_due: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread on `conn`. `background` does deferred
    /// maintenance in small steps; it is called with `idle = true` when no
    /// write is waiting and with `idle = false` after every batch, and
    /// answers whether it has more to do. `ended` runs after each
    /// transaction, before its callers hear of it. `alone`: no other
    /// process writes the file, so the writer keeps each chat's last seq
    /// (see [`super::last_seqs`]), the message keys appended since their
    /// last merge ([`super::keys`]) and filters of every key a resend
    /// could name ([`super::seen`]).
    pub(crate) fn spawn(conn: Connection, background: Background, ended: Ended, alone: bool) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let checkpoint_due = Arc::new(AtomicBool::new(false));
        let due = Arc::clone(&checkpoint_due);
        // Made here, so that a store whose writer could not have its timer
        // fails to open instead of refusing every write.
        let idle = IdleWait::new()?;
        let thread = std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || {
            if alone {
                last_seqs::hold();
                keys::hold();
                if let Some(path) = conn.path().filter(|path| !path.is_empty()) {
                    seen::hold(std::path::Path::new(path));
                }
            }
            writer_loop(&conn, rx, &idle, &due, background, ended);
        })?;
        Ok(Self { queue, checkpoint_due, thread: Mutex::new(Some(thread)) })
    }

    /// Runs `work` in the next batch and resolves once that batch is durable.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue(work, Savepoint::Own, None).await?.await
    }

    /// Queues `work` behind every job queued before it and answers once it
    /// is queued: the returned future resolves when its batch is durable.
    /// Jobs run in the order they were queued. `written`, if given, is
    /// called with the job's outcome on the writer's thread as soon as its
    /// batch's commit is known, before the future resolves: in the order
    /// the jobs ran, and whether or not anyone still waits for the future.
    pub(crate) async fn queue<T, F>(
        &self,
        work: F,
        savepoint: Savepoint,
        written: Option<Written<T>>,
    ) -> Result<impl Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (caller, rx) = oneshot::channel();
        let job: Job = Box::new(Pending { work, caller, savepoint, written });
        self.queue.send(Command::Run(job)).await.map_err(|_| StoreError::Closed)?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    /// Drains the queue, makes everything durable and joins the thread.
    pub(crate) async fn shutdown(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Command::Shutdown(tx)).await.is_err() {
            return Ok(());
        }
        let _ = rx.await;
        let thread = self.thread.lock().map_err(|_| StoreError::Closed)?.take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|error| StoreError::Worker(error.to_string()))?
                .map_err(|panic| StoreError::Worker(panic_text(&*panic)))?;
        }
        Ok(())
    }

    /// Whether the writer has stopped taking work.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// A handle that wakes the writer for time-driven background work.
    pub(crate) fn nudger(&self) -> Nudger {
        Nudger { queue: self.queue.clone(), checkpoint_due: Arc::clone(&self.checkpoint_due) }
    }

    pub(crate) fn queued(&self) -> usize {
        WRITE_QUEUE_DEPTH - self.queue.capacity()
    }
}

/// Wakes the writer so that time-driven background work runs, and asks it
/// to checkpoint.
#[derive(Clone)]
pub(crate) struct Nudger {
    queue: mpsc::Sender<Command>,
    checkpoint_due: Arc<AtomicBool>,
}

impl Nudger {
    /// Never waits: a full queue means the writer is busy and will look
    /// for background work after its next batch anyway.
    pub(crate) fn nudge(&self) {
        let _ = self.queue.try_send(Command::Nudge);
    }

    /// Asks the writer to checkpoint before its next batch. A checkpoint
    /// from another connection never catches up with a writer that keeps
    /// appending, and only a WAL copied to its last frame starts over from
    /// its beginning; the writer, between two of its own transactions, is
    /// the one place where nothing is appended. The checkpointer asks when
    /// it has just copied almost everything, so what is left is small.
    pub(crate) fn restart_wal(&self) {
        self.checkpoint_due.store(true, Ordering::Relaxed);
        self.nudge();
    }

    /// Whether the writer has yet to run the checkpoint asked for with
    /// [`Nudger::restart_wal`].
    pub(crate) fn restart_due(&self) -> bool {
        self.checkpoint_due.load(Ordering::Relaxed)
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// The writer's wait for its next command with a deadline: a runtime of its
/// own thread, holding only a timer. (Polling instead, with sleeps between
/// looks at the queue, made every write that arrived during a sleep wait
/// for its end.)
struct IdleWait(tokio::runtime::Runtime);

/// What came of waiting for a command.
enum Waited {
    Command(Command),
    /// The grace passed with the queue empty.
    Idle,
    /// Every sender is gone.
    Closed,
}

impl IdleWait {
    fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_current_thread().enable_time().build().map(Self)
    }

    /// The next command, if one arrives within `grace`.
    fn next(&self, rx: &mut mpsc::Receiver<Command>, grace: std::time::Duration) -> Waited {
        if grace.is_zero() {
            return match rx.try_recv() {
                Ok(command) => Waited::Command(command),
                Err(TryRecvError::Empty) => Waited::Idle,
                Err(TryRecvError::Disconnected) => Waited::Closed,
            };
        }
        // The timer is made inside the runtime: it needs its clock.
        match self.0.block_on(async { tokio::time::timeout(grace, rx.recv()).await }) {
            Ok(Some(command)) => Waited::Command(command),
            Ok(None) => Waited::Closed,
            Err(_elapsed) => Waited::Idle,
        }
    }
}

fn writer_loop(
    conn: &Connection,
    mut rx: mpsc::Receiver<Command>,
    idle: &IdleWait,
    checkpoint_due: &AtomicBool,
    mut background: Background,
    mut ended: Ended,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    let mut stop: Option<oneshot::Sender<()>> = None;
    // Whether background work may be waiting (true at start: a previous run
    // may have left some).
    let mut background_due = true;
    let mut empty_since: Option<Instant> = None;
    while stop.is_none() {
        // Cleared once done: until then the checkpointer holds its passes
        // back, so that this one finds the checkpoint lock free.
        if checkpoint_due.load(Ordering::Relaxed) {
            checkpoint(conn);
            checkpoint_due.store(false, Ordering::Relaxed);
        }
        let first = if background_due {
            // Once the grace has passed, background steps follow each other
            // until a command arrives.
            let since = *empty_since.get_or_insert_with(Instant::now);
            match idle.next(&mut rx, IDLE_GRACE.saturating_sub(since.elapsed())) {
                Waited::Command(command) => {
                    empty_since = None;
                    command
                }
                Waited::Idle => {
                    background_due = background(conn, true);
                    ended();
                    continue;
                }
                Waited::Closed => break,
            }
        } else {
            let Some(command) = rx.blocking_recv() else { break };
            command
        };
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Run(job) => batch.push(job),
                Command::Nudge => background_due = true,
                Command::Shutdown(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Jobs that queued behind a shutdown request still run: close the
        // queue to new ones, then drain everything already in it.
        if stop.is_some() {
            rx.close();
            while let Ok(command) = rx.try_recv() {
                match command {
                    Command::Run(job) => batch.push(job),
                    // Nothing to wait for: the first shutdown request wins,
                    // a later one's caller sees the queue closed.
                    Command::Nudge | Command::Shutdown(_) => {}
                }
            }
        }
        if !batch.is_empty() {
            run_batch(conn, &mut batch, &mut replies, rx.len(), &mut ended);
            // Between batches the background only works off a large backlog.
            background(conn, false);
            ended();
            // The batch may have queued new background work either way.
            background_due = true;
        }
    }
    if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "final WAL checkpoint failed");
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Copies what the checkpointer left of the WAL into the database; the
/// next transaction then writes the WAL from its beginning again. The
/// checkpointer holds its passes until this has run; should the lock be
/// taken anyway, this one does nothing and the checkpointer asks again.
fn checkpoint(conn: &Connection) {
    let started = Instant::now();
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0)) {
        Ok(busy) => {
            if busy == 0 {
                metrics::histogram!("switchboard_store_writer_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
        }
        Err(error) => tracing::warn!(%error, "writer's WAL checkpoint failed"),
    }
}

/// What the jobs of a batch hear when one without a savepoint failed.
const BROKEN_BATCH: &str = "a write of the same batch failed; nothing of the batch was kept";

fn run_batch(conn: &Connection, batch: &mut Vec<Job>, replies: &mut Vec<Reply>, rx_len: usize, ended: &mut Ended) {
    let started = Instant::now();
    let size = batch.len();
    let begin = conn.execute_batch("BEGIN IMMEDIATE");
    if let Err(error) = begin {
        let text = error.to_string();
        for job in batch.drain(..) {
            job.abort(StoreError::CommitFailed(text.clone()));
        }
        tracing::error!(error = %text, "could not begin a write transaction");
        return;
    }
    last_seqs::transaction_started();
    // Set when a job without a savepoint failed: part of it may be in the
    // transaction, so none of the batch is kept.
    let mut broken = false;
    for job in batch.drain(..) {
        if broken {
            job.abort(StoreError::CommitFailed(BROKEN_BATCH.into()));
            continue;
        }
        let savepoint = job.savepoint();
        last_seqs::job_started();
        let (ok, reply) = match savepoint {
            Savepoint::Own => run_in_savepoint(conn, job),
            Savepoint::None => job.run(conn),
        };
        last_seqs::job_ended(ok);
        if !ok {
            metrics::counter!("switchboard_store_write_errors_total").increment(1);
            broken = savepoint == Savepoint::None;
        }
        replies.push(reply);
    }
    let commit = if broken {
        let _ = conn.execute_batch("ROLLBACK");
        Err(BROKEN_BATCH.to_owned())
    } else {
        // The running merge of message keys rides the commit (see `keys`).
        keys::merge_some(conn);
        conn.execute_batch("COMMIT").map_err(|error| {
            let _ = conn.execute_batch("ROLLBACK");
            error.to_string()
        })
    };
    if let Err(error) = &commit {
        tracing::error!(%error, batch = size, "write batch failed to commit");
    }
    last_seqs::transaction_ended(commit.is_ok());
    ended();
    for reply in replies.drain(..) {
        reply(commit.clone().map_err(StoreError::CommitFailed));
    }
    // After the replies: this may sort the keys of the next merge.
    keys::transaction_ended(commit.is_ok());
    metrics::counter!("switchboard_store_writes_total").increment(size as u64);
    metrics::gauge!("switchboard_store_write_queue").set(rx_len as f64);
    metrics::counter!("switchboard_store_commits_total").increment(1);
    metrics::histogram!("switchboard_store_batch_size").record(size as f64);
    metrics::histogram!("switchboard_store_commit_seconds").record(started.elapsed().as_secs_f64());
}

fn run_in_savepoint(conn: &Connection, job: Job) -> (bool, Reply) {
    if let Err(error) = exec_cached(conn, "SAVEPOINT job") {
        job.abort(StoreError::Database(error));
        return (false, Box::new(|_| {}));
    }
    let (ok, reply) = job.run(conn);
    let end = if ok {
        exec_cached(conn, "RELEASE job")
    } else {
        exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
    };
    if let Err(error) = end {
        tracing::error!(%error, "savepoint could not be closed");
    }
    (ok, reply)
}

/// Runs a parameterless statement from the connection's statement cache
/// (savepoint control runs once per job or message: no re-parsing).
pub(crate) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{Savepoint, Writer};
    use crate::StoreError;

    fn writer(dir: &std::path::Path) -> Writer {
        let conn = Connection::open(dir.join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY);").unwrap();
        Writer::spawn(conn, Box::new(|_, _| false), Box::new(|| {}), true).unwrap()
    }

    fn insert(n: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |conn| Ok(conn.execute("INSERT INTO t (n) VALUES (?1)", [n]).map(drop)?)
    }

    fn count(dir: &std::path::Path) -> i64 {
        let conn = Connection::open(dir.join("w.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap()
    }

    #[tokio::test]
    async fn a_failing_job_without_a_savepoint_takes_its_whole_batch_back() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(dir.path());
        // The writer waits in this job until the three below are queued:
        // they then run in one transaction, whichever batch the gate was in.
        let (open, gate) = std::sync::mpsc::sync_channel::<()>(1);
        let gated = writer
            .queue(
                move |_| {
                    let _ = gate.recv();
                    Ok(())
                },
                Savepoint::Own,
                None,
            )
            .await
            .unwrap();
        let first = writer.queue(insert(1), Savepoint::Own, None).await.unwrap();
        let broken = writer
            .queue(
                |conn| {
                    conn.execute("INSERT INTO t (n) VALUES (2)", [])?;
                    Err::<(), _>(StoreError::Worker("failed after a write".into()))
                },
                Savepoint::None,
                None,
            )
            .await
            .unwrap();
        let after = writer.queue(insert(3), Savepoint::Own, None).await.unwrap();
        open.send(()).unwrap();
        // (The gate's own outcome depends on whether it was in their batch.)
        let (_, first, broken, after) = tokio::join!(gated, first, broken, after);
        assert!(matches!(broken, Err(StoreError::Worker(_))), "its own error: {broken:?}");
        for other in [first, after] {
            assert!(matches!(other, Err(StoreError::CommitFailed(_))), "{other:?}");
        }
        assert_eq!(count(dir.path()), 0, "nothing of the batch is kept");

        // The writer goes on; an unguarded job that refuses in its answer
        // keeps its batch.
        let refused =
            writer.queue(|_| Ok::<_, StoreError>(Err::<(), &str>("refused")), Savepoint::None, None).await.unwrap();
        let next = writer.queue(insert(4), Savepoint::Own, None).await.unwrap();
        assert_eq!(refused.await.unwrap(), Err("refused"));
        next.await.unwrap();
        assert_eq!(count(dir.path()), 1);
        writer.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn written_hears_each_outcome_on_the_writer_after_the_commit_and_before_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer(dir.path());
        let (heard, hearing) = std::sync::mpsc::sync_channel(1);
        let path = dir.path().to_owned();
        let written = move |outcome: &Result<(), StoreError>| {
            // Another connection sees the row: the commit came first.
            let thread = std::thread::current().name().map(str::to_owned);
            heard.send((outcome.is_ok(), count(&path), thread)).unwrap();
        };
        let queued = writer.queue(insert(1), Savepoint::Own, Some(Box::new(written))).await.unwrap();
        queued.await.unwrap();
        // Heard before the future resolved: the report is there already.
        assert_eq!(hearing.try_recv(), Ok((true, 1, Some("sqlite-writer".to_owned()))));

        let (heard, hearing) = std::sync::mpsc::sync_channel(1);
        let failing = |_: &Connection| Err::<(), _>(StoreError::Worker("refused".into()));
        let written = move |outcome: &Result<(), StoreError>| heard.send(outcome.is_err()).unwrap();
        let queued = writer.queue(failing, Savepoint::Own, Some(Box::new(written))).await.unwrap();
        assert!(matches!(queued.await, Err(StoreError::Worker(_))));
        assert_eq!(hearing.try_recv(), Ok(true), "a failure is heard too");
        writer.shutdown().await.unwrap();
    }
}
