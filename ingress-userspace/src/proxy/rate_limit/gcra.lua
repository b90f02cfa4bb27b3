-- One decision of xdp-ingress's cluster-wide rate limits: the GCRA of proxy/rate_limit.rs
-- (`Gcra::check`) over every limit a request must pass, atomically.
-- KEYS[i]: the client's theoretical arrival time (TAT) under limit i, in microseconds of this
-- server's clock (one clock for every node). ARGV[2i-1]: the limit's emission interval,
-- ARGV[2i]: its tolerance (burst x interval), microseconds.
-- Admitted only if every limit admits (nginx accounts its limit_reqs only when all pass);
-- then each TAT becomes max(TAT, now) + interval and expires when it is in the past, where a
-- missing key means what an old one would: a full burst.
-- Returns {1, 0, 0} when admitted, or {0, wait, i} when limit i refuses: it keeps refusing
-- for `wait` microseconds whatever happens meanwhile (a TAT never moves back).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or 0
  if tat < now then
    tat = now
  end
  if tat - now > tolerance then
    return {0, tat - now - tolerance, i}
  end
  next[i] = tat + interval
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', next[i]), 'PX', math.ceil((next[i] - now) / 1000))
end
return {1, 0, 0}
