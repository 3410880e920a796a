//! Switchboard's side-by-side runner and its reference server.
//!
//! - [`compare`]: `bench compare [--quick] --out DIR` runs the fan-out
//!   and chat scenarios against the engine, Centrifugo, a Socket.IO 4 peer
//!   and the ceiling; with `--repeat N`, N rounds and each figure's median
//!   ([`rounds`]).
//! - [`ceiling`]: the bare tokio-tungstenite broadcast server.
//! - [`append`]: `bench append --store sqlite|scylla` times one message
//!   append in a store, with appenders running at once.
//!
//! The criterion micro-benchmarks of the hot pieces are in `benches/`
//! (`cargo bench -p bench`); the store's own is beside the store
//! (`cargo bench -p storage`).

pub mod append;
pub mod ceiling;
pub mod compare;
pub mod rounds;
