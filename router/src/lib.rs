//! Moving events to the users who should see them, and the paths that
//! create them.
//!
//! - [`Router`]: publish/subscribe of [`Delivery`]s. [`LocalRouter`] is the
//!   in-process implementation of the single-node default; the cluster's
//!   Redis implementation ([`redis::RedisRouter`]) plugs in behind the same trait.
//! - [`Sequencer`]: per-chat seqs; the store's own on one node, Redis's
//!   ([`redis::RedisSequencer`]) in a cluster.
//! - [`PresenceRegistry`]: who is online anywhere; [`LocalPresence`] or
//!   [`redis::RedisPresence`].
//! - [`SendPipeline`]: validate, dedupe, sequence, persist, publish. The
//!   one way a message enters the system, for REST and WebSocket alike.
//! - [`views`]: the seed 002 JSON shapes built from stored rows.
//! - [`run_scheduler`]: releases scheduled messages when they are due.

mod pipeline;
mod presence;
pub mod redis;
mod router;
mod scheduler;
mod sequencer;
pub mod views;

pub use pipeline::{SendError, SendLimits, SendPipeline, Sent, new_message};
pub use presence::{LocalPresence, PRESENCE_CHANGES_CAPACITY, PresenceChange, PresenceError, PresenceRegistry};
pub use router::{Delivery, LocalRouter, ROUTER_CAPACITY, Router, RouterError};
pub use scheduler::run_scheduler;
pub use sequencer::{Sequencer, SequencerError, StoreSequencer};
