-- renew: extend the lease, only if the lock is still ours.
-- KEYS[1] lock; ARGV[1] token, ARGV[2] lease ms. Returns 1 held, 0 lost.
if lock_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
