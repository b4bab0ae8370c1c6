-- What node ARGV[3] was told after the number ARGV[4] (the last it handled,
-- numbered while Redis ran as ARGV[5]): {from, how many it has been told in
-- all, {entry id 0-<number>, {'d', data}}..., 1 if Redis went back, this
-- run}, the entries after `from`.  `from` is ARGV[4] unless Redis restarted
-- since and went back below it (as in resume.lua): then the number the
-- inbox stood at when first written since (what follows is new), or, if it
-- was not written since, ARGV[4] and the numbering set on to it.  Fewer
-- entries than numbers after `from`: the cap trimmed the rest.  A node
-- whose lease is gone (reaped: its inbox deleted) reads nothing.
local node, seen = ARGV[3], tonumber(ARGV[4])
local run = redis.call('GET', P .. 'run') or ''
if not redis.call('ZSCORE', P .. 'nodes', node) then return {seen, seen, {}, 0, run} end
local told = tonumber(redis.call('GET', P .. 'told:' .. node) or 0)
local from, back = seen, 0
if run ~= ARGV[5] then
  local low = renumbered_from('told:' .. node, seen, ARGV[5])
  if low then
    from, back = low, 1
  elseif told < seen then
    redis.call('SET', P .. 'told:' .. node, seen)
    told, back = seen, 1
  end
end
return {from, told, redis.call('XRANGE', P .. 'inbox:' .. node, '0-' .. (from + 1), '+'),
        back, run}
