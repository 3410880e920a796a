//! Work that one process of a deployment does at a time (releasing
//! scheduled messages): whoever holds the lease does it. A single process
//! holds it always ([`SoleLease`]); a cluster's processes take turns
//! through Redis ([`crate::redis::RedisLease`]).

use async_trait::async_trait;

/// A cluster-wide lease on one piece of work.
#[async_trait]
pub trait Lease: Send + Sync + 'static {
    /// Takes the lease, or extends it while this process holds it; answers
    /// whether this process holds it now. Called more often than the
    /// lease lasts, so a holder keeps it while it lives.
    async fn hold(&self) -> bool;
    /// Gives the lease up if this process holds it, so another takes over
    /// at once rather than when it runs out.
    async fn release(&self);
}

/// The lease of a process with no peers: always its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoleLease;

#[async_trait]
impl Lease for SoleLease {
    async fn hold(&self) -> bool {
        true
    }

    async fn release(&self) {}
}
