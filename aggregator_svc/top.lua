-- Read-only: the running top-k of a session (same ordering as vote.lua), without updating it.
-- KEYS as vote.lua; ARGV: top_k. Returns {t_last or "", {piece, tally, ...}, pos of top-1 or "", sum of tallies}.
local top_k = tonumber(ARGV[1])
local fmt = "%.17g"
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
return {redis.call("HGET", KEYS[2], "t_last") or "", top, pos, string.format(fmt, total)}
