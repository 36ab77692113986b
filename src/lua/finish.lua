-- finish: a leader's result, fenced by its token in the same script that
-- makes it visible, so a paused or invalidated ex-leader can never overwrite
-- anything. For a large result the leader has already written the whole
-- entry, bytes included, to its own stage key with plain commands (streamed:
-- no large value passes through Lua); a small one (at most CARRY_MAX bytes)
-- comes with this call, which writes the stage itself: one round trip. Then
-- the script renames the stage into place, an O(1) step.
-- KEYS[1] entry, KEYS[2] lock, KEYS[3] this round's result (for waiters),
-- KEYS[4] stats, KEYS[5] the stage, then ARGV[7] tag sets to file the entry
-- under, then as many run sets of the same tags (see pending_tags)
-- ARGV[1] token, ARGV[2] "1" to store as the entry, "0" for waiters only,
-- ARGV[3] entry expiry ms, ARGV[4] round-result expiry ms, ARGV[5] channel,
-- ARGV[6] the user key (tag members), ARGV[7] the number of tags, ARGV[8]
-- "1" when the server restarted (another run id) since we held the lock:
-- an absent lock vanished with the restart and nobody took it since, so
-- the result is still the newest (see renew.lua); ARGV[9] the number of
-- arguments after it: the entry's fields and values for the stage, or 0
-- when the leader staged it.
-- Returns 1 stored, 0 fenced out.
-- A finish is sent again after a connection broke before its reply came
-- (store_redis.c); if the first one ran, the stored result names our token
-- as its run id, and the answer is the same: stored.
local target, expiry = KEYS[1], ARGV[3]
if ARGV[2] ~= '1' then target, expiry = KEYS[3], ARGV[4] end
local holder = redis.call('GET', KEYS[2])
if not holder and redis.call('EXISTS', KEYS[5]) == 0 and
   redis.call('TYPE', target).ok == 'hash' and redis.call('HGET', target, FIELD_RUN_ID) == ARGV[1] then
  return 1
end
if not (lock_is(holder, ARGV[1]) or (not holder and ARGV[8] == '1')) then
  redis.call('DEL', KEYS[5])
  redis.call('HINCRBY', KEYS[4], STAT_LOST_LOCK, 1)
  redis.pcall('PUBLISH', ARGV[5], ARGV[1])
  return 0
end
local nfields = tonumber(ARGV[9])
if nfields > 0 then
  redis.call('HSET', KEYS[5], unpack(ARGV, 10, 9 + nfields))
end
if redis.call('EXISTS', KEYS[5]) == 0 then
  return redis.error_reply('the staged result is gone (written too long before finish)')
end

redis.call('HSET', KEYS[5], META_CREATED, tostring(now_ms()))
redis.call('RENAME', KEYS[5], target)
redis.call('PEXPIRE', target, expiry)

-- a tag set lives as long as its longest-lived entry, so a tag whose
-- entries have all expired costs nothing
local ntags = tonumber(ARGV[7])
if ARGV[2] == '1' then
  for i = 6, 5 + ntags do
    redis.call('SADD', KEYS[i], ARGV[6])
    if redis.call('PTTL', KEYS[i]) < tonumber(expiry) then
      redis.call('PEXPIRE', KEYS[i], expiry)
    end
  end
end
-- the run is over: the lock was ours, so no other run of the key is pending
for i = 6 + ntags, #KEYS do redis.call('SREM', KEYS[i], ARGV[6]) end
redis.call('DEL', KEYS[2])
-- The wake-up: our token, and when the result is small (CARRY_MAX), the
-- result itself, as the reply a waiter's lookup would give for it (a
-- 'done' verdict, in RESP): a woken waiter writes it at once, with no
-- round trip to fetch it (redis_wait). Sent only from here, after the
-- fence: only a result that was stored travels.
local function resp(v)
  if type(v) == 'table' then
    local parts = {'*' .. #v .. '\r\n'}
    for i = 1, #v do parts[i + 1] = resp(v[i]) end
    return table.concat(parts)
  end
  if type(v) == 'number' then return ':' .. v .. '\r\n' end
  return '$' .. #v .. '\r\n' .. v .. '\r\n'
end
-- The reply's run id says whether the result was stored as the entry (our
-- token) or is this round's only (''): a waiter served a stored one counts
-- a hit, as its lookup would have.
local wake = ARGV[1]
if nfields > 0 then -- a result the leader saw small enough (CARRY_MAX)
  local m, out, err = read_entry(target)
  if m and out and #out + #err <= CARRY_MAX then
    local rid = ''
    if ARGV[2] == '1' then rid = ARGV[1] end
    wake = wake .. resp({VERDICT_DONE, 0, m, out, err, 0, rid})
  end
end
-- pcall: a user who may not publish has still stored the result; its
-- waiters find it when they next look (ping names the missing permission).
-- A waiter the carried result serves counts its own hit as it leaves
-- (count_leaving in store_redis.c), when the run id says it was stored.
redis.pcall('PUBLISH', ARGV[5], wake)
return 1
