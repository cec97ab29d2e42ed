"""The shared state's keys in Redis and the Lua scripts that change them, each in one step.

One Redis database holds one fleet (``redis://HOST:PORT/DB``)::

    runtime:epoch               string  a random id, set once; a new one means Redis lost its data
    runtime:hives               zset    hive id -> when it was last heard (Redis TIME, ms)
    runtime:hive:<id>           hash    beat: the last heartbeat (JSON, without host/port/devices)
                                        workers: its worker ids, space-separated
                                        (the key expires KEEP_TTLS x the TTL after the heartbeat)
    runtime:owner               hash    worker id -> the hive that reports it
    runtime:catalog:<id>        hash    shape: JSON [host, port, devices]; status: Online |
                                        Offline; created_ms, updated_ms; last_heartbeat: the
                                        hive's own timestamp (RFC 3339)
    runtime:evicted             zset    "<hive>@<ms>" -> when it was evicted (the last TTL only)
    runtime:frozen              string  since when eviction is frozen (ms); absent when it is not
    runtime:services            hash    name -> the service (ServiceView JSON, with its owner)
    runtime:usage:count         hash    model -> schedule answers for it (HINCRBY, in batches)
    runtime:usage:last          hash    model -> the last of them (Redis-clock ms; the max wins)
    runtime:events              stream  every change, in order, MAXLEN ~ STREAM_MAXLEN
    runtime:lease:reap          string  the replica that evicts this interval (SET NX PX)
    runtime:lease:check:<name>  string  the replica that probes service <name> this interval

The events: each stream entry has one field, ``e``, whose value is the kind and its arguments
separated by single spaces (ids and names hold no spaces; JSON comes last), so that a replica
parses one value per event::

    beat HIVE SEEN_MS BEAT         a hive's heartbeat
    worker HIVE SEEN_MS BEAT       a worker's heartbeat (its hive's new beat)
    gone HIVE                      removed (DELETE /v1/hives/HIVE)
    evict HIVE                     evicted after its TTL
    freeze SINCE_MS / thaw         eviction frozen / thawed
    svc NAME SERVICE / svc-gone NAME

Every script reads Redis' own clock (``TIME``), so every replica sees the same "when". Keys are
computed inside the scripts (``runtime:hive:`` + id), so this is for one Redis server (with
replicas, Sentinel), not Redis Cluster.
"""

from __future__ import annotations

from string import Template

PREFIX = "runtime:"
EPOCH = PREFIX + "epoch"
HIVES = PREFIX + "hives"
OWNER = PREFIX + "owner"
EVICTED = PREFIX + "evicted"
FROZEN = PREFIX + "frozen"
SERVICES = PREFIX + "services"
USAGE_COUNT = PREFIX + "usage:count"
USAGE_LAST = PREFIX + "usage:last"
EVENTS = PREFIX + "events"
REAP_LEASE = PREFIX + "lease:reap"

# The stream holds the last ~10,000 changes: at 1,000 hives beating every 15 s, about two
# minutes. A replica away for longer than that (it finds the entries it missed trimmed) loads
# a snapshot instead of replaying.
STREAM_MAXLEN = 10_000
# A hive's key outlives its TTL: the freeze may keep a silent hive for up to ten TTLs (the
# freeze limit) after it went stale; the reaper, not the key's expiry, evicts it.
KEEP_TTLS = 12


def hive_key(hive_id: str) -> str:
    """The key of a hive's last heartbeat."""
    return f"{PREFIX}hive:{hive_id}"


def catalog_key(hive_id: str) -> str:
    """The key of a hive's catalog row."""
    return f"{PREFIX}catalog:{hive_id}"


def check_lease(name: str) -> str:
    """The key of the lease on probing service ``name``."""
    return f"{PREFIX}lease:check:{name}"


def _lua(text: str) -> str:
    """A script's text with ``$prefix``, ``$hives``, ... replaced by the key names above."""
    return Template(text).substitute(
        prefix=PREFIX, epoch=EPOCH, hives=HIVES, owner=OWNER, evicted=EVICTED, frozen=FROZEN,
        services=SERVICES, events=EVENTS, maxlen=STREAM_MAXLEN, usage_count=USAGE_COUNT,
        usage_last=USAGE_LAST,
    )  # fmt: skip


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Drop hive ARGV[1]: its workers' ownership (where it still holds it), its key, its liveness.
_DROP = """
local function drop(id)
  local ws = redis.call('HGET', '${prefix}hive:' .. id, 'workers')
  if ws then
    for w in string.gmatch(ws, '%S+') do
      if redis.call('HGET', '${owner}', w) == id then redis.call('HDEL', '${owner}', w) end
    end
  end
  redis.call('DEL', '${prefix}hive:' .. id)
  redis.call('ZREM', '${hives}', id)
end
"""

