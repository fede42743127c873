-- wrk script for bench/run.py: with QUERIES_FILE set, every request is POST /api/v1/search for the next
-- query of the list (each thread starting at its own place), LIMIT rows from one of the first PAGES pages at
-- random (offset = LIMIT x page index), in the TABLES given (a JSON array) if any, with the members EXTRA
-- holds (`"filter":"category = \"Books\""`) if any; without it, wrk's plain
-- GET of the URL.
-- With DELAY_MS set, each connection waits a random 0..2×DELAY_MS before its next request (a given load
-- instead of as fast as possible). Ends by printing one JSON line: counts, failures and latency
-- percentiles (wrk's --latency lacks p95).

local queries = {}
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. (os.getenv("API_KEY") or "") }
local limit = os.getenv("LIMIT") or "20"
local ranking = os.getenv("RANKING") or ""
local pages = tonumber(os.getenv("PAGES") or "1")
local tables = os.getenv("TABLES") or ""
local body_extra = os.getenv("EXTRA") or ""  -- more JSON members for every body, as `"filter":"…"`
local threads = {}
local turn = 0

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = os.getenv("QUERIES_FILE")
  if file then
    for line in io.lines(file) do
      if line ~= "" then queries[#queries + 1] = line end
    end
  end
  turn = (index or 0) * 7919
  math.randomseed(index or 0)
end

if os.getenv("QUERIES_FILE") then
  function request()
    turn = turn + 1
    local query = queries[turn % #queries + 1]
    local extra = ranking ~= "" and (',"ranking":"' .. ranking .. '"') or ""
    if tables ~= "" then extra = extra .. ',"tables":' .. tables end
    if body_extra ~= "" then extra = extra .. ',' .. body_extra end
    if pages > 1 then extra = extra .. ',"offset":' .. (limit * math.random(0, pages - 1)) end
    local body = '{"query":' .. json_string(query) .. ',"searchMode":"natural","limit":' .. limit .. extra .. '}'
    return wrk.format("POST", nil, headers, body)
  end
end

local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
if delay_ms > 0 then
  function delay()
    return math.random() * 2 * delay_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
