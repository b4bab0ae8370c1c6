-- Messages of room ARGV[3] from its stream, oldest first: the first ARGV[5]
-- with an id above ARGV[4], or the newest ARGV[5] when ARGV[4] is ''.
-- Presence entries (msg id 0) are skipped.
local log, since, limit = P .. 'log:' .. ARGV[3], ARGV[4], tonumber(ARGV[5])
local out = {}
local function msg(entry)
  local id, payload = string.match(entry[2][2], '^%d+ %S+ %d+ (%d+) (.*)$')
  return tonumber(id), payload
end
if since == '' then
  for _, entry in ipairs(redis.call('XREVRANGE', log, '+', '-')) do
    local id, payload = msg(entry)
    if id > 0 then
      table.insert(out, 1, payload)
      if #out == limit then break end
    end
  end
else
  since = tonumber(since)
  for _, entry in ipairs(redis.call('XRANGE', log, '-', '+')) do
    local id, payload = msg(entry)
    if id > since then
      out[#out + 1] = payload
      if #out == limit then break end
    end
  end
end
return out
