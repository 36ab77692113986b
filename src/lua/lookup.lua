-- lookup: the whole decision of one call, in one round trip.
-- KEYS[1] entry, KEYS[2] lock, KEYS[3] round result of the awaited leader
-- ARGV[1] our token, ARGV[2] lease ms, ARGV[3] lock value to set,
-- ARGV[4] "1" when we are waiting on a leader (KEYS[3] is meaningful)
-- Returns {'hit', age, meta, out, err} | {'done', 0, meta, out, err}
--       | {'lead'} | {'wait', pttl, holder}
local now = now_ms()

local m, out, err = read_entry(KEYS[1])
if m then
  local age = entry_age(m, now)
  if age < tonumber(m[4]) then
    return {'hit', age, m, out, err}
  end
end

if ARGV[4] == '1' then
  local dm, dout, derr = read_entry(KEYS[3])
  if dm then return {'done', 0, dm, dout, derr} end
end

local holder = redis.call('GET', KEYS[2])
if not holder then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
  return {'lead'}
end
if lock_is(holder, ARGV[1]) then return {'lead'} end
return {'wait', redis.call('PTTL', KEYS[2]), holder}
