-- inspect: an entry's metadata (not its bytes) and its lock.
-- KEYS[1] entry, KEYS[2] lock.
-- Returns {age or -1, meta or {}, lock value or "", lock pttl}
local now = now_ms()
local age, meta = -1, {}
local m = read_entry(KEYS[1])
if m then age, meta = entry_age(m, now), m end
local holder = redis.call('GET', KEYS[2]) or ''
return {age, meta, holder, redis.call('PTTL', KEYS[2])}
