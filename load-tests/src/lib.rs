//! The load generator: many connections, send rates, fan-out, latency
//! histograms and RSS sampling against any Switchboard.
//!
//! Not built yet: the gateway and load-test issues introduce it.
