//! What the integration tests share.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// A connection through the gathering VFS, in WAL mode with full syncs, as
/// the store opens its writer.
pub(crate) fn open_gathering(path: &Path) -> Connection {
    let vfs = wal_gather::register().unwrap();
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").unwrap();
    conn
}
