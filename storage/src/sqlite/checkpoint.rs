//! WAL checkpoints on their own thread. A PASSIVE checkpoint from a second
//! connection runs beside the writer without taking its lock, so copying
//! the WAL back into the database (and that fsync) never stalls an append.
//! While writes keep coming it checkpoints every [`BUSY_INTERVAL`], so
//! that each pass is short and little is ever left uncopied. Once the WAL
//! is [`RESTART_PAGES`] long (by default) and a pass has copied all it saw,
//! the writer copies the few frames appended meanwhile itself, and its next
//! transaction writes the WAL from the beginning again. (Left alone, the
//! WAL would grow until the writer's own automatic checkpoint copied a
//! backlog of thousands of pages while every write waited.)
//! Every [`INTERVAL`] it nudges the writer, so that time-driven background
//! work (erasing expired messages) runs even when no write arrives.

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::stoppable::StoppableThread;
use super::writer::Nudger;
use crate::StoreError;

/// How often the checkpointer runs when nothing is being written.
const INTERVAL: Duration = Duration::from_millis(500);
/// How often it runs while the last pass found frames to copy.
const BUSY_INTERVAL: Duration = Duration::from_millis(20);
/// The default WAL length (pages) from which the writer is asked to finish
/// a checkpoint so that the WAL starts over: 64 MiB. Each start-over holds
/// writes for about one fsync of the database file.
pub(crate) const RESTART_PAGES: i64 = 16_384;

/// The writer's own automatic checkpoint, as a safety net only (pages):
/// if the checkpointer ever falls behind badly, the WAL still stops
/// growing at about 200 MiB.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: i64 = 50_000;

pub(crate) struct Checkpointer {
    thread: StoppableThread,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path, writer: Nudger, restart_pages: i64) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        super::configure(&conn)?;
        let thread = StoppableThread::spawn("sqlite-checkpoint", move |stopped| {
            // A first pass soon: writes may be arriving already.
            let mut wait = BUSY_INTERVAL;
            let mut nudged = Instant::now();
            let mut seen = Seen::default();
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                if writer.restart_due() {
                    // The writer is about to copy the rest itself and start
                    // the WAL over: a pass now would hold the checkpoint
                    // lock it needs, and under load passes follow each
                    // other closely enough to keep it from ever getting it.
                    wait = BUSY_INTERVAL;
                    continue;
                }
                let started = Instant::now();
                wait = INTERVAL;
                match pass(&conn) {
                    Ok(Pass { wal_pages, copied, version }) => {
                        metrics::gauge!("switchboard_store_wal_pages").set(wal_pages as f64);
                        if seen.writes_since(copied, version) {
                            metrics::histogram!("switchboard_store_checkpoint_seconds")
                                .record(started.elapsed().as_secs_f64());
                            wait = BUSY_INTERVAL;
                            if copied == wal_pages && wal_pages >= restart_pages {
                                writer.restart_wal();
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
                }
                if nudged.elapsed() >= INTERVAL {
                    writer.nudge();
                    nudged = Instant::now();
                }
            }
        })?;
        Ok(Self { thread })
    }

    /// Stops the thread; the writer does the final, truncating checkpoint.
    pub(crate) fn stop(&self) {
        self.thread.stop();
    }
}

/// What one pass saw.
struct Pass {
    /// Frames in the WAL.
    wal_pages: i64,
    /// Frames of it now in the database.
    copied: i64,
    /// `PRAGMA data_version` after the pass: it moves with every commit
    /// of another connection.
    version: i64,
}

/// A PASSIVE checkpoint (its counts are -1 when another one was running).
fn pass(conn: &rusqlite::Connection) -> rusqlite::Result<Pass> {
    let (wal_pages, copied) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(1)?, row.get(2)?)))?;
    let version = conn.query_row("PRAGMA data_version", [], |row| row.get(0))?;
    Ok(Pass { wal_pages, copied, version })
}

/// Whether writes came since the last pass, which keeps the passes
/// [`BUSY_INTERVAL`] apart. The frame counts alone cannot tell: the WAL
/// starts over whenever a pass has copied all of it, so two passes in a
/// row can find the same number of new frames, and taking that for
/// silence left the WAL to grow for a whole [`INTERVAL`] (to 50,000
/// frames under overload). The data version moves with every commit.
#[derive(Debug, Default)]
struct Seen {
    copied: i64,
    version: i64,
}

impl Seen {
    fn writes_since(&mut self, copied: i64, version: i64) -> bool {
        let writes = copied != self.copied || version != self.version;
        *self = Self { copied, version };
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_counts_as_writes_even_when_the_frame_count_repeats() {
        let mut seen = Seen::default();
        assert!(seen.writes_since(18, 1), "the first frames");
        // The WAL started over and was given 18 frames again: new commits.
        assert!(seen.writes_since(18, 2));
        // Nothing committed and nothing more copied: quiet.
        assert!(!seen.writes_since(18, 2));
        // The writer's own checkpoint copied the rest: work, not silence.
        assert!(seen.writes_since(25, 2));
        // Another checkpoint held the lock (-1) while commits came.
        assert!(seen.writes_since(-1, 3));
        assert!(!seen.writes_since(-1, 3));
    }
}
