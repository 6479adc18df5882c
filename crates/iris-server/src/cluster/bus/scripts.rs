//! The Lua scripts the bus runs in Redis, one per operation that must be atomic. They are sent
//! with `EVAL` (not `EVALSHA`): a promoted replica has an empty script cache, and `EVAL` of a
//! known body costs the server a hash lookup, so failover never turns into `NOSCRIPT` errors.

/// Deletes KEYS[1] only while it still holds ARGV[1] (this node): a node never releases a device
/// another node has claimed since. Returns 1 when deleted.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Extends KEYS[1] = ARGV[1] (this node) for ARGV[2] ms if it is absent or still ours. Absent
/// happens after a failover lost the write, so refreshing re-creates it; owned by another node
/// means the device moved, and the entry is left to its new owner. Returns 1 when set.
pub(crate) const REFRESH: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// GCRA (generic cell rate algorithm) on KEYS[1]: ARGV[1] takes per ARGV[2] ms, bursts up to
/// ARGV[1]; up to ARGV[3] takes at once (1 for a plain take, more for a node's lease of a
/// shared limit). Stores only the theoretical arrival time (µs, Redis's own clock, so nodes'
/// clocks do not matter), expiring when the bucket is full again. Grants as many as the bucket
/// holds now, at most ARGV[3], and moves the arrival time past them. Returns
/// `{granted, wait_ms}`: `granted >= 1` with `wait_ms = 0`, or `granted = 0` with the ms to wait
/// before one take can succeed (at least 1).
pub(crate) const RATE_LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2]) * 1000
local interval = window / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local room = math.floor((now + window - tat) / interval)
local granted = math.min(room, tonumber(ARGV[3]))
if granted < 1 then
  return {0, math.max(1, math.ceil((tat + interval - window - now) / 1000))}
end
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {granted, 0}
";

/// Adds ARGV[1] to the counter KEYS[1] and returns the new total; a new counter lives ARGV[2]
/// ms (the rest of its window), so every node adds to one count that ends with the window.
pub(crate) const COUNT_ADD: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
";

/// Adds member ARGV[1] to the set KEYS[1] unless it already holds ARGV[2] members (the cap: a
/// rule only needs to know the threshold was reached), gives a new set a life of ARGV[3] ms,
/// and returns how many members it holds and whether ARGV[1] was one of them before (1) or not
/// (0).
pub(crate) const SET_ADD_CAPPED: &str = r"
local n = redis.call('SCARD', KEYS[1])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {n, 1} end
if n < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  n = n + 1
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return {n, 0}
";
