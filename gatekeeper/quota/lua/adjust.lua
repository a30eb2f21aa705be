-- Correct earlier debits after the response (calendar.lua comes first). Never refuses.
-- KEYS: one per quota. ARGV: one per quota, seven fields separated by single spaces: kind
-- ("b"/"w"), capacity, refill per second, delta (> 0 charges more, < 0 refunds), granularity
-- code, multiples, the window start the debit went into ("-" for buckets). A refund never lifts
-- a bucket above capacity or a window below zero; a charge may take a bucket below zero (a debt
-- later requests wait out).
for i = 1, #KEYS do
  local kind, capacity, rate, delta, code, multiples, charged =
    string.match(ARGV[i], "^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
  capacity, rate, delta = tonumber(capacity), tonumber(rate), tonumber(delta)
  if kind == "w" then
    local start, finish = window_bounds(now_s, tonumber(code), tonumber(multiples))
    charged = tonumber(charged)
    -- A refund for a window that is already over has nothing left to give back.
    if delta > 0 or charged == nil or charged == start then
      put_window(KEYS[i], start, finish, math.max(0, window_used(KEYS[i], start) + delta))
    end
  elseif delta ~= 0 then
    local level = bucket_level(KEYS[i], capacity, rate)
    put_bucket(KEYS[i], capacity, rate, math.min(capacity, level - delta))
  end
end
return #KEYS
