//! The ScyllaDB schema (`src/scylla/migrations`) over the real CQL v4 wire,
//! with the `scylla` driver, against the in-memory CQL server of the
//! `kassandra` crate (no ScyllaDB can run on these machines).
//!
//! What this proves: every migration statement is accepted; every table
//! takes a row with a value in every column through a prepared statement,
//! and gives the same typed values back. What it cannot prove: kassandra
//! parses only `=` restrictions and ignores `IF` conditions, ranges and
//! `ORDER BY`, so lightweight transactions, range reads and clustering
//! order are a real cluster's to check (`SCYLLA_URI`).

mod in_memory;

use std::collections::HashMap;

use scylla::value::{CqlValue, Row};
use storage::StoreError;
use storage::scylla::{MIGRATIONS, ScyllaConfig, connect, migrate, statements};

/// A table of the schema: its columns in order, with types, and its
/// primary key columns.
#[derive(Debug)]
struct Table {
    name: String,
    columns: Vec<(String, String)>,
    key: Vec<String>,
}

/// Reads `CREATE TABLE` statements the way the migrations write them: one
/// column per line, the key inline (`id bigint PRIMARY KEY`) or last
/// (`PRIMARY KEY ((a, b), c)`).
fn tables(statements: &[String]) -> Vec<Table> {
    let mut tables = Vec::new();
    for statement in statements.iter().filter(|s| s.starts_with("CREATE TABLE")) {
        let name = statement.split_whitespace().nth(5).unwrap().to_owned();
        let (mut columns, mut key) = (Vec::new(), Vec::new());
        for line in statement.lines().skip(1) {
            let line = line.trim().trim_end_matches(',');
            if line.starts_with(')') {
                break;
            }
            if let Some(spec) = line.strip_prefix("PRIMARY KEY") {
                key = spec.split(|c: char| "(), ".contains(c)).filter(|c| !c.is_empty()).map(str::to_owned).collect();
            } else if let [column, kind, rest @ ..] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
                columns.push(((*column).to_owned(), (*kind).to_owned()));
                if rest == ["PRIMARY", "KEY"] {
                    key.push((*column).to_owned());
                }
            }
        }
        tables.push(Table { name, columns, key });
    }
    tables
}

/// A distinct value of the column's type.
fn value(kind: &str, n: i64) -> CqlValue {
    match kind {
        "bigint" => CqlValue::BigInt((1 << 52) + n),
        "int" => CqlValue::Int(i32::try_from(n).unwrap()),
        "boolean" => CqlValue::Boolean(n % 2 == 0),
        "text" => CqlValue::Text(format!("值 {n}: text with quotes ' and \" and emoji 🙂")),
        other => panic!("no test value for CQL type {other}: add one"),
    }
}

/// The store's own connection settings, pointed at the in-memory server
/// (no peers or schema tables there to read or agree on).
fn config(addr: std::net::SocketAddr) -> ScyllaConfig {
    ScyllaConfig {
        replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
        cluster_metadata: false,
        ..ScyllaConfig::new(vec![addr.to_string()])
    }
}

async fn check(addr: std::net::SocketAddr) {
    let config = config(addr);
    let session = connect(&config).await.expect("the driver connects");
    assert_eq!(migrate(&session, &config).await.unwrap(), MIGRATIONS.len(), "every migration applies");
    assert_eq!(migrate(&session, &config).await.unwrap(), 0, "and is recorded: a second run applies nothing");
    let all: Vec<String> = MIGRATIONS.iter().flat_map(|(_, _, cql)| statements(cql)).collect();
    let tables = tables(&all);
    assert!(tables.len() >= 20, "every table was read: {:?}", tables.iter().map(|t| &t.name).collect::<Vec<_>>());
    for table in &tables {
        assert!(!table.key.is_empty(), "{} has a primary key", table.name);
        let names: Vec<&str> = table.columns.iter().map(|(name, _)| name.as_str()).collect();
        let marks = vec!["?"; names.len()].join(", ");
        let insert = format!("INSERT INTO {} ({}) VALUES ({marks})", table.name, names.join(", "));
        let insert = session.prepare(insert.as_str()).await.unwrap_or_else(|e| panic!("{}: {e}", table.name));
        let row: Vec<CqlValue> =
            table.columns.iter().enumerate().map(|(n, (_, kind))| value(kind, n as i64 + 1)).collect();
        session.execute_unpaged(&insert, &row).await.unwrap_or_else(|e| panic!("insert into {}: {e}", table.name));

        let restriction: Vec<String> = table.key.iter().map(|column| format!("{column} = ?")).collect();
        let select = format!("SELECT {} FROM {} WHERE {}", names.join(", "), table.name, restriction.join(" AND "));
        let select = session.prepare(select.as_str()).await.unwrap();
        let position: HashMap<&str, usize> = names.iter().enumerate().map(|(n, name)| (*name, n)).collect();
        let key: Vec<CqlValue> = table.key.iter().map(|column| row[position[column.as_str()]].clone()).collect();
        let result = session.execute_unpaged(&select, &key).await.unwrap();
        let rows: Vec<Row> = result.into_rows_result().unwrap().rows::<Row>().unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1, "{}: one row back", table.name);
        let back: Vec<CqlValue> = rows[0].columns.iter().map(|value| value.clone().unwrap()).collect();
        assert_eq!(back, row, "{}: every column round-trips", table.name);
    }
}

