-- lookup: the whole decision of one call, in one round trip.
-- KEYS[1] entry, KEYS[2] lock, KEYS[3] round result of the awaited leader,
-- KEYS[4] the namespace's stats hash (counted here: no extra round trip),
-- KEYS[5..] the run sets of the run's tags (see pending_tags)
-- ARGV[1] our token, ARGV[2] lease ms, ARGV[3] lock value to set,
-- ARGV[4] "1" when we are waiting on a leader (KEYS[3] is meaningful),
-- ARGV[5] "1" to ignore the entry (--refresh), ARGV[6] beta, ARGV[7] a
-- uniform draw in (0, 1] times 2^53, an integer (scripts get no usable
-- randomness of their own; entry_xfetch_args() in entry.c),
-- ARGV[8] the user key
-- Returns {'hit', age, meta, out, err, refresh, run id}
--       | {'stale', age, meta, out, err, refresh, run id}
--       | {'done', 0, meta, out, err, 0, run id} | {'bypass'} | {'lead', fallback}
--       | {'wait', pttl, holder}
local now = now_ms()

-- take the lock if it is free (or already ours); returns true (and true
-- when it was ours already: a lookup sent again, or after takeover.lua),
-- or false and the holder.
-- A lock taken files the key in the run sets of its tags at once
-- (pending_tags), so that invalidate --tag finds and fences a run that has
-- stored nothing yet.
local function take_lock()
  local holder = redis.call('GET', KEYS[2])
  if not holder then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
    pending_tags(5, ARGV[8], tonumber(ARGV[2]))
    return true
  end
  if lock_is(holder, ARGV[1]) then return true, nil, true end
  return false, holder
end

local function flag(b) if b then return 1 end return 0 end
local function count(name) redis.call('HINCRBY', KEYS[4], name, 1) end
local waiting = ARGV[4] == '1'

-- The decision below mirrors policy_decide() in src/policy.c step for
-- step (tests/decisions.h holds both to one table of cases): change both.
-- Where policy.c is told the lock's state, this script asks for the lock
-- (take_lock) at the point policy.c sets take_lock, which is atomic here.

-- the lock is taken: a waiter that takes it from nobody (not from itself)
-- took over from a leader whose lease ran out (takeover.lua counts the
-- takeovers from a holder whose connection is gone: the lock is ours then)
local function lead(fallback, had)
  count(STAT_MISSES)
  if waiting and not had then count(STAT_TAKEOVERS) end
  return {VERDICT_LEAD, fallback}
end

if ARGV[5] ~= '1' then
  local m, out, err, rid = read_entry(KEYS[1])
  if m then
    -- a created-at in the future counts as brand new (entry_age)
    local age = entry_age(m, now)
    local ttl, sw, se, dt = tonumber(m[4]), tonumber(m[5]), tonumber(m[6]), tonumber(m[7])
    -- entry_freshness() in entry.c
    if age < ttl then
      local beta, draw = tonumber(ARGV[6]), tonumber(ARGV[7]) / 9007199254740992
      local early = false
      -- XFetch: entry_xfetch_fires() in entry.c
      if beta > 0 and dt > 0 and draw > 0 and draw <= 1 and
         age + dt * beta * -math.log(draw) >= ttl then
        early = take_lock()
      end
      count(STAT_HITS)
      if early then count(STAT_EARLY) end
      return {VERDICT_HIT, age, m, out, err, flag(early), rid}
    end
    if age < ttl + sw then
      local refresh = take_lock()
      count(STAT_STALE)
      if refresh then count(STAT_BACKGROUND) end
      return {VERDICT_STALE, age, m, out, err, flag(refresh), rid}
    end
    if age < ttl + se then
      -- stale-if-error: refresh now, and serve this entry if that fails;
      -- while someone else refreshes, or while a failed refresh of this
      -- entry holds off the next (the back-off that abandon.lua sets, until
      -- a server time), serve it at once, without the lock
      local bo = tonumber(redis.call('HGET', KEYS[1], FIELD_BACKOFF))
      if bo == nil or now >= bo then
        local got, _, had = take_lock()
        if got then return lead(1, had) end
      end
      count(STAT_STALE)
      return {VERDICT_STALE, age, m, out, err, 0, rid}
    end
  end
end

if waiting then
  local dm, dout, derr, drid = read_entry(KEYS[3])
  if dm then return {VERDICT_DONE, 0, dm, dout, derr, 0, drid} end
  -- the awaited leader's output was over --max-size (abandon.lua)
  if redis.call('TYPE', KEYS[3]).ok == 'string' and redis.call('GET', KEYS[3]) == MARK_TOO_LARGE then
    return {VERDICT_BYPASS}
  end
end

local got, holder, had = take_lock()
if got then return lead(0, had) end
if not waiting then count(STAT_WAITS) end
return {VERDICT_WAIT, redis.call('PTTL', KEYS[2]), holder}
