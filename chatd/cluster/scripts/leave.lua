-- Session ARGV[3] leaves room ARGV[4]: {'ok', ev} or {'not_in_room'}.
local sid, room = ARGV[3], ARGV[4]
local name = redis.call('HGET', P .. 'sess:' .. sid, 'name')
if not name or not redis.call('ZSCORE', members(room), sid) then
  return {'not_in_room'}
end
return {'ok', part(room, sid, name, '')}
