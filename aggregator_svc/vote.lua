-- Atomic decayed vote update for one session; the semantics of scoreid.identify.tally.VoteTally:
--   tally[p] <- tally[p] * 2^(-(t - t_last) / half_life) + votes[p]
-- KEYS[1] tally hash (piece -> tally), KEYS[2] meta hash (t_last), KEYS[3] position hash (piece -> pos)
-- ARGV: t, half_life ("inf" = no decay), ttl_s, top_k, n_votes, piece_1, vote_1, ..., n_pos,
--       piece_1, pos_1, ...
-- Returns {t_last, {piece, tally, ...} best first (ties by piece id), pos of top-1 or "", total}.
-- Numbers are stored and returned as "%.17g" strings so doubles round-trip exactly.
local t = tonumber(ARGV[1])
local hl_s = ARGV[2]
local ttl = tonumber(ARGV[3])
local top_k = tonumber(ARGV[4])
local fmt = "%.17g"

local t_last_s = redis.call("HGET", KEYS[2], "t_last")
if t_last_s then
  local t_last = tonumber(t_last_s)
  if t < t_last then
    return redis.error_reply("time went backwards: " .. string.format(fmt, t) .. " < " .. t_last_s)
  end
  local dt = t - t_last
  if dt > 0 and hl_s ~= "inf" then
    local f = 2 ^ (-dt / tonumber(hl_s))
    if f ~= 1 then
      local flat = redis.call("HGETALL", KEYS[1])
      for i = 1, #flat, 2 do
        flat[i + 1] = string.format(fmt, tonumber(flat[i + 1]) * f)
      end
      if #flat > 0 then
        redis.call("HSET", KEYS[1], unpack(flat))
      end
    end
  end
end

local n = tonumber(ARGV[5])
local i = 6
for _ = 1, n do
  local p = ARGV[i]
  local v = tonumber(ARGV[i + 1])
  local old = tonumber(redis.call("HGET", KEYS[1], p) or "0")
  redis.call("HSET", KEYS[1], p, string.format(fmt, old + v))
  i = i + 2
end
local npos = tonumber(ARGV[i])
i = i + 1
for _ = 1, npos do
  redis.call("HSET", KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call("HSET", KEYS[2], "t_last", string.format(fmt, t), "half_life", hl_s)

local flat = redis.call("HGETALL", KEYS[1])
local items = {}
local total = 0
for j = 1, #flat, 2 do
  items[#items + 1] = {flat[j], tonumber(flat[j + 1])}
  total = total + items[#items][2]
end
table.sort(items, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end)
local top = {}
for j = 1, math.min(top_k, #items) do
  top[#top + 1] = items[j][1]
  top[#top + 1] = string.format(fmt, items[j][2])
end
local pos = ""
if #items > 0 then
  pos = redis.call("HGET", KEYS[3], items[1][1]) or ""
end
if ttl > 0 then
  for k = 1, 3 do
    if redis.call("EXISTS", KEYS[k]) == 1 then redis.call("EXPIRE", KEYS[k], ttl) end
  end
end
return {string.format(fmt, t), top, pos, string.format(fmt, total)}
