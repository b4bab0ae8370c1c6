-- A private msg from session ARGV[3] (label ARGV[4]) to the user named
-- ARGV[5] (casefolded), text ARGV[6] as JSON: a connected user, or an
-- account that is not connected (kept for it: its welcome lists the pair).
-- Numbered per pair of identities, kept in the pair's capped stream, noted
-- in the accounts' partners, told to the recipient's node (if connected)
-- and the sender's as "dm rsid sid tag payload" (rsid '-' for an account
-- not connected).  {'ok'}, {'no_such_user'} or {'gone'}.
local sid, tag = ARGV[3], ARGV[4]
local s = redis.call('HMGET', P .. 'sess:' .. sid, 'name', 'identity', 'account', 'node')
if not s[1] then return {'gone'} end
local r = peer(ARGV[5])
if not r then return {'no_such_user'} end
local rsid, rname, ridentity, raccount, rnode = r[1] or '-', r[2], r[3], r[4], r[5]
local p = pair(s[2], ridentity)
local id = counter(P .. 'pseq:' .. p)
local payload = '{"type":"msg","to":' .. cjson.encode(rname) .. ',"from":' ..
                cjson.encode(s[1]) .. ',"text":' .. ARGV[6] .. ',"id":' .. id ..
                ',"ts":' .. now_ts() .. '}'
redis.call('XADD', P .. 'plog:' .. p, 'MAXLEN', '~', CAP, '0-' .. id, 'p', payload)
if s[3] == '1' then note_partner(s[2], ridentity, rname) end
if raccount then note_partner(ridentity, s[2], s[1]) end
local data = 'dm ' .. rsid .. ' ' .. sid .. ' ' .. tag .. ' ' .. payload
if rnode then tell(rnode, data) end
if s[4] ~= rnode then tell(s[4], data) end
return {'ok'}
