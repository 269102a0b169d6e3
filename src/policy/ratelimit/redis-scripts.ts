// The Lua run by redis-store.ts. Every decision is made inside Redis, in one script call, with Redis's own
// clock (TIME): instances whose clocks disagree still share one bucket (spring-cloud-gateway#2412), and no read-modify-write races between instances (dust-tt/dust#16066).
//
// A refused decision writes nothing, so refusals are never counted (README "Rate limiting"). Replies are integers
// (Lua numbers become integer replies by truncation), so the times are rounded up to whole milliseconds.

/** Integers per decision in DECIDE_LUA's reply: allowed (1/0), remaining, resetMs, retryAfterMs. */
export const REPLY_FIELDS = 4

/** ARGV entries per key: algorithm (0 token bucket, 1 sliding window), then two parameters. */
export const ARGS_PER_KEY = 3

// Shared head: before Redis 5, a script that read TIME had to opt in to effect replication before writing;
// from Redis 7 on the call is a no-op that is kept for compatibility.
const HEAD = `
if redis.replicate_commands ~= nil then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
`

/**
 * N decisions in one call: KEYS[i] is a limiter key (a hash), ARGV[3i-2..3i] its algorithm and parameters
 * (token bucket: ratePerMs, burst; sliding window: limit, windowMs). The whole call is atomic, so each of
 * its decisions is; they share one reading of TIME. Keys of one call share a Redis Cluster slot.
 */
export const DECIDE_LUA = `${HEAD}
local out = {}

-- Token bucket: fields tokens and ts (ms). Refill, then take one token if a whole one is there.
local function bucket(key, rate, burst)
  local s = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, last = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or last == nil then tokens, last = burst, now end
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end -- Redis's clock stepped back (failover): no refill, nothing lost
  tokens = math.min(burst, tokens + elapsed * rate)
  if tokens < 1 - 1e-9 then
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = math.ceil((burst - tokens) / rate)
    out[#out + 1] = math.max(1, math.ceil((1 - tokens) / rate))
    return
  end
  tokens = math.max(0, tokens - 1)
  local reset = math.ceil((burst - tokens) / rate)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.3f', now))
  -- Gone once the bucket would be full again: a missing key reads as a full bucket.
  redis.call('PEXPIRE', key, math.max(1, reset))
  out[#out + 1] = 1
  out[#out + 1] = math.floor(tokens + 1e-9)
  out[#out + 1] = reset
  out[#out + 1] = 0
end

-- Sliding-window counter: fields w (window index), cur, prev. The previous window counts in proportion to
-- how much of it still overlaps the sliding window that ends now.
local function window(key, limit, size)
  local w = math.floor(now / size)
  local s = redis.call('HMGET', key, 'w', 'cur', 'prev')
  local sw = tonumber(s[1])
  local cur, prev = 0, 0
  if sw ~= nil then
    if sw >= w then -- same window; sw > w only if Redis's clock stepped back: keep the newer window
      w = sw
      cur, prev = tonumber(s[2]) or 0, tonumber(s[3]) or 0
    elseif sw == w - 1 then
      prev = tonumber(s[2]) or 0
    end
  end
  local start = w * size
  local f = (now - start) / size
  if f < 0 then f = 0 end
  local estimate = prev * (1 - f) + cur
  local allowed = estimate + 1 <= limit + 1e-9
  local retry = 0
  if allowed then
    cur = cur + 1
    redis.call('HSET', key, 'w', w, 'cur', cur, 'prev', prev)
    redis.call('PEXPIRE', key, math.ceil(2 * size))
  elseif cur <= limit - 1 then
    -- Admitted in this window once prev * (1 - f) + cur <= limit - 1 (prev > 0, or it would be admitted now).
    retry = start + (1 - (limit - 1 - cur) / prev) * size - now
  else
    -- Not in this window: in the next one cur is the previous count, so cur * (1 - f) <= limit - 1.
    retry = start + size + math.min(1, 1 - (limit - 1) / cur) * size - now
  end
  local reset = 0
  if cur > 0 then reset = start + 2 * size - now elseif prev > 0 then reset = start + size - now end
  local remaining = math.floor(limit - estimate - (allowed and 1 or 0) + 1e-9)
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = math.max(0, remaining)
  out[#out + 1] = math.max(0, math.ceil(reset))
  out[#out + 1] = allowed and 0 or math.max(1, math.ceil(retry))
end

for i = 1, #KEYS do
  local a = 3 * i - 2
  if ARGV[a] == '0' then
    bucket(KEYS[i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  else
    window(KEYS[i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  end
end
return out
`

/**
 * Gives back one unit taken by an allowed decision: KEYS[1], ARGV as for one key of DECIDE_LUA. A token
 * bucket gets a token (at most burst); a sliding window un-counts one request only while the window it was
 * counted in is still the current one.
 */
export const REFUND_LUA = `${HEAD}
local key = KEYS[1]
if ARGV[1] == '0' then
  local tokens = tonumber(redis.call('HGET', key, 'tokens'))
  if tokens ~= nil then
    redis.call('HSET', key, 'tokens', string.format('%.17g', math.min(tonumber(ARGV[3]), tokens + 1)))
  end
else
  local s = redis.call('HMGET', key, 'w', 'cur')
  local cur = tonumber(s[2])
  if tonumber(s[1]) == math.floor(now / tonumber(ARGV[3])) and cur ~= nil and cur > 0 then
    redis.call('HSET', key, 'cur', cur - 1)
  end
end
return 1
`
