-- Prelude of every cachefence script (embed.py prepends it).
-- Times come from the server's clock, never a client's, so hosts with skewed
-- clocks agree on freshness. Redis 6.2 needs effects replication for writes
-- after TIME; newer servers always do it and keep the call as a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- FORMAT_VERSION, MS_MAX, HOST_MAX, INLINE_MAX, the counter, verdict and
-- field names (STAT_*, VERDICT_*, META_*, FIELD_*) and ENTRY_META_LIST (the
-- metadata fields, in the order entry.c decodes them) come from
-- src/policy_names.h: embed.py puts them before this prelude.
local META = ENTRY_META_LIST

-- Read an entry hash. Returns meta (values in META order), out, err (both
-- false when too large to inline) and the run id, or nil when the key is
-- absent, not a hash, of another format version, or does not decode: every
-- such entry is a miss, never an error. HSTRLEN checks the sizes without
-- copying the bytes. The run id ('rid': the token of the leader that stored
-- it, '' for an entry written before it existed) comes only with a value
-- too large to inline: the client fetches those bytes with a later HMGET,
-- and a run id that differs there means another run replaced the entry.
local function read_entry(key)
  if redis.call('TYPE', key).ok ~= 'hash' then return nil end
  local m = redis.call('HMGET', key, unpack(META))
  if m[1] ~= tostring(FORMAT_VERSION) then return nil end
  -- the limits entry_meta_decode() in entry.c checks: what it refuses must
  -- be a miss here, or it would fail every call until the entry expires
  for i = 2, 9 do
    if type(m[i]) ~= 'string' or not string.match(m[i], '^%d+$') or #m[i] > 16 or
       tonumber(m[i]) > MS_MAX then
      return nil
    end
  end
  if tonumber(m[2]) > 255 then return nil end
  if m[10] == false then m[10] = '' end
  if #m[10] >= HOST_MAX then return nil end
  -- the signature: checked by the client; one that cannot be one is none
  if m[11] == false or #m[11] > SIG_MAX then m[11] = '' end
  -- the codec ('' or zstd:RAWOUT:RAWERR): read by the client; one it cannot
  -- read is a miss there (entry_meta_decode)
  if m[12] == false then m[12] = '' end
  if m[12] ~= '' and (#m[12] > 44 or not string.match(m[12], '^zstd:%d+:%d+$')) then
    return nil
  end
  local olen, elen = redis.call('HSTRLEN', key, FIELD_OUT), redis.call('HSTRLEN', key, FIELD_ERR)
  if olen ~= tonumber(m[8]) or elen ~= tonumber(m[9]) then return nil end
  if olen + elen > INLINE_MAX then
    return m, false, false, redis.call('HGET', key, FIELD_RUN_ID) or ''
  end
  local body = redis.call('HMGET', key, FIELD_OUT, FIELD_ERR)
  return m, body[1] or '', body[2] or '', ''
end

-- Age of an entry on the server clock; a created-at in the future (a
-- failover to a server whose clock is behind) counts as brand new.
local function entry_age(m, now)
  local age = now - tonumber(m[3])
  if age < 0 then age = 0 end
  return age
end

-- The lock's value starts with the holder's token (TOKEN_LEN digits); compare-and-set
-- operations match on it.
local function lock_is(lock_value, token)
  return lock_value and string.sub(lock_value, 1, TOKEN_LEN) == token
end

-- File member under the run sets KEYS[first..] (NS:{%W}:run:TAG: the keys
-- whose leader runs with the tag and has not finished), and keep each at
-- least lease ms (renew keeps extending it): invalidate --tag walks them
-- beside the tag sets and deletes each member's lock, which fences the run
-- out before it has stored anything. finish and abandon take the member out.
local function pending_tags(first, member, lease)
  for i = first, #KEYS do
    redis.call('SADD', KEYS[i], member)
    if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
  end
end
