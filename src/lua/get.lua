-- get: any stored entry, stale included; the caller judges freshness.
-- KEYS[1] entry. Returns {age, meta, out, err} or {} when there is none.
local m, out, err = read_entry(KEYS[1])
if not m then return {} end
return {entry_age(m, now_ms()), m, out, err}
