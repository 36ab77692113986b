-- abandon: release our lock without a result (COMMAND was interrupted), and
-- wake the waiters so one of them takes over at once.
-- KEYS[1] lock; ARGV[1] token, ARGV[2] channel. Returns 1 released, 0 not ours.
local released = 0
if lock_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  redis.call('DEL', KEYS[1])
  released = 1
end
redis.call('PUBLISH', ARGV[2], ARGV[1])
return released
