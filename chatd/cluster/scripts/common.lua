-- Prepended to every chatd script when it is loaded (scripts.py): key names and
-- the steps several scripts share.  ARGV[1] is the presence limit, ARGV[2] the
-- stream cap, in every script.  All state changes happen in scripts that also
-- publish them, so presence stays in order with messages (CLUSTER.md).
local P = 'chatd:'
local LIMIT = tonumber(ARGV[1])
local CAP = tonumber(ARGV[2])

-- A counter of ids that never repeat: when Redis may have lost data (it has
-- no epoch, or it restarted: its last second may be gone with an everysec
-- AOF after a crash, a replica may have been behind), the first node back
-- raises the floor above every id handed out (epoch.lua), and every counter
-- at or below it jumps above it on its next use.
local function counter(key)
  local value = redis.call('INCR', key)
  local floor = tonumber(redis.call('GET', P .. 'floor') or 0)
  if value <= floor then
    value = floor + 1
    redis.call('SET', key, value)
  end
  return value
end

local function raise_floor(value)
  if tonumber(value) > tonumber(redis.call('GET', P .. 'floor') or 0) then
    redis.call('SET', P .. 'floor', value)
  end
end

local function members(room) return P .. 'members:' .. room end

-- Numbering that others follow one by one (a room's events, a node's inbox)
-- must not be handed out twice either: if Redis restarted (or failed over)
-- without its last writes, the first write of a key in this run of Redis
-- records where its numbering stood (`base:<run>`; epoch.lua keeps the last
-- RUNS_KEPT runs in `runs`), so a node that had seen more learns what was
-- numbered again (resume.lua, inbox.lua: `renumbered_from`).
local RUNS_KEPT = 10

local function numbered(key)
  local run = redis.call('GET', P .. 'run') or ''
  redis.call('HSETNX', P .. 'base:' .. run, key,
             tonumber(redis.call('GET', P .. key) or 0))
  return redis.call('INCR', P .. key)
end

-- For a node that handled numbering `key` up to `seen` while Redis ran as
-- `known`: the lowest base of `key` in the runs since (the numbers after it
-- were given again), or nil when Redis did not restart since or nobody
-- wrote `key` in the runs since.
local function renumbered_from(key, seen, known)
  local low = nil
  for _, run in ipairs(redis.call('LRANGE', P .. 'runs', 0, -1)) do
    if run == known then break end
    local base = tonumber(redis.call('HGET', P .. 'base:' .. run, key) or seen)
    if base < seen and (low == nil or base < low) then low = base end
  end
  return low
end

-- Tell node `node` something (a dm, `replaced`, `evicted`, `reaped`): the
-- node's next number (`told:<node>`), kept in its capped inbox stream as
-- entry 0-<number> and published on its channel as "<number> <data>", so a
-- node that was disconnected reads what it missed from the stream after the
-- last number it handled, and sees from the numbers whether the cap trimmed
-- any (core.py, `_resync`; inbox.lua).  The cap is the inbox's own, not the
-- rooms' (a node cut off for a while may be owed many dms).
local INBOX_CAP = 10000

local function tell(node, data)
  local n = numbered('told:' .. node)
  redis.call('XADD', P .. 'inbox:' .. node, 'MAXLEN', '~', INBOX_CAP, '0-' .. n, 'd', data)
  redis.call('PUBLISH', P .. 'node:' .. node, n .. ' ' .. data)
end

local function current(room)
  return tonumber(redis.call('GET', P .. 'ev:' .. room) or 0)
end

-- One room event: numbered (ev), kept in the room's capped stream (entry id
-- 0-ev) and published.  Its text is "ev sid tag msgid payload": the actor's
-- session, the node's label of the request (0: none), the msg id (0: presence).
local function emit(room, sid, tag, msgid, payload)
  -- Not floored: a room's events stay contiguous for the nodes that follow it.
  local ev = numbered('ev:' .. room)
  local data = ev .. ' ' .. sid .. ' ' .. tag .. ' ' .. msgid .. ' ' .. payload
  redis.call('XADD', P .. 'log:' .. room, 'MAXLEN', '~', CAP, '0-' .. ev, 'd', data)
  redis.call('PUBLISH', P .. 'room:' .. room, data)
  return ev
end

-- Presence is published only while the room is within the presence limit;
-- the ev returned is the event's, or the room's latest when none was sent.
local function announce(room, sid, payload)
  if redis.call('ZCARD', members(room)) <= LIMIT then
    return emit(room, sid, 0, 0, payload)
  end
  return current(room)
end

local function display(room)
  return redis.call('HGET', P .. 'rooms', room) or room
end

local function names_of(sids)
  local names = {}
  for i, sid in ipairs(sids) do
    names[i] = redis.call('HGET', P .. 'sess:' .. sid, 'name') or '?'
  end
  return names
