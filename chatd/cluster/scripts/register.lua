-- Make the name ARGV[4] (casefolded ARGV[3]) an account with credential
-- ARGV[5], made at ARGV[6] (Unix s).  For a session's `register` (ARGV[7]
-- its sid): the session must still hold the name; the account takes the
-- session's identity (its private messages so far stay its) and spelling,
-- and the session is the account's from now on.  For the operator (ARGV[7]
-- ''): a new identity, and a guest holding the name is evicted
-- (`name_registered`).  {'ok'}, {'name_registered'} or {'gone'}.
local key, name, sid = ARGV[3], ARGV[4], ARGV[7]
if account(key) then return {'name_registered'} end
local holder = redis.call('HGET', P .. 'users', key)
local identity
if sid ~= '' then
  if holder ~= sid then return {'gone'} end
  local s = P .. 'sess:' .. sid
  identity, name = redis.call('HGET', s, 'identity'), redis.call('HGET', s, 'name')
  redis.call('HSET', s, 'account', '1')
else
  identity = 'a' .. redis.call('INCR', P .. 'identities')
  if holder then evict(holder, 'name_registered') end
end
redis.call('HSET', P .. 'acct:' .. key, 'name', name, 'cred', ARGV[5], 'created', ARGV[6],
           'identity', identity)
redis.call('SADD', P .. 'accounts', key)
return {'ok'}
