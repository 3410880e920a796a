//! The VFS against real files: what a commit writes, what other
//! connections see while it writes, and what a reopened file holds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OpenFlags, params};

mod common;
use common::open_gathering;

fn open_plain(path: &Path) -> Connection {
    // Whichever test opens SQLite first, the page cache goes in before it.
    wal_gather::register().unwrap();
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn
}

#[test]
fn a_commit_is_written_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_gathering(&dir.path().join("db"));
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)").unwrap();
    let before = wal_gather::wal_stats(&conn).expect("the WAL is open through the VFS");
    let tx = conn.unchecked_transaction().unwrap();
    for id in 0..200 {
        tx.execute("INSERT INTO t (id, body) VALUES (?1, zeroblob(300))", [id]).unwrap();
    }
    tx.commit().unwrap();
    let after = wal_gather::wal_stats(&conn).unwrap();
    let asked = after.writes_asked - before.writes_asked;
    let made = after.writes_made - before.writes_made;
    // 200 rows of 300 bytes fill about 16 pages (fewer than the 31 frames
    // one call can carry): a header and a page each.
    assert!(asked >= 30, "SQLite asked for {asked} writes");
    assert_eq!(made, 1, "{asked} writes were handed on as {made}");
}

#[test]
fn other_files_and_connections_are_not_gathered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = open_gathering(&path);
    conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
    assert!(wal_gather::wal_stats(&open_plain(&path)).is_none());
    let rollback = dir.path().join("rollback");
    let journaled = Connection::open_with_flags_and_vfs(&rollback, OpenFlags::default(), wal_gather::VFS_NAME).unwrap();
    journaled.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);").unwrap();
    assert!(wal_gather::wal_stats(&journaled).is_none(), "a rollback journal is written as asked");
    assert_eq!(open_plain(&rollback).query_row("SELECT n FROM t", [], |row| row.get::<_, i64>(0)).unwrap(), 1);
}

/// Transactions of every size (past the buffer's 128 KiB, with a page cache
/// small enough that SQLite spills, reads back and rewrites frames inside a
/// transaction, some rolled back), while a plain connection checks after
/// every read that it saw whole transactions only.
#[test]
fn readers_and_a_reopened_file_see_whole_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = open_gathering(&path);
    conn.execute_batch(
        "PRAGMA cache_size = 20;
         CREATE TABLE rows (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, body BLOB NOT NULL);
         CREATE INDEX rows_by_n ON rows (n);
         CREATE TABLE total (one INTEGER PRIMARY KEY CHECK (one = 1), sum INTEGER NOT NULL, count INTEGER NOT NULL);
         INSERT INTO total VALUES (1, 0, 0);",
    )
    .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = open_plain(&path);
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let tx = conn.unchecked_transaction().unwrap();
                let (sum, count): (i64, i64) =
                    tx.query_row("SELECT sum, count FROM total", [], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
                let (rows_sum, rows_count): (i64, i64) = tx
                    .query_row("SELECT COALESCE(SUM(n), 0), COUNT(*) FROM rows", [], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .unwrap();
                assert_eq!((rows_sum, rows_count), (sum, count), "a reader saw part of a transaction");
                tx.finish().unwrap();
                reads += 1;
            }
            reads
        })
    };

    let mut expected = (0_i64, 0_i64);
    let mut next_id = 0_i64;
    for round in 0..60_i64 {
        // 1 to about 2,400 rows of 700 bytes: up to about 1.7 MiB of pages.
        let rows = 1 + (round * round * 37) % 2_400;
        let tx = conn.unchecked_transaction().unwrap();
        let mut added = (0, 0);
        for _ in 0..rows {
            let n = (next_id * 7919) % 1_000;
            tx.execute("INSERT INTO rows (id, n, body) VALUES (?1, ?2, randomblob(700))", params![next_id, n]).unwrap();
            next_id += 1;
            added = (added.0 + n, added.1 + 1);
        }
        // Rewrite pages already written in this transaction.
        tx.execute("UPDATE rows SET body = randomblob(690) WHERE id % 5 = 0 AND id >= ?1", [next_id - rows]).unwrap();
        tx.execute("UPDATE total SET sum = sum + ?1, count = count + ?2", params![added.0, added.1]).unwrap();
        if round % 7 == 3 {
            tx.rollback().unwrap();
        } else {
            tx.commit().unwrap();
            expected = (expected.0 + added.0, expected.1 + added.1);
        }
        if round % 20 == 19 {
            // Copy the WAL back and start it over, as the store does.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        }
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let stats = wal_gather::wal_stats(&conn).unwrap();
    // The tiny cache makes SQLite read frames back between writes, and each
    // read hands the buffer on first: fewer calls, not one per commit.
    assert!(stats.writes_made < stats.writes_asked, "{stats:?}");
    drop(conn);

    let reopened = open_plain(&path);
    let check: String = reopened.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let total: (i64, i64) = reopened
        .query_row("SELECT COALESCE(SUM(n), 0), COUNT(*) FROM rows", [], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap();
    assert_eq!(total, expected);
}

#[test]
fn registering_again_answers_the_same_name() {
    assert_eq!(wal_gather::register().unwrap(), wal_gather::VFS_NAME);
    assert_eq!(wal_gather::register().unwrap(), wal_gather::VFS_NAME);
}

#[test]
fn an_unknown_vfs_name_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Connection::open_with_flags_and_vfs(dir.path().join("db"), OpenFlags::default(), "no-such-vfs");
    assert!(opened.is_err());
}
