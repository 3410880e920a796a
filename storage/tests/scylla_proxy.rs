//! [`ScyllaStore`]'s error and retry paths, with `scylla-proxy` between the
//! driver and the in-memory CQL server of the `kassandra` crate: the proxy
//! forwards every frame, except those a rule picks, which it answers with a
//! forged error as a struggling cluster would.
//!
//! - A write that times out comes back as a clear `StoreError`, promptly,
//!   and nothing is reported as stored.
//! - A read that times out with enough replicas answering is retried by the
//!   driver (every read is prepared idempotent), so the caller never sees it.
//!
//! Kassandra ignores lightweight-transaction conditions, so the operations
//! used here are plain reads and writes; the rest of the store is checked
//! against a real cluster by the conformance suite (`SCYLLA_URI`).

mod in_memory;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use storage::prelude::*;

use scylla::client::session_builder::SessionBuilder;
use scylla::errors::DbError;
use scylla::statement::Consistency;
use scylla_proxy::{Condition, Node, Proxy, RequestOpcode, RequestReaction, RequestRule, ShardAwareness};
use storage::{ScyllaConfig, ScyllaStore, StoreError};

const PROBE: &str = "write-timeout-probe";

/// Profile fields whose text carries `value`.
fn fields(value: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("note".into(), serde_json::Value::String(value.into()));
    fields
}

/// Every execution carrying `PROBE` among its values times out on write;
/// the first read of `user_id`'s row times out once with every replica
/// having answered (the case the driver retries).
fn rules(user_id: i64) -> Vec<RequestRule> {
    let execute = || Condition::RequestOpcode(RequestOpcode::Execute);
    let write_timeout = DbError::WriteTimeout {
        consistency: Consistency::LocalQuorum,
        received: 1,
        required: 2,
        write_type: scylla::errors::WriteType::Simple,
    };
    let read_timeout =
        DbError::ReadTimeout { consistency: Consistency::LocalQuorum, received: 2, required: 2, data_present: false };
    vec![
        RequestRule(
            execute().and(Condition::BodyContainsCaseSensitive(PROBE.as_bytes().into())),
            RequestReaction::forge_with_error(write_timeout),
        ),
        RequestRule(
            execute()
                .and(Condition::BodyContainsCaseSensitive(user_id.to_be_bytes().into()))
                .and(Condition::TrueForLimitedTimes(1)),
            RequestReaction::forge_with_error(read_timeout),
        ),
    ]
}

/// The user's profile fields as the server holds them (read directly).
async fn stored_fields(store: &ScyllaStore, user_id: i64) -> Vec<String> {
    let rows = store.session().query_unpaged("SELECT fields FROM profile_fields WHERE user_id = ?", (user_id,)).await;
    let rows = rows.unwrap().into_rows_result().unwrap();
    rows.rows::<(String,)>().unwrap().map(|row| row.unwrap().0).collect()
}

async fn check(real: SocketAddr) {
    let user_id = 4_242_424_242_i64;
    let proxy_addr = SocketAddr::new(scylla_proxy::get_exclusive_local_address(), 9042);
    let node = Node::builder()
        .real_address(real)
        .proxy_address(proxy_addr)
        .shard_awareness(ShardAwareness::Unaware)
        .request_rules(rules(user_id))
        .build();
    let proxy = Proxy::builder().with_node(node).build();
    let translation: HashMap<SocketAddr, SocketAddr> = proxy.translation_map();
    let running = proxy.run().await.expect("the proxy starts");

    let config = ScyllaConfig {
        keyspace: "proxied".into(),
        replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
        cluster_metadata: false,
        timeout: Duration::from_secs(5),
        ..ScyllaConfig::new(vec![proxy_addr.to_string()])
    };
    let session = SessionBuilder::new()
        .known_node_addr(proxy_addr)
        .address_translator(Arc::new(translation))
        .fetch_schema_metadata(false)
        .auto_await_schema_agreement(false)
        .build()
        .await
        .expect("the driver connects through the proxy");
    let store = ScyllaStore::with_session(session, &config).await.expect("the store opens through the proxy");

    // A user row, written directly (creating one goes through a
    // lightweight transaction, which kassandra does not honour).
    let insert = "INSERT INTO users (id, phone, nickname, last_seen, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)";
    store.session().query_unpaged(insert, (user_id, "13800000042", "probe", 0_i64, 1_i64, 1_i64)).await.unwrap();

    // The first read of the user times out at the coordinator; the driver
    // retries it and the caller gets the row.
    let user = store.user(user_id).await.expect("a retried read succeeds");
    assert_eq!(user.map(|u| u.nickname).as_deref(), Some("probe"));

    // A write that times out: a clear error saying it may be sent again,
    // and nothing listed as stored.
    let timed_out = store.set_profile_fields(user_id, fields(PROBE), 1).await;
    match timed_out {
        Err(StoreError::Unanswered(message)) => {
            assert!(message.contains("write request in time"), "says what happened: {message}");
            assert!(message.starts_with("upsert_profile_fields: "), "and in which statement: {message}");
        }
        other => panic!("a timed-out write must fail, not {other:?}"),
    }
    // The proxy forged the answer and never forwarded the write.
    assert!(stored_fields(&store, user_id).await.is_empty());

    // The same store keeps working for everything else.
    store.set_profile_fields(user_id, fields("after the timeout"), 2).await.unwrap();
    assert_eq!(stored_fields(&store, user_id).await, vec![r#"{"note":"after the timeout"}"#.to_owned()]);

    drop(store);
    // The driver hanging up when the store goes is the only thing the proxy may report.
    match running.finish().await {
        Ok(()) | Err(scylla_proxy::ProxyError::Worker(scylla_proxy::WorkerError::DriverDisconnected(_))) => {}
        Err(error) => panic!("the proxy failed: {error}"),
    }
}

#[test]
fn a_write_timeout_is_a_clear_error_and_a_read_timeout_is_retried() {
    in_memory::with_server(check);
}
