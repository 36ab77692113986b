-- finish: a leader's result, fenced by its token in the same script that
-- writes, so a paused or invalidated ex-leader can never overwrite anything.
-- KEYS[1] entry, KEYS[2] lock, KEYS[3] this round's result (for waiters),
-- KEYS[4] stats, KEYS[5..] tag sets to file the entry under
-- ARGV[1] token, ARGV[2] "1" to store as the entry, "0" for waiters only,
-- ARGV[3] entry expiry ms, ARGV[4] round-result expiry ms, ARGV[5] channel,
-- ARGV[6..15] meta values in META order (ct is replaced by the server's now),
-- ARGV[16] stdout, ARGV[17] stderr, ARGV[18] the user key (tag members).
-- Returns 1 stored, 0 fenced out.
if not lock_is(redis.call('GET', KEYS[2]), ARGV[1]) then
  redis.call('HINCRBY', KEYS[4], 'stores_skipped_lost_lock', 1)
  redis.call('PUBLISH', ARGV[5], ARGV[1])
  return 0
end
local fields = {}
for i, name in ipairs(META) do
  local value = ARGV[5 + i]
  if name == 'ct' then value = tostring(now_ms()) end
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
fields[#fields + 1] = 'out'
fields[#fields + 1] = ARGV[16]
fields[#fields + 1] = 'err'
fields[#fields + 1] = ARGV[17]

local target, expiry = KEYS[1], ARGV[3]
if ARGV[2] ~= '1' then target, expiry = KEYS[3], ARGV[4] end
redis.call('DEL', target)
redis.call('HSET', target, unpack(fields))
redis.call('PEXPIRE', target, expiry)

-- a tag set lives as long as its longest-lived entry, so a tag whose
-- entries have all expired costs nothing
if ARGV[2] == '1' then
  for i = 5, #KEYS do
    redis.call('SADD', KEYS[i], ARGV[18])
    if redis.call('PTTL', KEYS[i]) < tonumber(expiry) then
      redis.call('PEXPIRE', KEYS[i], expiry)
    end
  end
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