end

-- Session `sid` leaves `room` (`left`, with `reason` unless empty); an emptied
-- room other than the lobby closes (its counters stay: ids never repeat).
local function part(room, sid, name, reason)
  local msg = '{"type":"left","room":' .. cjson.encode(display(room)) ..
              ',"name":' .. cjson.encode(name)
  if reason ~= '' then msg = msg .. ',"reason":' .. cjson.encode(reason) end
  local ev = announce(room, sid, msg .. '}')
  redis.call('ZREM', members(room), sid)
  redis.call('SREM', P .. 'in:' .. sid, room)
  if room ~= 'lobby' and redis.call('ZCARD', members(room)) == 0 then
    redis.call('HDEL', P .. 'rooms', room)
  end
  return ev
end

-- Session `sid` ends: it leaves every room and its name comes free (once).
local function drop(sid, reason)
  local s = P .. 'sess:' .. sid
  local name = redis.call('HGET', s, 'name')
  if not name then return 0 end
  for _, room in ipairs(redis.call('SMEMBERS', P .. 'in:' .. sid)) do
    part(room, sid, name, reason)
  end
  local key = redis.call('HGET', s, 'key')
  if redis.call('HGET', P .. 'users', key) == sid then
    redis.call('HDEL', P .. 'users', key)
  end
  redis.call('SREM', P .. 'node:' .. redis.call('HGET', s, 'node'), sid)
  redis.call('DEL', s, P .. 'in:' .. sid)
  return 1
end

-- Accounts (in cluster mode they live here, not in a store file): `acct:<key>`
-- holds name, cred (chatd/cluster/accounts.py's text of a credential),
-- created and identity (its private pairs' half: a registering guest's
-- session identity, or `a<n>` for one the operator made); `accounts` is the
-- set of keys.  An account's identity is never given again, so a later
-- account of a deleted one's name does not reach its conversations.
-- {name, cred, identity} of the account named `key`, or nil.
local function account(key)
  local a = redis.call('HMGET', P .. 'acct:' .. key, 'name', 'cred', 'identity')
  if not a[1] then return nil end
  return a
end

-- The other end of a dm or a private history: the user named `key` if
-- connected, else the account of that name (not connected: no sid, no
-- node).  {sid, name, identity, is an account, node}, or nil for neither.
local function peer(key)
  local sid = redis.call('HGET', P .. 'users', key)
  if sid then
    local r = redis.call('HMGET', P .. 'sess:' .. sid, 'name', 'identity', 'account', 'node')
    return {sid, r[1], r[2], r[3] == '1', r[4]}
  end
  local acct = account(key)
  if acct then return {false, acct[1], acct[3], true, false} end
  return nil
end

-- The key of the private pair of two identities (in byte order).
local function pair(a, b)
  return a < b and (a .. '|' .. b) or (b .. '|' .. a)
end

-- An account's partners (`partners:<identity>`, a sorted set, most recent
-- highest; their names in `pnames:<identity>`), the source of
-- `welcome.conversations`; 1,000 kept at most, as a single node does.
local MAX_PARTNERS = 1000

local function note_partner(identity, partner, name)
  local z, names = P .. 'partners:' .. identity, P .. 'pnames:' .. identity
  redis.call('ZADD', z, redis.call('INCR', P .. 'pclock'), partner)
  redis.call('HSET', names, partner, name)
  if redis.call('ZCARD', z) > MAX_PARTNERS then
    for _, old in ipairs(redis.call('ZRANGE', z, 0, -MAX_PARTNERS - 1)) do
      redis.call('HDEL', names, old)
    end
    redis.call('ZREMRANGEBYRANK', z, 0, -MAX_PARTNERS - 1)
  end
end

-- `welcome.conversations` of an account: {with, last_id, ...}, most recent
-- first, `most` pairs at most (a pair whose numbering is gone is skipped).
local function conversations(identity, most)
  local listed = {}
  local names = P .. 'pnames:' .. identity
  for _, partner in ipairs(redis.call('ZREVRANGE', P .. 'partners:' .. identity, 0, most - 1)) do
    local last = redis.call('GET', P .. 'pseq:' .. pair(identity, partner))
    local name = redis.call('HGET', names, partner)
    if last and name then
      listed[#listed + 1] = name
      listed[#listed + 1] = tonumber(last)
    end
  end
  return listed
end

-- Session `sid` must go because its name changed hands (`code`: an account
-- made over a guest's name, or deleted under its session): it ends, and its
-- node sends it that error and `bye` replaced.
local function evict(sid, code)
  local node = redis.call('HGET', P .. 'sess:' .. sid, 'node')
  drop(sid, 'replaced')
  tell(node, 'evicted ' .. sid .. ' ' .. code)
end

local function now_ts()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
