-- get: any stored entry, stale included unless ARGV[1] is "1"; the same
-- reply shape as lookup's hits, so one reader streams both.
-- KEYS[1] entry. Returns {'hit'|'stale', age, meta, out, err, 0, run id} or {'none'}.
local m, out, err, rid = read_entry(KEYS[1])
if not m then return {'none'} end
local age = entry_age(m, now_ms())
if age < tonumber(m[4]) then return {VERDICT_HIT, age, m, out, err, 0, rid} end
if ARGV[1] == '1' then return {'none'} end
return {VERDICT_STALE, age, m, out, err, 0, rid}
