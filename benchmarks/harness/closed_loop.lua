-- wrk script: play a list of requests once, back to back on wrk's connections, then stop.
--
-- Arguments after "--": the requests file (one "METHOD PATH [BODY]" a line; the harness
-- writes it), the number of threads, and "events" to sum the answers of POST /api/events
-- (accepted, duplicates, rejected) or "plain".
-- Thread n plays the lines n, n + threads, n + 2 * threads, ... in order.
--
-- On stdout, one line each: "@ready" when a thread has its requests, "@done" after its
-- last answer, and "@result {json}" at the end (the harness sends SIGINT once every thread
-- is done, so that wrk does not wait out its -d).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *ts);
]]
local timespec = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local function say(line)
  io.write(line .. "\n")
  io.stdout:flush()
end

-- main state: the threads, for done()
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- thread state: globals, so that done() can read them with thread:get(), which copies
-- numbers and strings (wrk 4.1's copy of a table corrupts the stack)
sent, answered, accepted, duplicates, rejected, first_sent, last_answer = 0, 0, 0, 0, 0, 0, 0
codes = "" -- the statuses answered, "200 202 "; the count of each is the global status_<code>
local queue = {}
local tally = false
local reserved = 0 -- requests a connection has been promised (sent or about to be)
local verifying = false -- wrk calls request() once on thread 0 to check it, before the run

function init(args)
  local path, count = args[1], tonumber(args[2])
  tally = args[3] == "events"
  local n = 0
  for line in io.lines(path) do
    if n % count == thread_index then
      local method, target, body = line:match("^(%u+) (%S+) ?(.*)$")
      local headers = {}
      for name, value in pairs(wrk.headers) do headers[name] = value end
      if body == "" then
        body = nil
      else
        headers["Content-Type"] = "application/json"
      end
      table.insert(queue, wrk.format(method, target, headers, body))
    end
    n = n + 1
  end
  verifying = thread_index == 0
  say("@ready")
end

-- wrk asks before every request, a connection's first included
function delay()
  if reserved >= #queue then
    return 86400000 -- nothing left to send: park this connection for the rest of the run
  end
  reserved = reserved + 1
  return 0
end

function request()
  if verifying then
    verifying = false
    return queue[1]
  end
  sent = sent + 1
  if sent == 1 then first_sent = now() end
  -- Past the end only when a socket error made wrk send again: repeat the last request
  -- (an event with the same eventId is a duplicate, stored once).
  return queue[sent] or queue[#queue]
end

function response(status, headers, body)
  answered = answered + 1
  local name = "status_" .. status
  if _G[name] == nil then
    codes = codes .. status .. " "
    _G[name] = 0
  end
  _G[name] = _G[name] + 1
  if tally then
    accepted = accepted + (tonumber(body:match('"accepted":(%d+)')) or 0)
    duplicates = duplicates + (tonumber(body:match('"duplicates":(%d+)')) or 0)
    local _, refused = body:gsub('"index":', "")
    rejected = rejected + refused
  end
  if answered == #queue then
    last_answer = now()
    say("@done")
    wrk.thread:stop()
  end
end

local function json(value)
  if type(value) == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, string.format("%q:%s", tostring(k), json(v)))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return string.format("%.17g", value)
end

local SUMMED = { "sent", "answered", "accepted", "duplicates", "rejected" }

function done(summary, latency, requests)
  local out = { statuses = {}, first_sent = 0, last_answer = 0 }
  for _, key in ipairs(SUMMED) do out[key] = 0 end
  for _, thread in ipairs(threads) do
    for _, key in ipairs(SUMMED) do out[key] = out[key] + thread:get(key) end
    for code in thread:get("codes"):gmatch("%d+") do
      out.statuses[code] = (out.statuses[code] or 0) + thread:get("status_" .. code)
    end
    local first = thread:get("first_sent")
    if first > 0 and (out.first_sent == 0 or first < out.first_sent) then
      out.first_sent = first
    end
    out.last_answer = math.max(out.last_answer, thread:get("last_answer"))
  end
  out.duration_s = summary.duration / 1e6
  out.errors = summary.errors
  out.latency_ms = { p50 = latency:percentile(50) / 1000, p95 = latency:percentile(95) / 1000,
                     p99 = latency:percentile(99) / 1000, max = latency.max / 1000 }
  say("@result " .. json(out))
end
