//! ScyllaDB: connecting, keeping the schema current, and [`ScyllaStore`].
//! The data model and its choices are in `storage/docs/scylla.md`; the
//! schema lives in `migrations/`, applied in order and recorded in
//! `schema_migrations`.

mod rows;
mod statements;
mod store;

pub use store::ScyllaStore;

use std::time::Duration;

use protocol::time::now_millis;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::StoreError;

/// The schema, oldest first: `(version, name, CQL)`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("migrations/001_initial.cql")),
    (2, "media", include_str!("migrations/002_media.cql")),
    (3, "email", include_str!("migrations/003_email.cql")),
    (4, "devices", include_str!("migrations/004_devices.cql")),
    (5, "receipts", include_str!("migrations/005_receipts.cql")),
    (6, "server_api", include_str!("migrations/006_server_api.cql")),
    (7, "pairs", include_str!("migrations/007_pairs.cql")),
    (8, "group_invites", include_str!("migrations/008_group_invites.cql")),
    (9, "member_locks", include_str!("migrations/009_member_locks.cql")),
];

const SCHEMA_MIGRATIONS: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, applied_at bigint)";

/// Where and how to reach the cluster.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (the driver discovers the rest).
    pub nodes: Vec<String>,
    /// Created if missing, with `replication`.
    pub keyspace: String,
    /// The keyspace's replication map, in CQL.
    pub replication: String,
    /// Whether the driver reads schema metadata and waits for schema
    /// agreement after changes. A real cluster wants both; a single
    /// in-memory test server has no peers or schema tables to read.
    pub cluster_metadata: bool,
    /// How long connecting and each request may take.
    pub timeout: Duration,
    /// This process's node id for message ids (0..=15): processes sharing
    /// one keyspace must use different ones.
    pub node_id: u16,
}

impl ScyllaConfig {
    /// Defaults for `nodes`: keyspace `switchboard`, replicated three
    /// times in every datacenter.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: "switchboard".into(),
            replication: "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}".into(),
            cluster_metadata: true,
            timeout: Duration::from_secs(5),
            node_id: 0,
        }
    }
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |error| StoreError::Scylla(format!("{what}: {error}"))
}

/// A keyspace name CQL takes unquoted: a letter, then letters, digits or
/// `_`, 48 at most. It is spliced into statements, so nothing else passes.
fn check_keyspace(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let valid = name.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "keyspace {name:?}: use a lowercase letter, then lowercase letters, digits or '_' (48 at most)"
        )))
    }
}

/// The statements of a migration: comment lines dropped, split on `;`.
pub fn statements(cql: &str) -> Vec<String> {
    let code: Vec<&str> = cql.lines().filter(|line| !line.trim_start().starts_with("--")).collect();
    code.join("\n").split(';').map(str::trim).filter(|statement| !statement.is_empty()).map(str::to_owned).collect()
}

/// Connects to the cluster (not yet to a keyspace).
pub async fn connect(config: &ScyllaConfig) -> Result<Session, StoreError> {
    check_keyspace(&config.keyspace)?;
    if config.nodes.is_empty() {
        return Err(StoreError::Invalid("no ScyllaDB node to connect to".into()));
    }
    // Each request fails with a clear error after `timeout` instead of
    // waiting on a node that stopped answering.
    let profile = ExecutionProfile::builder().request_timeout(Some(config.timeout)).build();
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.timeout)
        .default_execution_profile_handle(profile.into_handle())
        .fetch_schema_metadata(config.cluster_metadata)
        .auto_await_schema_agreement(config.cluster_metadata)
        .build()
        .await
        .map_err(|error| failed("connecting")(&error))
}

