-- abandon: release our lock without a result (COMMAND was interrupted, its
-- output was too large to store, the store refused it, or a stale-if-error
-- refresh failed), and wake the waiters so one of them takes over at once.
-- KEYS[1] lock, KEYS[2] stats, KEYS[3] this round's result (for waiters),
-- KEYS[4] the entry, KEYS[5..] the run sets of the run's tags (see
-- pending_tags);
-- ARGV[1] token, ARGV[2] channel, ARGV[3] the counter to add one to, or "",
-- ARGV[4] the user key, ARGV[5] "" or, for output over --max-size, how many
-- ms to leave the round's waiters the mark 'too-large' in KEYS[3]: their
-- lookup then tells them to run COMMAND themselves at once (nothing will be
-- stored), instead of taking the lock one after another; ARGV[6] "" or, for
-- a failed stale-if-error refresh, how many ms to hold off the next one:
-- the entry's field 'bo' gets the server time until which lookup.lua
-- serves it at once without the lock. A new entry (a success) has no 'bo',
-- so the back-off ends with the entry it was set for.
-- Returns 1 released, 0 not ours.
-- The counter and the marks may fail: a server out of memory refuses them
-- (they may grow memory) but still takes DEL and PUBLISH, and the waiters
-- must be woken either way.
local released = 0
if lock_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  -- only while the lock is ours is the entry the one whose refresh failed
  if ARGV[6] ~= '' and redis.call('TYPE', KEYS[4]).ok == 'hash' then
    redis.pcall('HSET', KEYS[4], FIELD_BACKOFF, tostring(now_ms() + tonumber(ARGV[6])))
  end
  redis.call('DEL', KEYS[1])
  for i = 5, #KEYS do redis.pcall('SREM', KEYS[i], ARGV[4]) end
  released = 1
end
if ARGV[5] ~= '' then redis.pcall('SET', KEYS[3], MARK_TOO_LARGE, 'PX', ARGV[5]) end
redis.pcall('PUBLISH', ARGV[2], ARGV[1]) -- waiters also poll: see finish.lua
if ARGV[3] ~= '' then redis.pcall('HINCRBY', KEYS[2], ARGV[3], 1) end
return released
