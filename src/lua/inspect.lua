-- inspect: an entry's metadata (not its bytes), its command and its lock.
-- KEYS[1] entry, KEYS[2] lock.
-- Returns {age or -1, meta or {}, lock value or "", lock pttl, command or ""}
-- The command ('cmd', see entry.h) is read here only, never on a hit; an
-- entry written before it existed has none, and reads as "".
local now = now_ms()
local age, meta, cmd = -1, {}, ''
local m = read_entry(KEYS[1])
if m then
  age, meta = entry_age(m, now), m
  cmd = redis.call('HGET', KEYS[1], FIELD_CMD) or ''
  if #cmd > CMD_MAX then cmd = string.sub(cmd, 1, CMD_MAX) end
end
local holder = redis.call('GET', KEYS[2]) or ''
return {age, meta, holder, redis.call('PTTL', KEYS[2]), cmd}
