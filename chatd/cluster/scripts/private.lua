-- Private messages between session ARGV[3] and the user named ARGV[4]
-- (casefolded: a connected user, an account, or a partner of the session's
-- account that is gone), from their pair's stream
-- (entry id 0-<msg id>), oldest first: the first ARGV[6] with an id above
-- ARGV[5], or the newest ARGV[6] when ARGV[5] is ''.
-- {'ok', payloads...} or {'no_such_user'}.
local a = redis.call('HGET', P .. 'sess:' .. ARGV[3], 'identity')
if not a then return {'no_such_user'} end
local b = peer(ARGV[4])
b = b and b[3]
if not b then
  -- One of the account's conversations (welcome.conversations): a guest gone since.
  local names = P .. 'pnames:' .. a
  for _, partner in ipairs(redis.call('ZREVRANGE', P .. 'partners:' .. a, 0, -1)) do
    local name = redis.call('HGET', names, partner)
    if name and string.lower(name) == ARGV[4] then
      b = partner
      break
    end
  end
end
if not b then return {'no_such_user'} end
local log = P .. 'plog:' .. pair(a, b)
local reply = {'ok'}
if ARGV[5] == '' then
  local entries = redis.call('XREVRANGE', log, '+', '-', 'COUNT', ARGV[6])
  for i = #entries, 1, -1 do reply[#reply + 1] = entries[i][2][2] end
else
  for _, entry in ipairs(redis.call('XRANGE', log, '(0-' .. ARGV[5], '+', 'COUNT', ARGV[6])) do
    reply[#reply + 1] = entry[2][2]
  end
end
return reply
