//! The fleet's Lua scripts: each runs atomically in Redis, so no other daemon sees a job
//! half changed. Keys (with the configured prefix): `jobs`, the stream of job ids with the
//! consumer group `workers`; `job:ID`, a job's hash; `pending`, the count of jobs queued or
//! running; `idem:OWNER:KEY`, an idempotency key's job; `cancel`, the channel cancels go
//! out on.
//!
//! A stream entry is a claim: it sits in a daemon's pending entries list (PEL) from the
//! moment that daemon reads it until the job's callback is over. The PEL's idle time is the
//! lease (renewed by `HEARTBEAT`), its delivery counter the number of daemons the job was
//! handed to. Every script that acts on a claim checks first that the claim is still the
//! caller's: Redis itself has no fencing (a late daemon's `XACK` or `XCLAIM` would still
//! succeed), so a daemon that was thought dead cannot take a job back from the one that
//! took it over.

use redis::Script;

/// KEYS: job hash, stream, pending count[, idempotency key].
/// ARGV: job id, max pending, then the hash's fields and values.
/// → `{"accepted", entry}`, `{"existing", job id}` or `{"full", pending}`.
pub(super) const SUBMIT: &str = r"
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then return {'existing', seen} end
end
local pending = tonumber(redis.call('GET', KEYS[3]) or '0')
if pending >= tonumber(ARGV[2]) then return {'full', tostring(pending)} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', entry)
redis.call('INCR', KEYS[3])
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[1])
  redis.call('HSET', KEYS[1], 'idem', KEYS[4])
end
return {'accepted', entry}
";

/// KEYS: job hash, stream. ARGV: group, entry, consumer, now (Unix ms), max attempts.
/// → `{"run"|"callback"|"poison", hash}` or `{"skip"}` (the claim is closed, or no longer
/// the caller's).
pub(super) const START: &str = r"
local function close()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return {'skip'} end
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'cancelled' then close(); return {'skip'} end
if status == 'done' or status == 'failed' then
  local cb = redis.call('HGET', KEYS[1], 'callback')
  if cb then
    local state = cjson.decode(cb).state
    if state == 'pending' or state == 'delivering' then return {'callback', redis.call('HGETALL', KEYS[1])} end
  end
  close()
  return {'skip'}
end
if tonumber(p[1][4]) > tonumber(ARGV[5]) then return {'poison', redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[4], 'worker', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'runs', 1)
return {'run', redis.call('HGETALL', KEYS[1])}
";

