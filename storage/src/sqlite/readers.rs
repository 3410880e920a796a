//! A small pool of read-only connections. Reads run on tokio's blocking
//! pool so no SQLite call ever blocks the async runtime; WAL lets them run
//! beside the writer.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::StoreError;

pub(crate) struct Readers {
    path: PathBuf,
    /// Idle connections. Held only to push or pop, never across an await.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: bounds concurrent reads (and so the
    /// blocking threads they occupy); further readers wait their turn.
    permits: Semaphore,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Readers {
    pub(crate) fn new(path: PathBuf, size: usize) -> Self {
        Self { path, idle: Mutex::new(Vec::with_capacity(size)), permits: Semaphore::new(size.max(1)) }
    }

    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let idle = self.idle.lock().map_err(|_| StoreError::Closed)?.pop();
        let path = self.path.clone();
        let (conn, outcome) = tokio::task::spawn_blocking(move || {
            let conn = match idle {
                Some(conn) => conn,
                None => super::open_reader(&path)?,
            };
            let outcome = work(&conn);
            Ok::<_, StoreError>((conn, outcome))
        })
        .await
        .map_err(|error| StoreError::Worker(error.to_string()))??;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        outcome
    }
}
