-- A private msg from session ARGV[3] (label ARGV[4]) to the user named
-- ARGV[5] (casefolded), text ARGV[6] as JSON.  Numbered per pair of
-- identities, kept in the pair's capped stream, published to the
-- recipient's node and the sender's ("dm rsid sid tag payload").
-- {'ok'}, {'no_such_user'} or {'gone'}.
local sid, tag = ARGV[3], ARGV[4]
local ss = P .. 'sess:' .. sid
local from = redis.call('HGET', ss, 'name')
if not from then return {'gone'} end
local rsid = redis.call('HGET', P .. 'users', ARGV[5])
if not rsid then return {'no_such_user'} end
local rs = P .. 'sess:' .. rsid
local a, b = redis.call('HGET', ss, 'identity'), redis.call('HGET', rs, 'identity')
local pair = a < b and (a .. '|' .. b) or (b .. '|' .. a)
local id = counter(P .. 'pseq:' .. pair)
local payload = '{"type":"msg","to":' .. cjson.encode(redis.call('HGET', rs, 'name')) ..
                ',"from":' .. cjson.encode(from) .. ',"text":' .. ARGV[6] ..
                ',"id":' .. id .. ',"ts":' .. now_ts() .. '}'
redis.call('XADD', P .. 'plog:' .. pair, 'MAXLEN', '~', CAP, '0-' .. id, 'p', payload)
local data = 'dm ' .. rsid .. ' ' .. sid .. ' ' .. tag .. ' ' .. payload
local rnode, snode = redis.call('HGET', rs, 'node'), redis.call('HGET', ss, 'node')
redis.call('PUBLISH', P .. 'node:' .. rnode, data)
if snode ~= rnode then redis.call('PUBLISH', P .. 'node:' .. snode, data) end
return {'ok'}
