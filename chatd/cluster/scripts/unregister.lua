-- The operator deletes the account named ARGV[3] (casefolded), with its
-- private messages with the partners it lists (and its place in their
-- lists); a session logged in to it is evicted (`not_registered`).
-- {'ok'} or {'no_account'}.
local key = ARGV[3]
local acct = account(key)
if not acct then return {'no_account'} end
local identity = acct[3]
for _, partner in ipairs(redis.call('ZRANGE', P .. 'partners:' .. identity, 0, -1)) do
  local p = pair(identity, partner)
  redis.call('DEL', P .. 'plog:' .. p, P .. 'pseq:' .. p)
  redis.call('ZREM', P .. 'partners:' .. partner, identity)
  redis.call('HDEL', P .. 'pnames:' .. partner, identity)
end
redis.call('DEL', P .. 'acct:' .. key, P .. 'partners:' .. identity, P .. 'pnames:' .. identity)
redis.call('SREM', P .. 'accounts', key)
local holder = redis.call('HGET', P .. 'users', key)
if holder and redis.call('HGET', P .. 'sess:' .. holder, 'identity') == identity then
  evict(holder, 'not_registered')
end
return {'ok'}
