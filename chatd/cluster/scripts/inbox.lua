-- What node ARGV[3] was told after the number ARGV[4] (the last it handled):
-- {how many it has been told in all, {entry id 0-<number>, {'d', data}}...}.
-- Fewer entries than numbers after ARGV[4]: the cap trimmed the rest.
local told = tonumber(redis.call('GET', P .. 'told:' .. ARGV[3]) or 0)
return {told, redis.call('XRANGE', P .. 'inbox:' .. ARGV[3],
                         '0-' .. (tonumber(ARGV[4]) + 1), '+')}
