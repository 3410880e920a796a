//! The wire contract every Switchboard surface speaks: the response
//! envelope, seed 002's business error codes and the time format.
//!
//! Gateway, sidecar and load generator all depend on this crate so that
//! none of them grows its own copy of the contract.

pub mod commands;
mod envelope;
mod error_code;
mod event;
pub mod time;
pub mod views;

pub use envelope::{ApiError, ApiResponse};
pub use error_code::ErrorCode;
pub use event::{Event, kinds};
