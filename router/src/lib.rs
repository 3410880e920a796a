//! Routing of encoded events between gateway nodes (in-process, or Redis
//! pub/sub in cluster mode), the per-chat `Sequencer`, the presence
//! registry and the send pipeline (validate, dedupe, sequence, persist,
//! publish) shared by the gateway and the REST sidecar.
//!
//! Not built yet: the realtime gateway issue introduces it. Until then the
//! store hands out per-chat seqs itself (`storage::Store::append_message`).
