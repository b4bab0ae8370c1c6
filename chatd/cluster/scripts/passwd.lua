-- Give the account named ARGV[3] (casefolded) the credential ARGV[5] if
-- its credential is still ARGV[4], the one the old password was checked
-- against ('' from the operator: whatever it is).
-- {'ok'}, {'auth_failed'} (changed meanwhile) or {'no_account'}.
local acct = account(ARGV[3])
if not acct then return {'no_account'} end
if ARGV[4] ~= '' and acct[2] ~= ARGV[4] then return {'auth_failed'} end
redis.call('HSET', P .. 'acct:' .. ARGV[3], 'cred', ARGV[5])
return {'ok'}
