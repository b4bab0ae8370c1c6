-- Claim a name cluster-wide and enter the lobby.  ARGV[3] node, [4] sid,
-- [5] name, [6] casefolded key, [7] sha256 of the new token, [8] sha256 of
-- the token given (or ''), [9] lobby names listed at most, [10] '1' if this
-- node takes guests, [11] the credential a password was checked against
-- ('' for a hello without one), [12] conversations listed at most.
-- A login (ARGV[11] given) takes its account's name from whoever holds it,
-- if the account still has that credential.  Without a password, a name
-- held by someone else is taken only with the holder's token (the new
-- session keeps its identity), and an account's name only that way.  A
-- holder taken from is replaced: its node closes it with `bye` replaced.
-- {'ok', identity, name, ev, lobby count, account (0/1), {with, last_id,
-- ...}, lobby names...}, or {'taken'}, {'auth_required'} (an account's
-- name), {'accounts_only'} (no guests here), {'auth_failed'} (the account
-- changed or went since its credential was read), {'fenced'} (this node's
-- lease is gone).
local node, sid, name, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if not redis.call('ZSCORE', P .. 'nodes', node) then return {'fenced'} end
local acct = account(key)
local holder = redis.call('HGET', P .. 'users', key)
local identity, is_account = sid, false
if ARGV[11] ~= '' then
  if not acct or acct[2] ~= ARGV[11] then return {'auth_failed'} end
  name, identity, is_account = acct[1], acct[3], true
elseif not acct and ARGV[10] ~= '1' then
  return {'accounts_only'}
elseif holder then
  local hs = P .. 'sess:' .. holder
  if ARGV[8] == '' or redis.call('HGET', hs, 'token') ~= ARGV[8] then
    return {acct and 'auth_required' or 'taken'}
  end
  identity = redis.call('HGET', hs, 'identity')
  is_account = redis.call('HGET', hs, 'account') == '1'
elseif acct then
  return {'auth_required'}
end
if holder then
  local hnode = redis.call('HGET', P .. 'sess:' .. holder, 'node')
  drop(holder, 'replaced')
  tell(hnode, 'replaced ' .. holder)
end
redis.call('HSET', P .. 'users', key, sid)
redis.call('HSET', P .. 'sess:' .. sid, 'name', name, 'key', key, 'node', node,
           'token', ARGV[7], 'identity', identity, 'account', is_account and '1' or '0')
redis.call('SADD', P .. 'node:' .. node, sid)
redis.call('ZADD', members('lobby'), counter(P .. 'joins'), sid)
redis.call('SADD', P .. 'in:' .. sid, 'lobby')
local ev = announce('lobby', sid,
  '{"type":"joined","room":"lobby","name":' .. cjson.encode(name) .. '}')
local names = names_of(redis.call('ZRANGE', members('lobby'), 0, tonumber(ARGV[9]) - 1))
local reply = {'ok', identity, name, ev, redis.call('ZCARD', members('lobby')),
               is_account and 1 or 0,
               is_account and conversations(identity, tonumber(ARGV[12])) or {}}
for _, n in ipairs(names) do reply[#reply + 1] = n end
return reply