/// KEYS: stream, then each claim's job hash. ARGV: group, consumer, then each claim's
/// entry. Renews the claims still the caller's (`XCLAIM … JUSTID` resets the idle time and
/// leaves the delivery counter alone). → per claim `held`, `lost` or `cancelled`.
pub(super) const HEARTBEAT: &str = r"
local out = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then
    out[#out + 1] = 'lost'
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if redis.call('HGET', KEYS[i - 1], 'status') == 'cancelled' then
      out[#out + 1] = 'cancelled'
    else
      out[#out + 1] = 'held'
    end
  end
end
return out
";

/// KEYS: job hash, stream, pending count. ARGV: group, entry, retention (ms), then the
/// fields and values of the outcome. Writes only if the job has not ended (the first
/// writer wins); the claim is closed at once unless a callback is to be delivered.
/// → `{"written", hash}`, or `{state}` it had.
pub(super) const FINISH: &str = r"
local function close()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then close(); return {'gone'} end
local cb = redis.call('HGET', KEYS[1], 'callback')
if status ~= 'queued' and status ~= 'running' then
  local due = false
  if cb and status ~= 'cancelled' then
    local state = cjson.decode(cb).state
    due = state == 'pending' or state == 'delivering'
  end
  -- a callback still due is left to whoever holds the claim after a lease
  if not due then close() end
  return {status}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HDEL', KEYS[1], 'request')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local idem = redis.call('HGET', KEYS[1], 'idem')
if idem then redis.call('PEXPIRE', idem, ARGV[3]) end
redis.call('DECR', KEYS[3])
if not cb then close() end
return {'written', redis.call('HGETALL', KEYS[1])}
";

/// KEYS: job hash, stream, pending count. ARGV: group, retention (ms), why, now, channel,
/// job id. → `cancelled`, `ended` or `unknown`.
pub(super) const CANCEL: &str = r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'unknown' end
if status ~= 'queued' and status ~= 'running' then return 'ended' end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'error_code', 'cancelled', 'error_message', ARGV[3],
  'finished_at', ARGV[4])
local cb = redis.call('HGET', KEYS[1], 'callback')
if cb then
  local c = cjson.decode(cb)
  c.state = 'failed'
  c.last_error = 'not sent: the job was cancelled'
  redis.call('HSET', KEYS[1], 'callback', cjson.encode(c))
end
redis.call('HDEL', KEYS[1], 'request')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local idem = redis.call('HGET', KEYS[1], 'idem')
if idem then redis.call('PEXPIRE', idem, ARGV[2]) end
redis.call('DECR', KEYS[3])
local entry = redis.call('HGET', KEYS[1], 'entry')
if status == 'queued' and entry then
  redis.call('XACK', KEYS[2], ARGV[1], entry)
  redis.call('XDEL', KEYS[2], entry)
else
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 'cancelled'
";

/// KEYS: job hash. ARGV: the callback's JSON. Only while the job is kept.
pub(super) const CALLBACK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'callback', ARGV[1]) end
return 1
";

/// KEYS: stream. ARGV: group, entry.
pub(super) const CLOSE: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

/// KEYS: job hash, stream. ARGV: group, entry, consumer, job id. Hands a claim back: a
/// job not ended gets a fresh entry (so the hand-back does not count as a lost run) at the
/// end of the stream, and is queued again.
pub(super) const RELEASE: &str = r"
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[4])
  redis.call('HSET', KEYS[1], 'status', 'queued', 'entry', entry)
  if status == 'running' then redis.call('HINCRBY', KEYS[1], 'runs', -1) end
end
return 1
";

/// KEYS: stream. ARGV: group, consumer, min idle (ms), count. Takes over claims idle
/// longer than a lease (`XAUTOCLAIM` without `JUSTID`, so each one's delivery counter
/// rises). → entry, job id, entry, job id, …
pub(super) const RECLAIM: &str = r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(r[2]) do
  if e[2] and e[2][2] then
    out[#out + 1] = e[1]
    out[#out + 1] = e[2][2]
  end
end
return out
";

/// KEYS: stream. ARGV: group, consumer, count. A daemon's own claims from before it
/// restarted, taken again (`XCLAIM` without `JUSTID`: each counts as a new delivery, so a
/// job that kills the daemon each time still meets the poison limit). → as `RECLAIM`.
pub(super) const RECOVER: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
if #p == 0 then return {} end
local ids = {}
for _, x in ipairs(p) do ids[#ids + 1] = x[1] end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
local out = {}
for _, e in ipairs(claimed) do
  if e[2] and e[2][2] then
    out[#out + 1] = e[1]
    out[#out + 1] = e[2][2]
  end
end
return out
";

/// The scripts, hashed once (`EVALSHA`, with `EVAL` when the server does not know one,
/// e.g. after a restart).
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) submit: Script,
    pub(super) start: Script,
    pub(super) heartbeat: Script,
    pub(super) finish: Script,
    pub(super) cancel: Script,
    pub(super) callback: Script,
    pub(super) close: Script,
    pub(super) release: Script,
    pub(super) reclaim: Script,
    pub(super) recover: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            submit: Script::new(SUBMIT),
            start: Script::new(START),
            heartbeat: Script::new(HEARTBEAT),
            finish: Script::new(FINISH),
            cancel: Script::new(CANCEL),
            callback: Script::new(CALLBACK),
            close: Script::new(CLOSE),
            release: Script::new(RELEASE),
            reclaim: Script::new(RECLAIM),
            recover: Script::new(RECOVER),
        }
    }
}
