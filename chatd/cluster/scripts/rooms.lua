-- Every open room: {name, members, name, members, ...}.
local reply = {}
local all = redis.call('HGETALL', P .. 'rooms')
for i = 1, #all, 2 do
  reply[#reply + 1] = all[i + 1]
  reply[#reply + 1] = redis.call('ZCARD', members(all[i]))
end
return reply
