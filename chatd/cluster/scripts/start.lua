-- Where a node starts following room ARGV[3]: {its last ev, this run of
-- Redis}, so the node's later catch-up knows in which run it started.
return {current(ARGV[3]), redis.call('GET', P .. 'run') or ''}
