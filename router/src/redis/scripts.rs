//! The Lua scripts of the cluster's Redis work. Each is atomic and one
//! round trip; `redis::Script` sends `EVALSHA` and falls back to `EVAL`
//! when Redis has forgotten the script (after a restart).
//!
//! Arguments common to several scripts: `p` is the key prefix, `node` a
//! node id. Times come from Redis's own clock (`TIME`), so nodes with
//! skewed clocks still agree on whose lease ran out.

use std::sync::LazyLock;

use redis::Script;

/// `now_ms()`: Redis's clock in milliseconds. `drop_node(p, node)`: removes
/// every registration of `node` and its lease; answers the users who have
/// no node left.
macro_rules! lua_helpers {
    () => {
        r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop_node(p, node)
  local set = p .. ':node:' .. node .. ':users'
  local gone = {}
  for _, user in ipairs(redis.call('SMEMBERS', set)) do
    local key = p .. ':user:' .. user
    redis.call('HDEL', key, node)
    if redis.call('HLEN', key) == 0 then table.insert(gone, user) end
  end
  redis.call('DEL', set)
  redis.call('HDEL', p .. ':nodes', node)
  return gone
end
"
    };
}

pub(super) struct Scripts {
    /// ARGV: p, this node, payload, user ids... Publishes `payload` once to
    /// every other node holding any of the users; answers how many nodes.
    pub(super) route: Script,
    /// KEYS: the seq key. ARGV: count, idle ttl (s). Answers the last of
    /// `count` new seqs, or nil when the counter is missing (never seeded,
    /// expired, or lost with a Redis restart).
    pub(super) seq_next: Script,
    /// KEYS: the seq key. ARGV: floor, count, idle ttl (s). Raises the
    /// counter to at least `floor`, then as `seq_next`. `count` 0 only raises.
    pub(super) seq_seed: Script,
    /// ARGV: p, node, ttl (ms). Extends the node's lease; answers 1 when the
    /// node was registered before (0: Redis lost it, or it was reaped).
    pub(super) lease: Script,
    /// ARGV: p, node. The node's lease expiry, or nil when it has none.
    pub(super) lease_of: Script,
    /// ARGV: p, node. Answers 1 while the node's lease has not run out.
    pub(super) node_alive: Script,
    /// ARGV: p, node, user. The user's first device on this node: answers 1
    /// when no node had the user before.
    pub(super) user_online: Script,
    /// ARGV: p, node, user. The user's last device left this node: answers
    /// 1 when no node has the user now.
    pub(super) user_offline: Script,
    /// ARGV: p, user ids... Answers 1 or 0 per user: has a device somewhere.
    pub(super) users_online: Script,
    /// ARGV: p, node, ttl (ms), user ids... Makes the node's registrations
    /// exactly these users and renews its lease; answers {users who came
    /// online, users who went offline}.
    pub(super) reregister: Script,
    /// ARGV: p, this node. Drops every other node whose lease ran out;
    /// answers the users left with no node.
    pub(super) reap: Script,
    /// ARGV: p, node. Drops `node` now (a clean exit, or a node id starting
    /// again); answers the users left with no node.
    pub(super) drop_node: Script,
    /// ARGV: p, node, user, count. The user's devices on this node, kept
    /// as the value of their registration (only while they have one).
    pub(super) set_devices: Script,
    /// ARGV: p, user ids... Answers each user's devices over every node.
    pub(super) devices: Script,
    /// ARGV: p, node, report. Keeps the node's latest stats report.
    pub(super) report: Script,
    /// ARGV: p. The reports of the nodes whose lease has not run out.
    pub(super) reports: Script,
    /// KEYS: a work lease. ARGV: holder, ttl (ms). Takes the lease when
    /// free, or extends it when `holder` has it; answers 1 when `holder`
    /// holds it after the call.
    pub(super) lease_hold: Script,
    /// KEYS: a work lease. ARGV: holder. Drops the lease if `holder` has it.
    pub(super) lease_release: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    route: Script::new(
        r"
local p, me, payload = ARGV[1], ARGV[2], ARGV[3]
local sent, count = {}, 0
for i = 4, #ARGV do
  for _, node in ipairs(redis.call('HKEYS', p .. ':user:' .. ARGV[i])) do
    if node ~= me and not sent[node] then
      sent[node] = true
      redis.call('PUBLISH', p .. ':node:' .. node, payload)
      count = count + 1
    end
  end
end
return count
",
    ),
    seq_next: Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local last = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return last
",
    ),
    seq_seed: Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
