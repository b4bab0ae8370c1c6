-- The one numbering point of a room (CLUSTER.md): session ARGV[3] says in room
-- ARGV[5], labelled ARGV[4]; ARGV[6] is the msg's JSON without its closing
-- brace, id and ts, which are added here.  {'ok'}, or {'not_in_room', the
-- room's latest ev} (the node answers it after the events up to that one).
local sid, tag, room = ARGV[3], ARGV[4], ARGV[5]
if not redis.call('ZSCORE', members(room), sid) then return {'not_in_room', current(room)} end
local id = counter(P .. 'seq:' .. room)
emit(room, sid, tag, id, ARGV[6] .. ',"id":' .. id .. ',"ts":' .. now_ts() .. '}')
return {'ok'}
