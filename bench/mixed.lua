-- wrk script: the mixed workload, one KV write for every nine KV reads.
-- Reads go to the URL given to wrk; writes create new versions of BENCH_KEYS secrets named
-- BENCH_WRITE_PREFIX/0 ... in turn.
-- Environment (besides wrk_common.lua's):
--   BENCH_WRITE_PREFIX  path prefix of the written secrets, such as /v1/secret/data/bench/w
--   BENCH_BODY_FILE     the write body (required)
--   BENCH_KEYS          number of written secrets (default 1000)
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

local body = common.body_from_env("BENCH_BODY_FILE")
local prefix = os.getenv("BENCH_WRITE_PREFIX")
if body == nil or prefix == nil then
  error("mixed.lua: set BENCH_BODY_FILE and BENCH_WRITE_PREFIX")
end
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000") or 1000
local counter = 0
local writes = 0
local read_request = nil

function request()
  counter = counter + 1
  if counter % 10 == 0 then
    local key = (writes * common.thread_count + thread_index) % keys
    writes = writes + 1
    return wrk.format("POST", prefix .. "/" .. key, nil, body)
  end
  if read_request == nil then
    read_request = wrk.format("GET", wrk.path)
  end
  return read_request
end

setup = common.setup
response = common.response
done = common.done
