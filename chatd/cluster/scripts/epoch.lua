-- At every connect, first: the cluster's epoch, kept if Redis has one.
-- ARGV[3] the epoch this node knew (or a new one), ARGV[4] a floor above
-- every id it saw (0 for a node that knew none): if Redis has no epoch but
-- the node knew one, Redis lost its data, and ids jump past the floor.
-- Returns {epoch, 1 if Redis had none}.
-- The nodes' presence limit and stream cap, for the operator's scripts
-- (`chatd account`, operator.py), which change rooms as the nodes would.
redis.call('HSET', P .. 'limits', 'presence', ARGV[1], 'cap', ARGV[2])
local known = redis.call('GET', P .. 'epoch')
if known then return {known, 0} end
raise_floor(ARGV[4])
redis.call('SET', P .. 'epoch', ARGV[3])
redis.call('HSETNX', P .. 'rooms', 'lobby', 'lobby')
return {ARGV[3], 1}
