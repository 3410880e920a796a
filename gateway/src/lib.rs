//! The sharded WebSocket gateway: accept, auth on upgrade, one task per
//! connection, heartbeats, typing, presence, call signalling, resume/sync.
//!
//! Not built yet: the realtime gateway issue introduces it.
