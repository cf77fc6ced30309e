-- wrk script: writes a new version of one 1 KiB secret per request.
-- Usage: wrk -s bench/kv_write.lua -H "X-Vault-Token: $TOKEN" http://127.0.0.1:8200/v1/secret/data/bench/write
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"value":"' .. string.rep("x", 1024) .. '"}}'