# A heartbeat, in one step. KEYS: hive key, catalog key. ARGV: 1 hive id, 2 beat JSON, 3 worker
# ids (space-separated, in the beat's order), 4 shape JSON, 5 the hive's own timestamp, 6 TTL ms,
# 7 key lifetime ms, 8 restore: the SEEN_MS to keep, or '' for a live heartbeat.
# Returns {'ok', event id}, {'conflict', worker index, owner} or {'exists'} (a restore skipped).
BEAT = _lua(
    _NOW
    + """
local hkey, ckey, id = KEYS[1], KEYS[2], ARGV[1]
local seen = now
if ARGV[8] ~= '' then
  if redis.call('EXISTS', hkey) == 1 then return {'exists'} end
  seen = tonumber(ARGV[8])
end
local ttl = tonumber(ARGV[6])
local ids = {}
for w in string.gmatch(ARGV[3], '%S+') do ids[#ids + 1] = w end
local owners = {}
if #ids > 0 then owners = redis.call('HMGET', '${owner}', unpack(ids)) end
for i = 1, #ids do
  local o = owners[i]
  if o and o ~= id then
    local oseen = redis.call('ZSCORE', '${hives}', o)
    if oseen and now < tonumber(oseen) + ttl then return {'conflict', i - 1, o} end
  end
end
local old = redis.call('HGET', hkey, 'workers')
if old and old ~= ARGV[3] then
  local listed = {}
  for i = 1, #ids do listed[ids[i]] = true end
  for w in string.gmatch(old, '%S+') do
    if not listed[w] and redis.call('HGET', '${owner}', w) == id then
      redis.call('HDEL', '${owner}', w)
    end
  end
end
local claims = {}
for i = 1, #ids do
  if owners[i] ~= id then
    claims[#claims + 1] = ids[i]
    claims[#claims + 1] = id
  end
end
if #claims > 0 then redis.call('HSET', '${owner}', unpack(claims)) end
redis.call('HSET', hkey, 'beat', ARGV[2], 'workers', ARGV[3])
redis.call('PEXPIRE', hkey, ARGV[7])
local s = string.format('%d', seen)
redis.call('ZADD', '${hives}', s, id)
local row = redis.call('HMGET', ckey, 'shape', 'status')
if row[1] ~= ARGV[4] or row[2] ~= 'Online' then
  local n = string.format('%d', now)
  redis.call('HSET', ckey, 'shape', ARGV[4], 'status', 'Online', 'updated_ms', n)
  redis.call('HSETNX', ckey, 'created_ms', n)
end
redis.call('HSET', ckey, 'last_heartbeat', ARGV[5])
local e = redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*',
                     'e', 'beat ' .. id .. ' ' .. s .. ' ' .. ARGV[2])
return {'ok', e}
"""
)

# A worker's heartbeat: compare-and-set of its hive's beat. ARGV: 1 worker id, 2 hive id, 3 the
# beat read, 4 the new beat. Returns the event id, or nil when the worker or the beat changed.
WORKER = _lua(
    """
if redis.call('HGET', '${owner}', ARGV[1]) ~= ARGV[2] then return nil end
local hkey = '${prefix}hive:' .. ARGV[2]
if redis.call('HGET', hkey, 'beat') ~= ARGV[3] then return nil end
redis.call('HSET', hkey, 'beat', ARGV[4])
local s = string.format('%d', tonumber(redis.call('ZSCORE', '${hives}', ARGV[2])))
return redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*',
                  'e', 'worker ' .. ARGV[2] .. ' ' .. s .. ' ' .. ARGV[4])
"""
)

# DELETE /v1/hives/ID. ARGV: 1 hive id. Returns the event id, or nil when the hive is not held.
GONE = _lua(
    _DROP
    + """
if not redis.call('ZSCORE', '${hives}', ARGV[1]) then return nil end
drop(ARGV[1])
redis.call('DEL', '${prefix}catalog:' .. ARGV[1])
return redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*', 'e', 'gone ' .. ARGV[1])
"""
)

