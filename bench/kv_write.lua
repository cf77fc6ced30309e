-- wrk script: writes a new version of a KV secret per request, spread round-robin over
-- BENCH_KEYS secrets named <URL path>/0 ... <URL path>/<BENCH_KEYS - 1>, so that concurrent
-- writes go to different secrets and can share commits.
-- Environment (besides wrk_common.lua's):
--   BENCH_BODY_FILE  the request body, such as {"data": {"value": "<1 KiB>"}} (required)
--   BENCH_KEYS       number of secrets (default 1000)
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

local body = common.body_from_env("BENCH_BODY_FILE")
if body == nil then
  error("kv_write.lua: set BENCH_BODY_FILE to the request body file")
end
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000") or 1000
local counter = 0

-- Each thread starts at its own index and steps by the thread count, so the threads cover
-- the secrets in turn instead of writing the same ones at the same time.
function request()
  local key = (counter * common.thread_count + thread_index) % keys
  counter = counter + 1
  return wrk.format("POST", wrk.path .. "/" .. key, nil, body)
end

setup = common.setup
response = common.response
done = common.done
