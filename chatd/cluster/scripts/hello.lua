-- Claim a name cluster-wide and enter the lobby.  ARGV[3] node, [4] sid,
-- [5] name, [6] casefolded key, [7] sha256 of the new token, [8] sha256 of
-- the token given (or ''), [9] lobby names listed at most.
-- A name held by someone else is taken unless the token matches: then its
-- holder is replaced (its node closes it with `bye` replaced) and the new
-- session keeps its identity.  {'ok', identity, ev, lobby count, names...},
-- {'taken'}, or {'fenced'} when this node's lease is gone.
local node, sid, name, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if not redis.call('ZSCORE', P .. 'nodes', node) then return {'fenced'} end
local identity = sid
local holder = redis.call('HGET', P .. 'users', key)
if holder then
  local hs = P .. 'sess:' .. holder
  if ARGV[8] == '' or redis.call('HGET', hs, 'token') ~= ARGV[8] then
    return {'taken'}
  end
  identity = redis.call('HGET', hs, 'identity')
  local hnode = redis.call('HGET', hs, 'node')
  drop(holder, 'replaced')
  redis.call('PUBLISH', P .. 'node:' .. hnode, 'replaced ' .. holder)
end
redis.call('HSET', P .. 'users', key, sid)
redis.call('HSET', P .. 'sess:' .. sid, 'name', name, 'key', key, 'node', node,
           'token', ARGV[7], 'identity', identity)
redis.call('SADD', P .. 'node:' .. node, sid)
redis.call('ZADD', members('lobby'), counter(P .. 'joins'), sid)
redis.call('SADD', P .. 'in:' .. sid, 'lobby')
local ev = announce('lobby', sid,
  '{"type":"joined","room":"lobby","name":' .. cjson.encode(name) .. '}')
local names = names_of(redis.call('ZRANGE', members('lobby'), 0, tonumber(ARGV[9]) - 1))
local reply = {'ok', identity, ev, redis.call('ZCARD', members('lobby'))}
for _, n in ipairs(names) do reply[#reply + 1] = n end
return reply
