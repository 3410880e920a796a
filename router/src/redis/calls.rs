//! [`CallRegistry`] in Redis: a hash per live call and a claim per party,
//! changed only by atomic scripts, so two nodes can never both start a
//! call with one user or both answer one call.
//!
//! Keys: `{p}:call:{id}` (the call's fields) and `{p}:incall:{user}` (the
//! id of the call the user is in). Both expire after a day as a safety net
//! for calls whose nodes all died before anyone ended them.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use protocol::time::Millis;
use redis::Script;
use storage::model::UserId;

use super::{RedisConnection, Retry};
use crate::calls::{Answered, Begin, CallError, CallRecord, CallRegistry, DeviceRef};

/// How long a call's keys outlive its last change at most.
const CALL_TTL_SECS: u64 = 24 * 3_600;

struct CallScripts {
    /// ARGV: p, id, kind, caller, caller node, caller connection, callee,
    /// ttl (s). Answers 0 started, 1 id taken, 2 caller busy, 3 callee busy.
    begin: Script,
    /// ARGV: p, id, node, connection, at. Answers 1 answered now, 2
    /// answered already, 0 gone.
    answer: Script,
    /// ARGV: p, id. Deletes the call and its parties' claims (if still
    /// theirs); answers its fields, or nothing when it was gone.
    finish: Script,
    /// ARGV: p, id. The call's fields.
    get: Script,
    /// ARGV: p, user. The id of the user's call, or nil.
    call_of: Script,
}

static SCRIPTS: LazyLock<CallScripts> = LazyLock::new(|| CallScripts {
    begin: Script::new(
        r"
local p, id = ARGV[1], ARGV[2]
local call = p .. ':call:' .. id
if redis.call('EXISTS', call) == 1 then return 1 end
local caller, callee = p .. ':incall:' .. ARGV[4], p .. ':incall:' .. ARGV[7]
if redis.call('EXISTS', caller) == 1 then return 2 end
if redis.call('EXISTS', callee) == 1 then return 3 end
local ttl = tonumber(ARGV[8])
redis.call('HSET', call, 'kind', ARGV[3], 'caller', ARGV[4], 'caller_node', ARGV[5], 'caller_conn', ARGV[6],
  'callee', ARGV[7])
redis.call('EXPIRE', call, ttl)
redis.call('SET', caller, id, 'EX', ttl)
redis.call('SET', callee, id, 'EX', ttl)
return 0
",
    ),
    answer: Script::new(
        r"
local call = ARGV[1] .. ':call:' .. ARGV[2]
if redis.call('EXISTS', call) == 0 then return 0 end
if redis.call('HEXISTS', call, 'callee_node') == 1 then return 2 end
redis.call('HSET', call, 'callee_node', ARGV[3], 'callee_conn', ARGV[4], 'answered_at', ARGV[5])
return 1
",
    ),
    finish: Script::new(
        r"
local p, id = ARGV[1], ARGV[2]
local call = p .. ':call:' .. id
local fields = redis.call('HGETALL', call)
if #fields == 0 then return fields end
redis.call('DEL', call)
for i = 1, #fields, 2 do
  if fields[i] == 'caller' or fields[i] == 'callee' then
    local claim = p .. ':incall:' .. fields[i + 1]
    if redis.call('GET', claim) == id then redis.call('DEL', claim) end
  end
end
return fields
",
    ),
    get: Script::new("return redis.call('HGETALL', ARGV[1] .. ':call:' .. ARGV[2])"),
    call_of: Script::new("return redis.call('GET', ARGV[1] .. ':incall:' .. ARGV[2])"),
});

/// The cluster's live calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisCalls {
    redis: RedisConnection,
}

impl RedisCalls {
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn call<'a>(&self, script: &'a Script, id: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.redis.config().prefix).arg(id);
        invocation
    }
}

fn unavailable(error: String) -> CallError {
    CallError::Unavailable(error)
}

/// A call from its stored fields; `None` for an empty (gone) or damaged hash.
fn record(id: &str, fields: &HashMap<String, String>) -> Option<CallRecord> {
    let number = |name: &str| fields.get(name).and_then(|value| value.parse::<i64>().ok());
    let device = |node: &str, connection: &str| {
        Some(DeviceRef { node: fields.get(node)?.parse().ok()?, connection: fields.get(connection)?.parse().ok()? })
    };
    Some(CallRecord {
        id: id.to_owned(),
        kind: fields.get("kind")?.clone(),
        caller: number("caller")?,
        caller_device: device("caller_node", "caller_conn")?,
        callee: number("callee")?,
        callee_device: device("callee_node", "callee_conn"),
        answered_at: number("answered_at"),
    })
}

#[async_trait]
impl CallRegistry for RedisCalls {
    async fn begin(&self, call: &CallRecord) -> Result<Begin, CallError> {
        let mut invocation = self.call(&SCRIPTS.begin, &call.id);
        invocation
            .arg(&call.kind)
            .arg(call.caller)
            .arg(call.caller_device.node)
            .arg(call.caller_device.connection)
            .arg(call.callee)
            .arg(CALL_TTL_SECS);
        // Not applied twice: a second run would find its own claims and say busy.
        match self.redis.run::<u8>(&invocation, Retry::IfUnsent).await.map_err(unavailable)? {
            0 => Ok(Begin::Started),
            1 => Ok(Begin::IdTaken),
            2 => Ok(Begin::CallerBusy),
            _ => Ok(Begin::CalleeBusy),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<CallRecord>, CallError> {
        let invocation = self.call(&SCRIPTS.get, id);
        let fields: HashMap<String, String> =
            self.redis.run(&invocation, Retry::IfDropped).await.map_err(unavailable)?;
        Ok(record(id, &fields))
    }

    async fn answer(&self, id: &str, device: DeviceRef, at: Millis) -> Result<Answered, CallError> {
        let mut invocation = self.call(&SCRIPTS.answer, id);
        invocation.arg(device.node).arg(device.connection).arg(at);
        match self.redis.run::<u8>(&invocation, Retry::IfUnsent).await.map_err(unavailable)? {
            1 => Ok(self.get(id).await?.map_or(Answered::Gone, Answered::Now)),
            2 => Ok(Answered::Already),
            _ => Ok(Answered::Gone),
        }
    }

    async fn finish(&self, id: &str) -> Result<Option<CallRecord>, CallError> {
        let invocation = self.call(&SCRIPTS.finish, id);
        // Not retried: a second run would find nothing, and the call would
        // go unannounced.
        let fields: HashMap<String, String> =
            self.redis.run(&invocation, Retry::IfUnsent).await.map_err(unavailable)?;
        Ok(record(id, &fields))
    }

    async fn call_of(&self, user: UserId) -> Result<Option<String>, CallError> {
        let mut invocation = SCRIPTS.call_of.prepare_invoke();
        invocation.arg(&self.redis.config().prefix).arg(user);
        self.redis.run(&invocation, Retry::IfDropped).await.map_err(unavailable)
    }
}
