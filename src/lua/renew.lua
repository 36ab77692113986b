-- renew: extend the lease, only if the lock is still ours, and the life of
-- the run sets of its tags with it (see pending_tags).
-- KEYS[1] lock, KEYS[2..] the run sets of the run's tags; ARGV[1] token, ARGV[2] lease
-- ms, ARGV[3] the user key. Returns 1 held, 0 lost.
if lock_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  pending_tags(2, ARGV[3], tonumber(ARGV[2]))
  return 1
end
return 0
