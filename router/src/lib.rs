//! Moving events to the users who should see them, and the paths that
//! create them.
//!
//! - [`Router`]: publish/subscribe of [`Delivery`]s. [`LocalRouter`] is the
//!   in-process implementation of the single-node default; the cluster's
//!   Redis implementation plugs in behind the same trait.
//! - [`SendPipeline`]: validate, dedupe, sequence, persist, publish. The
//!   one way a message enters the system, for REST and WebSocket alike.
//! - [`views`]: the seed 002 JSON shapes built from stored rows.
//! - [`run_scheduler`]: releases scheduled messages when they are due.

mod pipeline;
mod router;
mod scheduler;
pub mod views;

pub use pipeline::{SendError, SendLimits, SendPipeline, Sent, new_message};
pub use router::{Delivery, LocalRouter, ROUTER_CAPACITY, Router, RouterError};
pub use scheduler::run_scheduler;
