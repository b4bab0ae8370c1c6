-- What node ARGV[3] was told after the number ARGV[4] (the last it handled):
-- {how many it has been told in all, {entry id 0-<number>, {'d', data}}...,
-- went back (0/1)}.  Fewer entries than numbers after ARGV[4]: the cap
-- trimmed the rest.  Fewer told than ARGV[4]: Redis lost recent data (as in
-- resume.lua): numbering goes on after ARGV[4], and ids jump above ARGV[5].
-- A node whose lease is gone (reaped: its inbox deleted) reads nothing.
local node, seen = ARGV[3], tonumber(ARGV[4])
if not redis.call('ZSCORE', P .. 'nodes', node) then return {seen, {}, 0} end
local told = tonumber(redis.call('GET', P .. 'told:' .. node) or 0)
local behind = 0
if told < seen then
  redis.call('SET', P .. 'told:' .. node, seen)
  raise_floor(ARGV[5])
  told, behind = seen, 1
end
return {told, redis.call('XRANGE', P .. 'inbox:' .. node, '0-' .. (seen + 1), '+'), behind}
