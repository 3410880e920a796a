//! Moving events between the code that makes them and the nodes that hold
//! connections, and the cluster-wide state that goes with it.
//!
//! - [`Router`]: publish/subscribe of [`Delivery`]s. [`LocalRouter`] is the
//!   in-process implementation of the single-node default; the cluster's
//!   Redis implementation ([`redis::RedisRouter`]) plugs in behind the same trait.
//! - [`redis::RedisSequencer`]: per-chat seq counters in Redis, the
//!   [`storage::SeqCounter`] a ScyllaDB store written by several nodes takes
//!   its seqs from.
//! - [`PresenceRegistry`]: who is online anywhere; [`LocalPresence`] or
//!   [`redis::RedisPresence`].
//! - [`CallRegistry`]: live calls and who is busy; [`LocalCalls`] or
//!   [`redis::RedisCalls`].
//! - [`Lease`]: work one process of a deployment does at a time;
//!   [`SoleLease`] or [`redis::RedisLease`].
//!
//! The use cases that publish (sending, reading, calls) live in the
//! `service` crate.

mod bus;
pub mod calls;
mod lease;
mod meters;
mod presence;
pub mod redis;
mod router;

pub use bus::{BACKPRESSURE_AT, MAX_PUBLISH_WAIT, ROUTER_CAPACITY, Subscription};
pub use calls::{CallRegistry, DeviceRef, LocalCalls};
pub use lease::{Lease, SoleLease};
pub use meters::Family;
pub use presence::{
    Here, LocalPresence, NodeReport, PRESENCE_CHANGES_CAPACITY, PresenceChange, PresenceError, PresenceRegistry,
};
pub use router::{Delivery, Devices, LocalRouter, PublishNow, Router, RouterError};
