-- Who is in room ARGV[3]: {'ok', room as spelled, names in join order...}
-- or {'no_such_room'}.
local room = ARGV[3]
local spelled = redis.call('HGET', P .. 'rooms', room)
if not spelled then return {'no_such_room'} end
local reply = {'ok', spelled}
for _, n in ipairs(names_of(redis.call('ZRANGE', members(room), 0, -1))) do
  reply[#reply + 1] = n
end
return reply
