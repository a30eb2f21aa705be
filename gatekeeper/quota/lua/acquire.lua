-- Check every quota of one request and debit all of them, or none (calendar.lua comes first).
-- KEYS: one per quota. ARGV: one per quota, six fields separated by single spaces (one
-- argument instead of six: redis-py encodes each argument of a call on its own): kind ("b"
-- bucket, "w" window), capacity, refill per second, cost, granularity code, multiples (the
-- last two for windows).
-- Returns {admitted (1/0), now_us, then per quota: level or used, window start, window end}.
local n = #KEYS
local kinds, capacities, rates, costs = {}, {}, {}, {}
local levels, starts, ends = {}, {}, {}
local admitted = 1

for i = 1, n do
  local kind, capacity, rate, cost, code, multiples =
    string.match(ARGV[i], "^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
  capacity, rate, cost = tonumber(capacity), tonumber(rate), tonumber(cost)
  kinds[i], capacities[i], rates[i], costs[i] = kind, capacity, rate, cost
  if kind == "w" then
    local start, finish = window_bounds(now_s, tonumber(code), tonumber(multiples))
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
    if kinds[i] == "w" then
      levels[i] = levels[i] + costs[i]
      put_window(KEYS[i], starts[i], ends[i], levels[i])
    else
      levels[i] = levels[i] - costs[i]
      put_bucket(KEYS[i], capacities[i], rates[i], levels[i])
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
