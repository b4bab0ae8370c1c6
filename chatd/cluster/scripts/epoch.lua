-- At every connect, first: the cluster's epoch, kept if Redis has one.
-- ARGV[3] the epoch this node knew (or a new one), ARGV[4] a floor above
-- every id it saw (0 for a node that knew none).  If Redis has no epoch but
-- the node knew one, Redis lost its data; if this is another run of Redis
-- than the last node saw (a restart, a failover: INFO's run_id), it may
-- have lost its last writes.  Either way ids jump past the floor, and the
-- numberings' bases start again (common.lua, `numbered`).
-- Returns {epoch, 1 if Redis had none, this run's id}.
-- The nodes' presence limit and stream cap, for the operator's scripts
-- (`chatd account`, operator.py), which change rooms as the nodes would.
redis.call('HSET', P .. 'limits', 'presence', ARGV[1], 'cap', ARGV[2])
local t = redis.call('TIME')
-- Above every id handed out: the node's floor, or Redis' clock in ms (ids
-- are below it, unless a room took more than one per ms since the last floor).
local floor = math.max(tonumber(ARGV[4]), tonumber(t[1]) * 1000)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
if redis.call('GET', P .. 'run') ~= run then
  if redis.call('EXISTS', P .. 'run') == 1 then raise_floor(floor) end
  redis.call('SET', P .. 'run', run)
  redis.call('DEL', P .. 'base')
end
local known = redis.call('GET', P .. 'epoch')
if known then
  -- A node that knew another epoch: this one was made after a loss.
  if tonumber(ARGV[4]) > 0 and known ~= ARGV[3] then raise_floor(floor) end
  return {known, 0, run}
end
if tonumber(ARGV[4]) > 0 then raise_floor(floor) end
redis.call('SET', P .. 'epoch', ARGV[3])
redis.call('HSETNX', P .. 'rooms', 'lobby', 'lobby')
return {ARGV[3], 1, run}
