-- takeover: the lock's holder is gone (its connection closed, or its client
-- id is from another lifetime of the server: see holder_gone in
-- store_redis.c), so take its lock at once instead of waiting out its lease.
-- Only if the lock still holds the very value the waiter judged: a holder
-- that renewed from a new connection since, or another waiter that took
-- over first, keeps it.
-- KEYS[1] lock, KEYS[2] stats, KEYS[3..] the run sets of our tags (see
-- pending_tags); ARGV[1] the holder's value as seen, ARGV[2] our lock value,
-- ARGV[3] lease ms, ARGV[4] the user key.
-- Returns 1 the lock is ours now, 0 it changed hands since.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
pending_tags(3, ARGV[4], tonumber(ARGV[3]))
redis.pcall('HINCRBY', KEYS[2], STAT_TAKEOVERS_GONE, 1)
return 1
