//! The wire contract every Switchboard surface speaks: the response
//! envelope, seed 002's business error codes and the time format, every
//! client command ([`ClientCommand`]) and server event ([`ServerEvent`])
//! of the realtime protocol with their codecs (JSON and MessagePack), and
//! [`Frame`], an event encoded once per wire format and shared.
//!
//! Gateway, sidecar and load generator all depend on this crate so that
//! none of them grows its own copy of the contract.

pub mod claims;
pub mod client;
pub mod commands;
pub mod compact;
pub mod dialect;
mod envelope;
mod error_code;
mod event;
pub mod frame;
pub mod server;
pub mod time;
pub mod views;

pub use claims::Claims;
pub use client::{ClientCommand, ClientFrame, FrameError};
pub use envelope::{ApiError, ApiResponse};
pub use error_code::ErrorCode;
pub use event::{Event, kinds};
pub use frame::{Encoding, Frame};
pub use server::ServerEvent;
