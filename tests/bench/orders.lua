-- wrk script: a mixed BUY/SELL stream of orders, and a JSON summary at the end.
-- An argument after `--` paces the load: each connection pauses that many ms on average after each
-- answer, drawn at random (exponentially), so connections do not fall into step and arrive in bursts.
local bodies = {}
local pause_ms = 0

init = function(args)
  pause_ms = tonumber(args[1] or "0")
  for i = 1, 2000 do
    local side = (math.random(2) == 1) and "BUY" or "SELL"
    bodies[i] = string.format('{"STRATEGY": "S%d", "INSTRUMENT": "SYM%03d", "POSITION": "%s"}',
      math.random(0, 4), math.random(0, 49), side)
  end
end

delay = function()
  if pause_ms <= 0 then
    return 0
  end
  return math.floor(-pause_ms * math.log(1 - math.random()))
end

request = function()
  return wrk.format("POST", "/create_order", {["Content-Type"] = "application/json"}, bodies[math.random(#bodies)])
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
