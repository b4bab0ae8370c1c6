-- Session ARGV[3] ended (reason ARGV[4] on its `left`s): 1, or 0 if it was
-- gone already (replaced, reaped).
return drop(ARGV[3], ARGV[4])
