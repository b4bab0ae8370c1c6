-- Node ARGV[3] reconnected following room ARGV[4], having delivered its
-- events up to ev ARGV[5]: the room's stream from ev ARGV[5] + 1 on.  If
-- the room's events went back below ARGV[5], Redis lost recent data (an
-- everysec AOF after a crash, a replica that was behind): its events go on
-- after ARGV[5], and ids jump above ARGV[6] (the node's floor: above every
-- id it saw).  A node whose lease is gone (reaped) reads nothing: it is
-- being fenced.  {went back (0/1), {entry id, {'d', data}}...}
if not redis.call('ZSCORE', P .. 'nodes', ARGV[3]) then return {0, {}} end
local room, seen = ARGV[4], tonumber(ARGV[5])
local behind = 0
if current(room) < seen then
  redis.call('SET', P .. 'ev:' .. room, seen)
  raise_floor(ARGV[6])
  behind = 1
end
return {behind, redis.call('XRANGE', P .. 'log:' .. room, '0-' .. (seen + 1), '+')}
