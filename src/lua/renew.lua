-- renew: extend the lease, only if the lock is still ours, and the life of
-- the run sets of its tags with it (see pending_tags). The value is set
-- anew: it names the connection we hold the lock from (client id and server
-- run id), which changes when we reconnect, and waiters judge whether the
-- holder is gone by it.
-- KEYS[1] lock, KEYS[2..] the run sets of the run's tags; ARGV[1] token, ARGV[2] lease
-- ms, ARGV[3] the user key, ARGV[4] the lock value, ARGV[5] "1" when the
-- server restarted (another run id) since we held the lock: an absent lock
-- then vanished with the restart, not by invalidate or expiry, and is ours
-- to take back if nobody took it since.
-- Returns 1 held, 0 lost.
local v = redis.call('GET', KEYS[1])
if lock_is(v, ARGV[1]) or (not v and ARGV[5] == '1') then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[2])
  pending_tags(2, ARGV[3], tonumber(ARGV[2]))
  return 1
end
return 0
