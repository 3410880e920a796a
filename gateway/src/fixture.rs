//! A gateway over a real SQLite store and in-process router, without
//! sockets, for unit tests that drive its clock.

use std::sync::Arc;

use protocol::ErrorCode;
use protocol::time::now_millis;
use router::{LocalRouter, Router};
use service::{ServiceConfig, Services};
use storage::model::{NewChat, NewUser, UserId};
use storage::{SqliteConfig, SqliteStore, Store};

use crate::{Gateway, GatewayConfig, TokenVerifier};

/// These tests open no connections, so no token is ever valid.
struct NoTokens;

impl TokenVerifier for NoTokens {
    fn verify(&self, _token: &str) -> Result<protocol::Claims, ErrorCode> {
        Err(ErrorCode::TokenInvalid)
    }

    fn still_valid(&self, _claims: &protocol::Claims, _now_secs: i64) -> bool {
        false
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

pub(crate) struct Fixture {
    pub(crate) gateway: Gateway,
    pub(crate) events: router::Subscription,
    pub(crate) alice: UserId,
    pub(crate) bob: UserId,
    pub(crate) chat: i64,
    _dir: tempfile::TempDir,
}

pub(crate) async fn fixture(config: GatewayConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap());
    let user = |phone: &str| NewUser { phone: phone.into(), created_at: now_millis(), ..NewUser::default() };
    let alice = store.create_user(user("1")).await.unwrap().id;
    let bob = store.create_user(user("2")).await.unwrap().id;
    let chat = store.create_chat(NewChat::group(alice, "g", vec![bob], now_millis())).await.unwrap().0.id;
    let router: Arc<dyn Router> = Arc::new(LocalRouter::new());
    let events = router.subscribe();
    let services = Services::new(store, router, Arc::new(router::LocalPresence::new()), ServiceConfig::default());
    let gateway = Gateway::new(config, services, Arc::new(NoTokens), Arc::new(router::LocalCalls::new()));
    Fixture { gateway, events, alice, bob, chat, _dir: dir }
}
