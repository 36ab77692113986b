-- invalidate: delete an entry and its lock. Deleting the lock fences out a
-- refresh in flight: its finish finds the token gone and stores nothing.
-- KEYS[1] entry, KEYS[2] lock; ARGV[1] channel. Returns 1 deleted, 0 absent.
local deleted = redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2]) > 0 then
  redis.pcall('PUBLISH', ARGV[1], '') -- waiters also poll: see finish.lua
end
return deleted
