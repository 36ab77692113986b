-- ping: run, on probe keys of the namespace, every command the other scripts
-- run, so that ping can name a command or a permission a run would miss (an
-- ACL user without a command, keys or channels) before a run fails on it.
-- KEYS[1], KEYS[2] probe keys (both deleted after); ARGV[1] a channel of
-- the namespace. Returns '' when every command ran, else the first that did
-- not and the server's error, as "COMMAND\nerror".
local k, k2 = KEYS[1], KEYS[2]
local steps = {
  {'TIME'},
  {'SET', k, 'probe', 'PX', '10000'}, {'GET', k}, {'PTTL', k}, {'PEXPIRE', k, '10000'},
  {'TYPE', k}, {'EXISTS', k}, {'RENAME', k, k2}, {'DEL', k2},
  {'HSET', k, 'f', 'v'}, {'HMGET', k, 'f'}, {'HGET', k, 'f'}, {'HSTRLEN', k, 'f'},
  {'HINCRBY', k, 'n', '1'}, {'HGETALL', k}, {'DEL', k},
  {'SADD', k, 'm'}, {'SREM', k, 'm'}, {'DEL', k},
  {'PUBLISH', ARGV[1], ''},
}
for _, step in ipairs(steps) do
  local r = redis.pcall(unpack(step))
  if type(r) == 'table' and r.err then
    redis.pcall('DEL', k, k2)
    return step[1] .. '\n' .. r.err
  end
end
return ''
