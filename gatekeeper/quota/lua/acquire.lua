-- Check every quota of one request and debit all of them, or none (calendar.lua comes first).
-- KEYS: one per quota. ARGV: 6 per quota: kind ("b" bucket, "w" window), capacity,
-- refill per second, cost, granularity code, multiples (the last two for windows).
-- Returns {admitted (1/0), now_us, then per quota: level or used, window start, window end}.
local n = #KEYS
local levels, starts, ends = {}, {}, {}
local admitted = 1

for i = 1, n do
  local a = (i - 1) * 6
  local kind, capacity = ARGV[a + 1], tonumber(ARGV[a + 2])
  local rate, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if kind == "w" then
    local start, finish = window_bounds(now_s, tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]))
    local used = window_used(KEYS[i], start)
    starts[i], ends[i], levels[i] = start, finish, used
    if cost > 0 and used + cost > capacity then admitted = 0 end
  else
    local level = bucket_level(KEYS[i], capacity, rate)
    levels[i] = level
    if cost > 0 and level < cost then admitted = 0 end
  end
end

if admitted == 1 then
  for i = 1, n do
    local a = (i - 1) * 6
    local capacity, rate = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local cost = tonumber(ARGV[a + 4])
    if ARGV[a + 1] == "w" then
      levels[i] = levels[i] + cost
      put_window(KEYS[i], starts[i], ends[i], levels[i])
    else
      levels[i] = levels[i] - cost
      put_bucket(KEYS[i], capacity, rate, levels[i])
    end
  end
end

local out = {admitted, whole(now_us)}
for i = 1, n do
  out[#out + 1] = fmt(levels[i])
  out[#out + 1] = starts[i] and whole(starts[i]) or ""
  out[#out + 1] = ends[i] and whole(ends[i]) or ""
end
return out
