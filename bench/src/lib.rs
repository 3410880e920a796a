//! Micro benchmarks of the hot pieces and the side-by-side runner
//! (Switchboard vs Socket.IO vs a bare broadcast ceiling).
//!
//! Not built yet: the load-test issue introduces it. The store's own
//! benchmark lives beside the store: `cargo bench -p storage`.
