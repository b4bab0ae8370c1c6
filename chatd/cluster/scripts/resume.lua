-- Node ARGV[3] reconnected following room ARGV[4], having delivered its
-- events up to ev ARGV[5], numbered while Redis ran as ARGV[6] (INFO's
-- run_id): {from, {entry id, {'d', data}}..., 1 if Redis went back, this
-- run}, the room's stream from ev `from` + 1 on.  `from` is ARGV[5] unless
-- Redis restarted since and went back below it (without its last writes):
-- then, if the room was written since, where its events stood at that
-- first write (the numbers after it are new events), else ARGV[5] and the
-- room's numbering set on to it.  A node whose lease is gone (reaped) reads
-- nothing: it is being fenced.
local room, seen = ARGV[4], tonumber(ARGV[5])
local run = redis.call('GET', P .. 'run') or ''
if not redis.call('ZSCORE', P .. 'nodes', ARGV[3]) then return {seen, {}, 0, run} end
local from, back = seen, 0
if run ~= ARGV[6] then
  local low = renumbered_from('ev:' .. room, seen, ARGV[6])
  if low then
    from, back = low, 1
  elseif current(room) < seen then
    redis.call('SET', P .. 'ev:' .. room, seen)
    back = 1
  end
end
return {from, redis.call('XRANGE', P .. 'log:' .. room, '0-' .. (from + 1), '+'), back, run}
