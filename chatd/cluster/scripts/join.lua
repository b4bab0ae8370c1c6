-- Session ARGV[3] joins room ARGV[4] (casefolded), spelled ARGV[5] if it
-- opens it; ARGV[6] max rooms open, ARGV[7] max rooms per user.
-- {'ok', room as first spelled, ev, 1 if newly a member, names...} or
-- {'gone'}, {'too_many_rooms'}, {'too_many_open'}.
local sid, room = ARGV[3], ARGV[4]
local name = redis.call('HGET', P .. 'sess:' .. sid, 'name')
if not name then return {'gone'} end
local spelled = redis.call('HGET', P .. 'rooms', room)
local ev, new = 0, 0
if redis.call('ZSCORE', members(room), sid) then
  ev = current(room)
else
  if redis.call('SCARD', P .. 'in:' .. sid) >= tonumber(ARGV[7]) then
    return {'too_many_rooms'}
  end
  if not spelled then
    if redis.call('HLEN', P .. 'rooms') >= tonumber(ARGV[6]) then
      return {'too_many_open'}
    end
    spelled = ARGV[5]
    redis.call('HSET', P .. 'rooms', room, spelled)
  end
  redis.call('ZADD', members(room), counter(P .. 'joins'), sid)
  redis.call('SADD', P .. 'in:' .. sid, room)
  ev = announce(room, sid, '{"type":"joined","room":' .. cjson.encode(spelled) ..
                           ',"name":' .. cjson.encode(name) .. '}')
  new = 1
end
local reply = {'ok', spelled, ev, new}
for _, n in ipairs(names_of(redis.call('ZRANGE', members(room), 0, -1))) do
  reply[#reply + 1] = n
end
return reply
