//! Where live calls are kept: in this process on one node, in Redis in a
//! cluster, so that a call's parties may be connected to any nodes and
//! every node sees the same state (who is busy, which device answered).
//!
//! Signalling itself travels as deliveries through the [`crate::Router`],
//! aimed at one device (`DeviceRef`) when it is for one.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use protocol::time::Millis;
use serde::{Deserialize, Serialize};
use storage::model::UserId;

/// One device: a connection of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    pub node: u16,
    pub connection: u64,
}

/// A live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: String,
    /// `audio` or `video`.
    pub kind: String,
    pub caller: UserId,
    pub caller_device: DeviceRef,
    pub callee: UserId,
    /// The device that answered; `None` while ringing.
    pub callee_device: Option<DeviceRef>,
    /// When it was answered (wall clock, so any node can tell the duration).
    pub answered_at: Option<Millis>,
}

/// What starting a call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Both parties are now in this call.
    Started,
    /// A live call has this id already.
    IdTaken,
    /// The caller is in a call already.
    CallerBusy,
    /// The callee is in a call already (nothing was claimed).
    CalleeBusy,
}

/// What answering a call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// This device answered: the call as it is now.
    Now(CallRecord),
    /// Another device answered first.
    Already,
    /// The call ended meanwhile.
    Gone,
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("call registry unavailable: {0}")]
    Unavailable(String),
}

/// Live calls, for every node of a deployment.
#[async_trait]
pub trait CallRegistry: Send + Sync + 'static {
    /// Starts `call` (ringing) unless a party is busy or its id is taken.
    async fn begin(&self, call: &CallRecord) -> Result<Begin, CallError>;
    /// The live call `id`.
    async fn get(&self, id: &str) -> Result<Option<CallRecord>, CallError>;
    /// `device` answers call `id` at `at`, unless another device did.
    async fn answer(&self, id: &str, device: DeviceRef, at: Millis) -> Result<Answered, CallError>;
    /// Ends call `id`: answers its last state to exactly one caller, so it
    /// is announced and recorded once.
    async fn finish(&self, id: &str) -> Result<Option<CallRecord>, CallError>;
    /// The call `user` is in (or ringing in).
    async fn call_of(&self, user: UserId) -> Result<Option<String>, CallError>;
}

/// The calls of a single process.
#[derive(Debug, Default)]
pub struct LocalCalls {
    /// Both maps change together under one lock: a call and its parties'
    /// claims are one state.
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    by_id: HashMap<String, CallRecord>,
    by_user: HashMap<UserId, String>,
}

impl LocalCalls {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // A panic while holding this lock cannot leave the maps half-changed
        // in a way later calls cannot cope with: use them as they are.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CallRegistry for LocalCalls {
    async fn begin(&self, call: &CallRecord) -> Result<Begin, CallError> {
        let mut state = self.state();
        if state.by_id.contains_key(&call.id) {
            return Ok(Begin::IdTaken);
        }
        if state.by_user.contains_key(&call.caller) {
            return Ok(Begin::CallerBusy);
        }
        if state.by_user.contains_key(&call.callee) {
            return Ok(Begin::CalleeBusy);
        }
        state.by_user.insert(call.caller, call.id.clone());
        state.by_user.insert(call.callee, call.id.clone());
        state.by_id.insert(call.id.clone(), call.clone());
        Ok(Begin::Started)
    }

    async fn get(&self, id: &str) -> Result<Option<CallRecord>, CallError> {
        Ok(self.state().by_id.get(id).cloned())
    }

    async fn answer(&self, id: &str, device: DeviceRef, at: Millis) -> Result<Answered, CallError> {
        let mut state = self.state();
        let Some(call) = state.by_id.get_mut(id) else { return Ok(Answered::Gone) };
        if call.callee_device.is_some() {
            return Ok(Answered::Already);
        }
        call.callee_device = Some(device);
        call.answered_at = Some(at);
        Ok(Answered::Now(call.clone()))
    }

    async fn finish(&self, id: &str) -> Result<Option<CallRecord>, CallError> {
        let mut state = self.state();
        let Some(call) = state.by_id.remove(id) else { return Ok(None) };
        for user in [call.caller, call.callee] {
            if state.by_user.get(&user).is_some_and(|current| current == id) {
                state.by_user.remove(&user);
            }
        }
        Ok(Some(call))
    }

    async fn call_of(&self, user: UserId) -> Result<Option<String>, CallError> {
        Ok(self.state().by_user.get(&user).cloned())
    }
}
