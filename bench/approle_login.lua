-- wrk script: AppRole logins that take the roles in turn. keyward runs at most as many
-- concurrent logins per role ID and client address as its lockout threshold (5 by default)
-- and returns 429 beyond that. So the load is spread over several roles, as logins from many
-- services would be.
-- Environment (besides wrk_common.lua's):
--   BENCH_BODIES_FILE  one login body {"role_id": ..., "secret_id": ...} per line (required)
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

local path = os.getenv("BENCH_BODIES_FILE")
if path == nil or path == "" then
  error("approle_login.lua: set BENCH_BODIES_FILE to the file of login bodies")
end
local requests = {}
for line in io.lines(path) do
  if line ~= "" then
    table.insert(requests, line)
  end
end
if #requests == 0 then
  error("approle_login.lua: " .. path .. " holds no login body")
end
local counter = 0

function request()
  local index = (counter * common.thread_count + thread_index) % #requests
  counter = counter + 1
  return wrk.format("POST", wrk.path, nil, requests[index + 1])
end

setup = common.setup
response = common.response
done = common.done
