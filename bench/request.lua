-- wrk script: sends the same request on every connection, to the URL given to wrk.
-- Environment (besides wrk_common.lua's):
--   BENCH_METHOD     HTTP method (default GET)
--   BENCH_BODY_FILE  file whose contents are the request body (default: no body)
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/wrk_common.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = common.body_from_env("BENCH_BODY_FILE")

setup = common.setup
response = common.response
done = common.done
