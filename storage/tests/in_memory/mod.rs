//! The in-memory CQL v4 server of the `kassandra` crate, for the tests that
//! talk to ScyllaDB's wire protocol where no ScyllaDB can run.

use std::future::Future;
use std::net::SocketAddr;

use kassandra_tester::KassandraTester;

/// Runs `check` with a fresh server listening on `127.0.0.1`. The server
/// serves connections on local tasks, so this owns a current-thread
/// runtime and a `LocalSet`; call it from a plain `#[test]`.
pub(crate) fn with_server<F, Fut>(check: F)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let tester = KassandraTester::new(kassandra::KassandraSession::new());
        tester
            .in_scope(|addr| {
                let checked = check(addr);
                async move {
                    checked.await;
                    Ok::<(), std::convert::Infallible>(())
                }
            })
            .await
            .unwrap();
    });
}
