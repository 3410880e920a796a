//! The page cache under real databases: splits that reorder pages, a
//! rolled-back transaction that grew the file, and what a reopened file
//! holds.

use rusqlite::{Connection, params};

mod common;
use common::open_gathering as open;

fn check(conn: &Connection) {
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(verdict, "ok");
}

/// Keys spread over the index, as a store's per-sender and per-chat
/// entries are, so that leaves split all over it.
fn key(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20
}

/// Inserts rows `ids`, each under its scattered key.
fn insert(conn: &Connection, ids: std::ops::Range<u64>) {
    for n in ids {
        conn.execute(
            "INSERT INTO t (id, k, body) VALUES (?1, ?2, ?3)",
            params![n as i64, key(n) as i64, format!("row {n}")],
        )
        .unwrap();
    }
}

#[test]
fn splits_park_pages_and_every_row_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = open(&path);
    assert!(wal_gather::page_cache::installed(), "register came before anything else touched SQLite");
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, body TEXT NOT NULL); CREATE INDEX t_k ON t (k);",
    )
    .unwrap();
    let parks = wal_gather::page_cache::parked_pages();
    for batch in 0..40_u64 {
        let tx = conn.unchecked_transaction().unwrap();
        insert(&tx, batch * 500..(batch + 1) * 500);
        tx.commit().unwrap();
    }
    assert!(
        wal_gather::page_cache::parked_pages() > parks,
        "20,000 scattered index entries reordered some split pages"
    );
    check(&conn);

    // A transaction that grows the file and is rolled back: the pages past
    // the old end are dropped from the cache, and nothing of it stays.
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    insert(&tx, 20_000..30_000);
    tx.rollback().unwrap();
    assert_eq!(conn.query_row("PRAGMA page_count", [], |row| row.get::<_, i64>(0)).unwrap(), pages);
    check(&conn);

    // Every row, by its index and by its id, after a reopen.
    drop(conn);
    let conn = open(&path);
    check(&conn);
    let count: i64 = conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap();
    assert_eq!(count, 20_000);
    for n in (0..20_000_u64).step_by(997) {
        let body: String = conn
            .query_row("SELECT body FROM t WHERE k = ?1 AND id = ?2", params![key(n) as i64, n as i64], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(body, format!("row {n}"));
    }
}
