-- At every connect, first: the cluster's epoch, kept if Redis has one.
-- ARGV[3] the epoch this node knew (or a new one), ARGV[4] the floor for
-- counters created from now on: nonzero when this node knew an epoch that
-- Redis lost with its data, so ids jump past every id handed out before.
-- Returns {epoch, 1 if Redis had none}.
-- The nodes' presence limit and stream cap, for the operator's scripts
-- (`chatd account`, operator.py), which change rooms as the nodes would.
redis.call('HSET', P .. 'limits', 'presence', ARGV[1], 'cap', ARGV[2])
local known = redis.call('GET', P .. 'epoch')
local floor = tonumber(redis.call('GET', P .. 'floor') or 0)
if tonumber(ARGV[4]) > floor then redis.call('SET', P .. 'floor', ARGV[4]) end
if known then return {known, 0} end
redis.call('SET', P .. 'epoch', ARGV[3])
redis.call('HSETNX', P .. 'rooms', 'lobby', 'lobby')
return {ARGV[3], 1}
