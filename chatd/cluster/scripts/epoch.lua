-- At every connect, first: the cluster's epoch, kept if Redis has one.
-- ARGV[3] the epoch this node knew (or a new one), ARGV[4] a floor above
-- every id it saw (0 for a node that knew none), ARGV[5] the run of Redis
-- (INFO's run_id) it last read from ('' for none).  Redis may have lost
-- data if it has no epoch but the node knew one (all of it), or if it runs
-- anew (a restart, a failover: its last writes); then ids jump past the
-- floor, raised by every node that comes back from another run.  A new run
-- is recorded in `run` and `runs` (the last RUNS_KEPT, for the numberings'
-- bases: common.lua).  Returns {epoch, 1 if Redis had none}.
-- The nodes' presence limit and stream cap, for the operator's scripts
-- (`chatd account`, operator.py), which change rooms as the nodes would.
redis.call('HSET', P .. 'limits', 'presence', ARGV[1], 'cap', ARGV[2])
local t = redis.call('TIME')
-- Above every id handed out: the node's floor, or Redis' clock in ms (ids
-- are below it, unless a room took more than one per ms since the last floor).
local floor = math.max(tonumber(ARGV[4]), tonumber(t[1]) * 1000)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local stored = redis.call('GET', P .. 'run')
if stored ~= run then
  if stored then raise_floor(floor) end
  redis.call('SET', P .. 'run', run)
  redis.call('LPUSH', P .. 'runs', run)
  while redis.call('LLEN', P .. 'runs') > RUNS_KEPT do
    redis.call('DEL', P .. 'base:' .. redis.call('RPOP', P .. 'runs'))
  end
end
if ARGV[5] ~= '' and ARGV[5] ~= run then raise_floor(floor) end
local known = redis.call('GET', P .. 'epoch')
if known then
  -- A node that knew another epoch: this one was made after a loss.
  if tonumber(ARGV[4]) > 0 and known ~= ARGV[3] then raise_floor(floor) end
  return {known, 0}
end
if tonumber(ARGV[4]) > 0 then raise_floor(floor) end
redis.call('SET', P .. 'epoch', ARGV[3])
redis.call('HSETNX', P .. 'rooms', 'lobby', 'lobby')
return {ARGV[3], 1}
