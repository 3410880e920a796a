//! The realtime gateway with real WebSocket clients against the real
//! server (REST sidecar + gateway on one port 0, SQLite, in-process router),
//! and against a cluster of real processes over a private Redis (`cluster`).

mod calls;
mod chat;
mod cluster;
mod compare;
mod connect;
mod couple;
mod cql_cluster;
mod crash;
mod dating;
mod every_seed;
mod fuzz_http;
mod harness;
mod hostile;
mod load;
mod parity;
mod realtime;
mod server_api;
mod simple;
mod slow_clients;
mod smellpin;
mod webhooks;
