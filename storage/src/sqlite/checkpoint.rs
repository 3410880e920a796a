//! WAL checkpoints on their own thread. A PASSIVE checkpoint from a second
//! connection runs beside the writer without taking its lock, so copying
//! the WAL back into the database (and that fsync) never stalls an append.
//! The same tick nudges the writer, so that time-driven background work
//! (erasing expired messages) runs even when no write arrives.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::writer::Nudger;
use crate::StoreError;

/// How often the checkpointer runs.
const INTERVAL: Duration = Duration::from_millis(500);

/// The writer's own automatic checkpoint, as a safety net only (pages):
/// if the checkpointer ever falls behind badly, the WAL still stops
/// growing at about 200 MiB.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: i64 = 50_000;

pub(crate) struct Checkpointer {
    /// Dropping (or sending on) it tells the thread to stop.
    stop: Mutex<Option<mpsc::SyncSender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path, writer: Nudger) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        super::configure(&conn)?;
        // One message ever: the stop.
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                let started = Instant::now();
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                }) {
                    Ok((wal_pages, copied)) => {
                        metrics::gauge!("switchboard_store_wal_pages").set(wal_pages as f64);
                        if copied > 0 {
                            metrics::histogram!("switchboard_store_checkpoint_seconds")
                                .record(started.elapsed().as_secs_f64());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
                }
                writer.nudge();
            }
        })?;
        Ok(Self { stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) })
    }

    /// Stops the thread; the writer does the final, truncating checkpoint.
    pub(crate) fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
