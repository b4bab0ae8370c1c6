-- Session ARGV[3] takes the name ARGV[5] (casefolded ARGV[6]); its rooms
-- within the presence limit get `renamed`, labelled ARGV[4] so that a node
-- tells each of its members once however many of those rooms they share.
-- {'ok'}, {'taken'}, {'registered'} (an account's name) or {'gone'}.
local sid, tag, name, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local s = P .. 'sess:' .. sid
local old = redis.call('HGET', s, 'name')
if not old then return {'gone'} end
if key ~= redis.call('HGET', s, 'key') and account(key) then return {'registered'} end
local holder = redis.call('HGET', P .. 'users', key)
if holder and holder ~= sid then return {'taken'} end
redis.call('HDEL', P .. 'users', redis.call('HGET', s, 'key'))
redis.call('HSET', P .. 'users', key, sid)
redis.call('HSET', s, 'name', name, 'key', key)
local payload = '{"type":"renamed","old":' .. cjson.encode(old) .. ',"new":' ..
                cjson.encode(name) .. '}'
for _, room in ipairs(redis.call('SMEMBERS', P .. 'in:' .. sid)) do
  if redis.call('ZCARD', members(room)) <= LIMIT then
    emit(room, sid, tag, 0, payload)
  end
end
return {'ok'}
