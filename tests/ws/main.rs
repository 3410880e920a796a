//! The realtime gateway with real WebSocket clients against the real
//! server (REST sidecar + gateway on one port 0, SQLite, in-process router).

mod calls;
mod chat;
mod connect;
mod harness;
mod load;
mod realtime;
