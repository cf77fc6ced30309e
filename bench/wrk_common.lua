-- Shared code of the wrk scripts that scripts/bench.sh runs. Each script loads it with
--   local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")
-- and installs common.setup, common.response and common.done as wrk's callbacks.
--
-- Every thread counts its replies by HTTP status. When the run ends, done() prints one line
--   BENCH_RESULT {"requests":N,"seconds":S,"rps":X,"status":{"200":N,...},"errors":N,
--                 "latency_ms":{"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..}}
-- with the same fields as keyward-loadgen's output. "errors" counts socket errors (connect,
-- read, write and timeouts); replies with any status are under "status".
--
-- Environment:
--   BENCH_TOKEN    sent as X-Vault-Token when set (kept off wrk's command line)
--   BENCH_THREADS  wrk's -t value, so that scripts can spread counters over threads

local common = {}

local threads = {}

-- Per-thread globals, read back in done() through thread:get.
status_counts = {}
thread_index = 0

wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["X-Vault-Token"] = token
end

common.thread_count = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

-- Reads a whole file, for request bodies; raises an error naming the file when it is missing.
function common.read_file(path)
  local file = io.open(path, "rb")
  if file == nil then
    error("cannot open " .. tostring(path))
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- Returns the body file named by an environment variable, or nil when it is unset or empty.
function common.body_from_env(name)
  local path = os.getenv(name)
  if path == nil or path == "" then
    return nil
  end
  return common.read_file(path)
end

function common.setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function common.count_status(status)
  local key = tostring(status)
  status_counts[key] = (status_counts[key] or 0) + 1
end

function common.response(status, headers, body)
  common.count_status(status)
end

-- Encodes numbers, strings, booleans and tables with string keys; enough for the result line.
local function encode(value)
  local kind = type(value)
  if kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then
      return "null"
    end
    if value == math.floor(value) and math.abs(value) < 1e15 then
      return string.format("%d", value)
    end
    return string.format("%.6g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "table" then
    local keys = {}
    for key in pairs(value) do
      table.insert(keys, tostring(key))
    end
    table.sort(keys)
    local parts = {}
    for _, key in ipairs(keys) do
      table.insert(parts, encode(key) .. ":" .. encode(value[key] or value[tonumber(key)]))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

-- Sums a per-thread global over all threads: numbers are added, tables of numbers merged.
function common.sum_over_threads(name)
  local total = nil
  for _, thread in ipairs(threads) do
    local value = thread:get(name)
    if type(value) == "number" then
      total = (total or 0) + value
    elseif type(value) == "table" then
      total = total or {}
      for key, count in pairs(value) do
        total[key] = (total[key] or 0) + count
      end
    end
  end
  return total
end

-- Prints the BENCH_RESULT line; `extra` adds fields (such as ops_per_sec) to it.
function common.done(summary, latency, requests, extra)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  local result = {
    requests = summary.requests,
    seconds = seconds,
    rps = seconds > 0 and summary.requests / seconds or 0,
    status = common.sum_over_threads("status_counts") or {},
    errors = errors.connect + errors.read + errors.write + errors.timeout,
    latency_ms = {
      p50 = latency:percentile(50) / 1000,
      p90 = latency:percentile(90) / 1000,
      p99 = latency:percentile(99) / 1000,
      p999 = latency:percentile(99.9) / 1000,
      max = latency.max / 1000,
      mean = latency.mean / 1000,
    },
  }
  for key, value in pairs(extra or {}) do
    result[key] = value
  end
  io.write("BENCH_RESULT " .. encode(result) .. "\n")
end

return common
