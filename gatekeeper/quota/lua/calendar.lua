-- Calendar windows on Redis' clock: the same arithmetic as gatekeeper/quota/windows.py.
-- Granularity codes: 1 second, 2 minute, 3 hour, 4 day, 5 month, 6 year. Multiples count from
-- the Unix epoch (1970-01-01T00:00:00Z). All times are whole Unix seconds, in UTC.

local FIXED = {1, 60, 3600, 86400}

-- Days since the epoch of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Year and month of a day number (H. Hinnant's civil_from_days, without the day).
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m
end

local function month_start(index)
  local y = 1970 + math.floor(index / 12)
  local m = index % 12 + 1
  return days_from_civil(y, m, 1) * 86400
end

-- The window [start, finish) holding `now` (seconds), as two whole numbers of seconds.
local function window_bounds(now, code, multiples)
  now = math.floor(now)
  if code <= 4 then
    local length = FIXED[code] * multiples
    local start = math.floor(now / length) * length
    return start, start + length
  end
  local y, m = civil_from_days(math.floor(now / 86400))
  if code == 5 then
    local index = (y - 1970) * 12 + m - 1
    local first = index - index % multiples
    return month_start(first), month_start(first + multiples)
  end
  local first_year = y - (y - 1970) % multiples
  return month_start((first_year - 1970) * 12), month_start((first_year + multiples - 1970) * 12)
end

local function fmt(x)
  return string.format("%.17g", x)
end

local function whole(x)
  return string.format("%.0f", x)
end

-- Redis' clock in microseconds. Redis >= 5 replicates a script's effects, not the script, so
-- reading TIME before writing is allowed; the call below is for Redis 3.2 and 4.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call("TIME")
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now_s = now_us / 1000000

-- Each quota is one string key, "<a> <b>", read with GET and written with one SET:
--   bucket  "<tokens> <updated, µs>"   expires when it would be full again (full = no key)
--   window  "<used> <window start, s>" expires when its window ends

local function read_pair(key)
  local stored = redis.call("GET", key)
  if not stored then return nil end
  local a, b = string.match(stored, "^(%S+) (%S+)$")
  return tonumber(a), tonumber(b)
end

-- A bucket's level now: its stored tokens plus the refill since, capped at capacity.
local function bucket_level(key, capacity, rate)
  local tokens, updated = read_pair(key)
  if not tokens then return capacity end
  local elapsed = math.max(0, now_us - updated)
  return math.min(capacity, tokens + elapsed * rate / 1000000)
end

local function put_bucket(key, capacity, rate, level)
  local value = fmt(level) .. " " .. whole(now_us)
  if rate > 0 then
    local ttl = math.max(1, math.ceil((capacity - level) / rate * 1000))
    redis.call("SET", key, value, "PX", ttl)
  else
    redis.call("SET", key, value)  -- a fixed allowance never refills: it is kept
  end
end

-- A window's count in the window that starts at `start` (0 when the stored one is older).
local function window_used(key, start)
  local used, stored_start = read_pair(key)
  if not used or stored_start ~= start then return 0 end
  return used
end

local function put_window(key, start, finish, used)
  local ttl = math.max(1, math.ceil(finish * 1000 - now_us / 1000))
  redis.call("SET", key, fmt(used) .. " " .. whole(start), "PX", ttl)
end
