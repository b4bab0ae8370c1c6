-- Node ARGV[3]'s sessions as Redis has them, and the rooms of each:
-- {sid, {room...}, sid, {room...}, ...}.  After a reconnect the node drops
-- what Redis no longer has (lost with its last writes, reaped): sessions,
-- and memberships.
local reply = {}
for _, sid in ipairs(redis.call('SMEMBERS', P .. 'node:' .. ARGV[3])) do
  reply[#reply + 1] = sid
  reply[#reply + 1] = redis.call('SMEMBERS', P .. 'in:' .. sid)
end
return reply
