-- wrk script: database credentials issued and revoked in pairs. A thread sends
-- GET <URL path> (such as /v1/database/creds/bench), takes lease_id from the reply, and its next
-- request on any connection revokes that lease with PUT /v1/sys/leases/revoke. Leases issued
-- in the last moments of the run may stay unrevoked.
-- done() adds "issued", "revoked" and "ops_per_sec" (revoked pairs per second) to the result.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

issued = 0
revoked = 0
local pending = {}

function request()
  local lease_id = table.remove(pending)
  if lease_id ~= nil then
    return wrk.format("PUT", "/v1/sys/leases/revoke", nil,
                      '{"lease_id":"' .. lease_id .. '","sync":true}')
  end
  return wrk.format("GET", wrk.path)
end

function response(status, headers, body)
  common.count_status(status)
  if status == 204 then
    revoked = revoked + 1
    return
  end
  if status == 200 and body ~= nil then
    -- Lease IDs are <mount>/creds/<role>/<random>: no quotes or escapes to handle.
    local lease_id = body:match('"lease_id"%s*:%s*"([^"]+)"')
    if lease_id ~= nil then
      issued = issued + 1
      table.insert(pending, lease_id)
    end
  end
end

setup = common.setup

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local pairs_revoked = common.sum_over_threads("revoked") or 0
  common.done(summary, latency, requests, {
    issued = common.sum_over_threads("issued") or 0,
    revoked = pairs_revoked,
    ops_per_sec = seconds > 0 and pairs_revoked / seconds or 0,
  })
end
