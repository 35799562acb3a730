-- Compare-and-set of one session's engine state (aggregator_svc.store.EngineStates.put_many).
-- KEYS[1] the session's hash {state, version, library, write}; ARGV: version read (0 = none), new
-- state, ttl_s, the session's library name, this write's id (random, one per write).
-- Writes state and version + 1 only if the stored version is still ARGV[1]; returns 1 if written,
-- 0 if another writer got there first (nothing changed). A write already applied under the same id
-- (its reply was lost and the client sent it again) returns 1 and changes nothing.
local v = tonumber(redis.call("HGET", KEYS[1], "version") or "0")
if v ~= tonumber(ARGV[1]) then
  if v == tonumber(ARGV[1]) + 1 and redis.call("HGET", KEYS[1], "write") == ARGV[5] then
    return 1
  end
  return 0
end
redis.call("HSET", KEYS[1], "state", ARGV[2], "version", v + 1, "library", ARGV[4], "write", ARGV[5])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call("EXPIRE", KEYS[1], ttl)
end
return 1
