-- The measuring half of every wrk run: counts answers by status on each thread and, when the
-- run is over, prints one line `BENCH {json}` with the totals and the latency percentiles.
--
-- Thread-local globals (read back in done() through thread:get):
--   sent      requests written (request() calls)
--   answered  responses received; sent - answered = in flight when the run stopped
--   ok        2xx answers; ok200 the 200s among them
--   statuses  non-2xx answers by status

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

sent, answered, ok, ok200 = 0, 0, 0, 0
statuses = {}

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
    if status == 200 then
      ok200 = ok200 + 1
    end
  else
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local function json_object(map)
  local parts = {}
  for key, value in pairs(map) do
    table.insert(parts, string.format('"%s":%d', tostring(key), value))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local totals = {sent = 0, answered = 0, ok = 0, ok200 = 0}
  local failures = {}
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    for status, count in pairs(thread:get("statuses")) do
      failures[status] = (failures[status] or 0) + count
    end
  end
  for _, kind in ipairs({"connect", "read", "write", "timeout"}) do
    if summary.errors[kind] > 0 then
      failures[kind] = summary.errors[kind]
    end
  end
  io.write(string.format(
    'BENCH {"seconds":%.6f,"answered":%d,"sent":%d,"ok":%d,"ok200":%d,' ..
    '"p50_us":%d,"p99_us":%d,"failures":%s}\n',
    summary.duration / 1e6, totals.answered, totals.sent, totals.ok, totals.ok200,
    latency:percentile(50), latency:percentile(99), json_object(failures)))
end
