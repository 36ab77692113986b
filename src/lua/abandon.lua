-- abandon: release our lock without a result (COMMAND was interrupted, or
-- its output was too large to store), and wake the waiters so one of them
-- takes over at once.
-- KEYS[1] lock, KEYS[2] stats; ARGV[1] token, ARGV[2] channel, ARGV[3] the
-- counter to add one to, or "". Returns 1 released, 0 not ours.
local released = 0
if lock_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  redis.call('DEL', KEYS[1])
  released = 1
end
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
redis.call('PUBLISH', ARGV[2], ARGV[1])
return released