/// Creates the keyspace if needed, switches `session` to it, and applies
/// every migration not recorded yet; answers how many it applied. Each
/// statement is idempotent, so a migration interrupted half-way is simply
/// applied again.
pub async fn migrate(session: &Session, config: &ScyllaConfig) -> Result<usize, StoreError> {
    check_keyspace(&config.keyspace)?;
    // ScyllaDB serves lightweight transactions only in keyspaces without
    // tablets, and since 2025.1 makes new keyspaces with tablets unless told
    // otherwise; Apache Cassandra has no such option and refuses it.
    let options = if has_tablets(session).await { " AND tablets = {'enabled': false}" } else { "" };
    let create =
        format!("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}{options}", config.keyspace, config.replication);
    session.query_unpaged(create, &[]).await.map_err(|error| failed("creating the keyspace")(&error))?;
    session.use_keyspace(&config.keyspace, false).await.map_err(|error| failed("using the keyspace")(&error))?;
    // The record of what ran comes first (001 declares it too; both are idempotent).
    session
        .query_unpaged(SCHEMA_MIGRATIONS, &[])
        .await
        .map_err(|error| failed("creating schema_migrations")(&error))?;
    let mut applied = 0;
    for &(version, name, cql) in MIGRATIONS {
        if recorded(session, version).await? {
            continue;
        }
        for statement in statements(cql) {
            // CQL has no `ADD IF NOT EXISTS` everywhere: a column that is
            // there already (a fresh keyspace made by 001 has every column;
            // a migration may have stopped half-way) is not added again.
            if let Some((table, column)) = added_column(&statement)
                && has_column(session, &config.keyspace, table, column).await?
            {
                continue;
            }
            session
                .query_unpaged(statement.as_str(), &[])
                .await
                .map_err(|error| failed(&format!("migration {version} ({name})"))(&error))?;
        }
        let record = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)";
        session
            .query_unpaged(record, (version, name, now_millis()))
            .await
            .map_err(|error| failed("recording a migration")(&error))?;
        tracing::info!(version, name, keyspace = config.keyspace, "scylla migration applied");
        applied += 1;
    }
    Ok(applied)
}

/// The table and column of an `ALTER TABLE <table> ADD <column> <type>`.
fn added_column(statement: &str) -> Option<(&str, &str)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [alter, kind, table, add, column, ..]
            if alter.eq_ignore_ascii_case("ALTER")
                && kind.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD") =>
        {
            Some((table, column))
        }
        _ => None,
    }
}

/// Whether `table` of `keyspace` has `column`, by the schema tables.
async fn has_column(session: &Session, keyspace: &str, table: &str, column: &str) -> Result<bool, StoreError> {
    let probe = "SELECT column_name FROM system_schema.columns \
                 WHERE keyspace_name = ? AND table_name = ? AND column_name = ?";
    let result = session
        .query_unpaged(probe, (keyspace, table, column))
        .await
        .map_err(|error| failed("reading system_schema.columns")(&error))?;
    let rows = result.into_rows_result().map_err(|error| failed("reading system_schema.columns")(&error))?;
    Ok(rows.rows_num() > 0)
}

/// Whether the cluster knows keyspace tablets: a ScyllaDB recent enough to
/// keep their settings in `system_schema.scylla_keyspaces`, which neither
/// Apache Cassandra nor older ScyllaDB has.
async fn has_tablets(session: &Session) -> bool {
    let probe = "SELECT keyspace_name, initial_tablets FROM system_schema.scylla_keyspaces LIMIT 1";
    let tablets = session.query_unpaged(probe, &[]).await.is_ok();
    tracing::debug!(tablets, "probed the cluster for keyspace tablets");
    tablets
}

async fn recorded(session: &Session, version: i32) -> Result<bool, StoreError> {
    let rows = session
        .query_unpaged("SELECT version FROM schema_migrations WHERE version = ?", (version,))
        .await
        .map_err(|error| failed("reading schema_migrations")(&error))?
        .into_rows_result()
        .map_err(|error| failed("reading schema_migrations")(&error))?;
    Ok(rows.rows_num() > 0)
}

#[cfg(test)]
mod tests {
    use super::{check_keyspace, statements};

    #[test]
    fn keyspace_names_are_checked_before_they_reach_cql() {
        for good in ["switchboard", "sb_2", "a"] {
            assert!(check_keyspace(good).is_ok(), "{good}");
        }
        for bad in ["", "2sb", "Switchboard", "sb; DROP KEYSPACE x", "sb-1", &"a".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migration_files_split_into_statements() {
        let cql = "-- a comment; with a semicolon\nCREATE TABLE a (id bigint PRIMARY KEY);\n\n  -- more\nCREATE TABLE b (id int PRIMARY KEY);\n";
        assert_eq!(statements(cql), ["CREATE TABLE a (id bigint PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY)"]);
        assert!(statements(super::MIGRATIONS[0].2).len() > 20);
    }
}