# What the reaper decides on. ARGV: 1 TTL ms. Returns {now, stale ids, hives held, evicted in
# the last TTL, frozen since ('' when not)}.
SURVEY = _lua(
    _NOW
    + """
local edge = string.format('%d', now - tonumber(ARGV[1]))
redis.call('ZREMRANGEBYSCORE', '${evicted}', '-inf', edge)
local stale = redis.call('ZRANGEBYSCORE', '${hives}', '-inf', edge)
return {string.format('%d', now), stale, redis.call('ZCARD', '${hives}'),
        redis.call('ZCARD', '${evicted}'), redis.call('GET', '${frozen}') or ''}
"""
)

# Evict hive ARGV[1] if it is still stale (ARGV[2]: TTL ms). Returns 1 when evicted, else 0.
EVICT = _lua(
    _NOW
    + _DROP
    + """
local seen = redis.call('ZSCORE', '${hives}', ARGV[1])
if not seen or tonumber(seen) + tonumber(ARGV[2]) > now then return 0 end
drop(ARGV[1])
local n = string.format('%d', now)
redis.call('ZADD', '${evicted}', n, ARGV[1] .. '@' .. n)
local ckey = '${prefix}catalog:' .. ARGV[1]
if redis.call('EXISTS', ckey) == 1 then
  redis.call('HSET', ckey, 'status', 'Offline', 'updated_ms', n)
end
redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*', 'e', 'evict ' .. ARGV[1])
return 1
"""
)

# Freeze (ARGV[1] = 'freeze') or thaw eviction; an event only when the state changes.
FREEZE = _lua(
    _NOW
    + """
if ARGV[1] == 'freeze' then
  local n = string.format('%d', now)
  if redis.call('SET', '${frozen}', n, 'NX') then
    redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*', 'e', 'freeze ' .. n)
  end
elseif redis.call('DEL', '${frozen}') == 1 then
  redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*', 'e', 'thaw')
end
return 1
"""
)

# A service write: compare-and-set. ARGV: 1 name, 2 the value read ('' absent), 3 the new value
# ('' to remove). Returns the event id, or nil when the value changed meanwhile.
SERVICE = _lua(
    """
local cur = redis.call('HGET', '${services}', ARGV[1]) or ''
if cur ~= ARGV[2] then return nil end
if ARGV[3] == '' then
  redis.call('HDEL', '${services}', ARGV[1])
  return redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*',
                    'e', 'svc-gone ' .. ARGV[1])
end
redis.call('HSET', '${services}', ARGV[1], ARGV[3])
return redis.call('XADD', '${events}', 'MAXLEN', '~', ${maxlen}, '*',
                  'e', 'svc ' .. ARGV[1] .. ' ' .. ARGV[3])
"""
)

# A batch of model uses. ARGV: triples of model, uses, last use (ms). No event: the counts are
# read from Redis when asked for (GET /v1/models), not mirrored.
USE = _lua(
    """
for i = 1, #ARGV, 3 do
  redis.call('HINCRBY', '${usage_count}', ARGV[i], ARGV[i + 1])
  local last = tonumber(redis.call('HGET', '${usage_last}', ARGV[i]) or '0')
  if tonumber(ARGV[i + 2]) > last then redis.call('HSET', '${usage_last}', ARGV[i], ARGV[i + 2]) end
end
return 1
"""
)

# Everything a replica loads, at one stream position. ARGV: 1 an epoch to set if there is none.
# Returns {epoch, last event id, frozen since, {id, seen, beat, ...}, {name, service, ...}}.
SNAPSHOT = _lua(
    """
redis.call('SET', '${epoch}', ARGV[1], 'NX')
local last = redis.call('XREVRANGE', '${events}', '+', '-', 'COUNT', 1)
local hives = {}
local ids = redis.call('ZRANGE', '${hives}', 0, -1, 'WITHSCORES')
for i = 1, #ids, 2 do
  local b = redis.call('HGET', '${prefix}hive:' .. ids[i], 'beat')
  if b then
    hives[#hives + 1] = ids[i]
    hives[#hives + 1] = ids[i + 1]
    hives[#hives + 1] = b
  end
end
return {redis.call('GET', '${epoch}'), last[1] and last[1][1] or '0-0',
        redis.call('GET', '${frozen}') or '', hives, redis.call('HGETALL', '${services}')}
"""
)
