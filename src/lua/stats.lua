-- stats: the namespace's counters, zeroed after reading with ARGV[1] "1",
-- in one step so no count falls between the read and the reset.
-- KEYS[1] stats. Returns HGETALL's flat list.
local all = redis.call('HGETALL', KEYS[1])
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
return all