#[test]
fn the_schema_applies_and_every_column_round_trips_over_the_wire() {
    in_memory::with_server(check);
}

#[test]
fn bad_settings_are_refused_before_any_request() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let bad_keyspace =
            ScyllaConfig { keyspace: "x; DROP KEYSPACE y".into(), ..ScyllaConfig::new(vec!["127.0.0.1:9042".into()]) };
        assert!(matches!(connect(&bad_keyspace).await, Err(StoreError::Invalid(_))));
        assert!(matches!(connect(&ScyllaConfig::new(Vec::new())).await, Err(StoreError::Invalid(_))));
        // Nothing listens here: a clear error, not a hang.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let nobody =
            ScyllaConfig { timeout: std::time::Duration::from_secs(2), ..ScyllaConfig::new(vec![closed.to_string()]) };
        assert!(matches!(connect(&nobody).await, Err(StoreError::Scylla(_))));
    });
}

#[test]
fn the_migration_reader_handles_both_key_styles() {
    let parsed = tables(&statements(
        "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS a (\n    id bigint PRIMARY KEY,\n    name text\n);\n\
         CREATE TABLE IF NOT EXISTS b (\n    x bigint,\n    y int,\n    z text,\n    PRIMARY KEY ((x, y), z)\n) WITH CLUSTERING ORDER BY (z DESC);",
    ));
    assert_eq!(parsed.len(), 2);
    assert_eq!((parsed[0].name.as_str(), parsed[0].key.clone()), ("a", vec!["id".to_owned()]));
    assert_eq!(parsed[1].key, ["x", "y", "z"]);
    assert_eq!(parsed[1].columns.len(), 3);
}

/// The bind markers of `cql` in the parts kassandra's parser skips: a
/// trailing `IF` condition, range restrictions, `LIMIT` and `USING TTL`.
/// It prepares such statements with those markers missing.
fn markers_kassandra_skips(cql: &str) -> usize {
    let (body, condition) = cql.split_once(" IF ").unwrap_or((cql, ""));
    let ranges = ["> ?", "< ?", "<= ?", ">= ?", "LIMIT ?", "USING TTL ?"].iter().map(|part| body.matches(part).count());
    condition.matches('?').count() + ranges.sum::<usize>()
}

/// Every statement the store runs is accepted by the server, with every
/// bind marker typed; checked before any store is opened, so a failure
/// names the statement.
async fn prepare_all(addr: std::net::SocketAddr) {
    let config = ScyllaConfig { keyspace: "store_check".into(), ..config(addr) };
    let session = connect(&config).await.unwrap();
    migrate(&session, &config).await.unwrap();
    let statements = storage::ScyllaStore::statements();
    assert!(statements.len() > 80, "{}", statements.len());
    for (name, cql, idempotent) in statements {
        // A conditional write may have applied when it times out: never retried blindly.
        assert!(!(*idempotent && cql.contains(" IF ")), "{name}: a lightweight transaction is marked idempotent");
        assert!(*idempotent || !cql.starts_with("SELECT"), "{name}: a read is idempotent");
        match session.prepare(*cql).await {
            Err(error) => panic!("{name} refused: {error}\n{cql}"),
            Ok(prepared) => {
                let typed = prepared.get_variable_col_specs().len();
                let markers = cql.matches('?').count();
                assert_eq!(typed, markers - markers_kassandra_skips(cql), "{name}: typed markers\n{cql}");
            }
        }
    }
}

#[test]
fn the_store_prepares_every_statement_over_the_wire() {
    in_memory::with_server(prepare_all);
}