local last = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return last
",
    ),
    lease: Script::new(concat!(
        lua_helpers!(),
        r"
local p, node = ARGV[1], ARGV[2]
local known = redis.call('HEXISTS', p .. ':nodes', node)
redis.call('HSET', p .. ':nodes', node, now_ms() + tonumber(ARGV[3]))
return known
"
    )),
    lease_of: Script::new("return redis.call('HGET', ARGV[1] .. ':nodes', ARGV[2])"),
    node_alive: Script::new(concat!(
        lua_helpers!(),
        r"
local expiry = redis.call('HGET', ARGV[1] .. ':nodes', ARGV[2])
if expiry and tonumber(expiry) >= now_ms() then return 1 end
return 0
"
    )),
    user_online: Script::new(
        r"
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':user:' .. user
local first = redis.call('HLEN', key) == 0
redis.call('HSET', key, node, 1)
redis.call('SADD', p .. ':node:' .. node .. ':users', user)
if first then return 1 else return 0 end
",
    ),
    user_offline: Script::new(
        r"
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':user:' .. user
redis.call('HDEL', key, node)
redis.call('SREM', p .. ':node:' .. node .. ':users', user)
if redis.call('HLEN', key) == 0 then return 1 else return 0 end
",
    ),
    users_online: Script::new(
        r"
local answer = {}
for i = 2, #ARGV do
  if redis.call('HLEN', ARGV[1] .. ':user:' .. ARGV[i]) > 0 then answer[i - 1] = 1 else answer[i - 1] = 0 end
end
return answer
",
    ),
    reregister: Script::new(concat!(
        lua_helpers!(),
        r"
local p, node = ARGV[1], ARGV[2]
local set = p .. ':node:' .. node .. ':users'
redis.call('HSET', p .. ':nodes', node, now_ms() + tonumber(ARGV[3]))
local keep = {}
for i = 4, #ARGV do keep[ARGV[i]] = true end
local went = {}
for _, user in ipairs(redis.call('SMEMBERS', set)) do
  if not keep[user] then
    local key = p .. ':user:' .. user
    redis.call('HDEL', key, node)
    redis.call('SREM', set, user)
    if redis.call('HLEN', key) == 0 then table.insert(went, user) end
  end
end
local came = {}
for i = 4, #ARGV do
  local key = p .. ':user:' .. ARGV[i]
  if redis.call('HLEN', key) == 0 then table.insert(came, ARGV[i]) end
  redis.call('HSET', key, node, 1)
  redis.call('SADD', set, ARGV[i])
end
return {came, went}
"
    )),
    reap: Script::new(concat!(
        lua_helpers!(),
        r"
local p, me = ARGV[1], ARGV[2]
local nodes = redis.call('HGETALL', p .. ':nodes')
local now = now_ms()
local gone = {}
for i = 1, #nodes, 2 do
  if nodes[i] ~= me and tonumber(nodes[i + 1]) < now then
    for _, user in ipairs(drop_node(p, nodes[i])) do table.insert(gone, user) end
  end
end
return gone
"
    )),
    drop_node: Script::new(concat!(lua_helpers!(), "\nreturn drop_node(ARGV[1], ARGV[2])\n")),
    set_devices: Script::new(
        r"
local key = ARGV[1] .. ':user:' .. ARGV[3]
if redis.call('HEXISTS', key, ARGV[2]) == 1 then redis.call('HSET', key, ARGV[2], ARGV[4]) end
return 1
",
    ),
    devices: Script::new(
        r"
local counts = {}
for i = 2, #ARGV do
  local total = 0
  local nodes = redis.call('HVALS', ARGV[1] .. ':user:' .. ARGV[i])
  for _, count in ipairs(nodes) do total = total + tonumber(count) end
  counts[i - 1] = total
end
return counts
",
    ),
    report: Script::new("return redis.call('HSET', ARGV[1] .. ':stats', ARGV[2], ARGV[3])"),
    reports: Script::new(concat!(
        lua_helpers!(),
        r"
local p = ARGV[1]
local now = now_ms()
local stats = redis.call('HGETALL', p .. ':stats')
local alive = {}
for i = 1, #stats, 2 do
  local expiry = redis.call('HGET', p .. ':nodes', stats[i])
  if expiry and tonumber(expiry) >= now then
    table.insert(alive, stats[i + 1])
  else
    redis.call('HDEL', p .. ':stats', stats[i])
  end
end
return alive
"
    )),
    lease_hold: Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    ),
    lease_release: Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    ),
});
