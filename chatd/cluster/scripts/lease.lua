-- The node's lease: ARGV[3] node, ARGV[4] lease in ms, ARGV[5] 'new' or
-- 'renew', ARGV[6] '1' if this node may reap (it has been connected a whole
-- lease), ARGV[7] the expiry of its last renewal.  A node renewing a lease that is gone was reaped (or Redis lost its
-- data): {'fenced'}.  Else {'ok', new expiry, reaped node ids...}.  A lease of 0 with '1' is a node leaving at shutdown:
-- it reaps itself (its sessions' `left` say shutdown).  Else {'ok', reaped node ids...}: each reaped node's
-- sessions leave their rooms (`left` timeout) and their names come free.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[3]
if ARGV[5] == 'renew' and not redis.call('ZSCORE', P .. 'nodes', node) then
  return {'fenced'}
end
-- A node reaps only if its own lease is still the one it last renewed
-- (ARGV[7], the expiry that renewal answered) and has not lapsed: Redis
-- itself may have been stalled (SIGSTOP, a slow fork) past every lease, and
-- this command may be a stale one, executed late from a connection the node
-- has given up after another renewal of the same kind.
local mine = tonumber(redis.call('ZSCORE', P .. 'nodes', node) or 0)
local expiry = now + tonumber(ARGV[4])
redis.call('ZADD', P .. 'nodes', expiry, node)
local reply = {'ok', expiry}
if ARGV[6] == '1' and mine >= now and mine == tonumber(ARGV[7]) then
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now)) do
    for _, sid in ipairs(redis.call('SMEMBERS', P .. 'node:' .. dead)) do
      drop(sid, dead == node and 'shutdown' or 'timeout')
    end
    redis.call('ZREM', P .. 'nodes', dead)
    if dead ~= node then
      tell(dead, 'reaped')
      reply[#reply + 1] = dead
    end
    -- Its inbox goes too: a reaped node that is still alive joins again
    -- under a new id (and a new inbox) once it finds its lease gone.
    redis.call('DEL', P .. 'node:' .. dead, P .. 'inbox:' .. dead, P .. 'told:' .. dead)
  end
end
return reply
