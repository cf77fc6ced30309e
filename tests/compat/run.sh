#!/usr/bin/env bash
# Runs the Vault client compatibility suites (Python hvac, npm node-vault) against a fresh
# `keyward server -dev` on 127.0.0.1. Prints each suite's "N passed, N failed" line, then a
# total "N passed, N failed" line last. Exits non-zero when a check failed or a suite did not
# run, and a suite without a summary line counts as one failure.
#   KEYWARD_BINARY       the keyward binary (default: $KEYWARD_BUILD_DIR/cli/keyward)
#   KEYWARD_BUILD_DIR    build directory (default: build)
#   KEYWARD_TEST_PG_URL  PostgreSQL for the database and lease checks; they are skipped
#                        without it, or fail under CI=true
# The node-vault suite needs tests/compat/node/node_modules, which scripts/setup.sh installs.
set -uo pipefail
cd "$(dirname "$0")/../.."
source_dir=$PWD

binary="${KEYWARD_BINARY:-$source_dir/${KEYWARD_BUILD_DIR:-build}/cli/keyward}"
work_dir=$(mktemp -d)
server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  kill "$server_pid" 2>/dev/null
  # Bounded: 10 s for a clean stop, then SIGKILL.
  for ((i = 0; i < 50; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -9 "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
}
trap 'stop_server; rm -rf "$work_dir"' EXIT

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts the dev server on a random free port. Up to 5 ports are tried, because another
# process may take the port between the check and the bind.
start_server() {
  local attempt port
  for ((attempt = 0; attempt < 5; attempt++)); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    rm -rf "$work_dir/data"
    "$binary" server -dev -dev-listen-address="127.0.0.1:$port" \
      -dev-root-token-id="$root_token" -dev-data-dir="$work_dir/data" \
      >"$work_dir/server.out" 2>"$work_dir/server.log" &
    server_pid=$!
    # Bounded: 30 s for the dev server to create its token and respond on sys/health.
    for ((i = 0; i < 150; i++)); do
      if curl -sf -o /dev/null "http://127.0.0.1:$port/v1/sys/health"; then
        address="http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    stop_server
  done
  echo "compat: the dev server did not start; last log lines:"
  tail -20 "$work_dir/server.log"
  return 1
}

if [[ ! -x "$binary" ]]; then
  echo "compat: missing binary $binary (set KEYWARD_BINARY or KEYWARD_BUILD_DIR)"
  echo "0 passed, 1 failed"
  exit 1
fi
root_token="root-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
address=""
if ! start_server; then
  echo "0 passed, 1 failed"
  exit 1
fi

export VAULT_ADDR="$address" VAULT_TOKEN="$root_token"
export KEYWARD_ADDR="$address" KEYWARD_TOKEN="$root_token"
export KEYWARD_DATA_DIR="$work_dir/data"

passed=0
failed=0
summaries=()

# Runs one suite from `directory` and adds its summary line to the totals.
run_suite() {
  local name=$1 directory=$2
  shift 2
  echo "== $name"
  (cd "$directory" && timeout 600 "$@") 2>&1 | tee "$work_dir/$name.log"
  local status=${PIPESTATUS[0]}
  local summary
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work_dir/$name.log" | tail -1)
  if [[ -z "$summary" ]]; then
    summaries+=("$name: no summary (exit $status)")
    failed=$((failed + 1))
    return
  fi
  local p f
  read -r p _ f _ <<<"${summary//,/}"
  passed=$((passed + p))
  failed=$((failed + f))
  summaries+=("$name: $summary")
  if ((status != 0 && f == 0)); then
    summaries+=("$name: exited $status")
    failed=$((failed + 1))
  fi
}

run_suite hvac "$source_dir/tests/compat" /usr/bin/python3 hvac_test.py
if [[ -d "$source_dir/tests/compat/node/node_modules/node-vault" ]]; then
  run_suite node-vault "$source_dir/tests/compat/node" node test.js
else
  summaries+=("node-vault: not installed (run scripts/setup.sh, which runs npm ci in tests/compat/node)")
  failed=$((failed + 1))
fi

# The server must still be up: a crash during the suites is a failure of its own.
if ! kill -0 "$server_pid" 2>/dev/null; then
  summaries+=("server: exited during the suites; log: see below")
  tail -20 "$work_dir/server.log"
  failed=$((failed + 1))
fi
stop_server

for line in "${summaries[@]}"; do echo "== $line"; done
echo "$passed passed, $failed failed"
((failed == 0))
