#!/usr/bin/env bash
# Benchmarks keyward against this machine's own ceilings, measured in the same run: nginx
# serving a static file, raw SoftHSM operations and SQLite commits. Writes the generated block
# of docs/BENCHMARKS.md and prints a short table. Run as root on Debian 12 (it installs wrk
# and nginx-light when missing). Never run by the tests: figures depend on the machine.
#
#   scripts/bench.sh [--runs N] [--duration S] [--warmup S] [--connections C] [--quick]
#                    [--skip-scale] [--no-docs] [--scale-secrets N] [--scale-leases N]
#                    [--idle-connections N]
#
# Environment:
#   KEYWARD_BENCH_BUILD_DIR  an existing build directory whose binaries are used without a
#                            rebuild. Default: build-bench, configured and built as a release.
#   TMPDIR                   parent of the working directory. The SQLite ceiling and the
#                            server's data directory both live on its file system.
#
# Results: every measurement as a JSON line in <build dir>/bench-results/<UTC time>.jsonl (the
# input of bench/report.py), next to the server's Prometheus metrics after the runs. The docs
# block is rewritten only when every measurement succeeded.
#
# Exit status: 0 when every measurement succeeded, 1 when one failed (a workload with any
# non-2xx reply or socket error counts as failed), 2 for a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
original_args=("$@")

usage() {
  cat <<'EOF'
usage: scripts/bench.sh [options]

  --runs N              repetitions of the ceilings and workloads (default 3)
  --duration S          measured seconds per workload and ceiling (default 10)
  --warmup S            seconds of load before each measured workload (default 3)
  --connections C       wrk and loadgen connections (default 32)
  --idle-connections N  idle keep-alive connections of the many-clients run (default 5000)
  --scale-secrets N     secrets stored for the scale step (default 1000000)
  --scale-leases N      live database leases for the scale step (default 100000)
  --skip-scale          leave out the scale step
  --quick               1 s measurements, 1 run, 500 idle connections, 1,000 secrets and
                        100 leases: proves the script works, measures nothing
  --no-docs             do not rewrite the generated block of docs/BENCHMARKS.md
  --help                this text
EOF
}

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  printf 'bench: error: %s\n' "$*" >&2
  exit 1
}
usage_error() {
  printf 'bench: %s\n' "$*" >&2
  usage >&2
  exit 2
}

# --- Options ------------------------------------------------------------------------------

opt_runs="" opt_duration="" opt_warmup="" opt_connections=""
opt_scale_secrets="" opt_scale_leases="" opt_idle_connections=""
quick=false skip_scale=false write_docs=true

while (($# > 0)); do
  option=$1
  value=""
  case "$option" in
    --*=*)
      value=${option#*=}
      option=${option%%=*}
      ;;
  esac
  case "$option" in
    --runs | --duration | --warmup | --connections | --scale-secrets | --scale-leases | \
      --idle-connections)
      if [[ -z "$value" ]]; then
        (($# >= 2)) || usage_error "option $option needs a value"
        value=$2
        shift
      fi
      [[ "$value" =~ ^[0-9]+$ ]] || usage_error "$option must be a whole number, not \"$value\""
      ;;
  esac
  case "$option" in
    --runs) opt_runs=$value ;;
    --duration) opt_duration=$value ;;
    --warmup) opt_warmup=$value ;;
    --connections) opt_connections=$value ;;
    --scale-secrets) opt_scale_secrets=$value ;;
    --scale-leases) opt_scale_leases=$value ;;
    --idle-connections) opt_idle_connections=$value ;;
    --quick) quick=true ;;
    --skip-scale) skip_scale=true ;;
    --no-docs) write_docs=false ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "unknown option $option" ;;
  esac
  shift
done

# --quick sets small defaults; options given explicitly still win.
if $quick; then
  runs=${opt_runs:-1} duration=${opt_duration:-1} warmup=${opt_warmup:-1}
  scale_secrets=${opt_scale_secrets:-1000} scale_leases=${opt_scale_leases:-100}
  idle_connections=${opt_idle_connections:-500} scale_repeats=1
else
  runs=${opt_runs:-3} duration=${opt_duration:-10} warmup=${opt_warmup:-3}
  scale_secrets=${opt_scale_secrets:-1000000} scale_leases=${opt_scale_leases:-100000}
  idle_connections=${opt_idle_connections:-5000} scale_repeats=3
fi
connections=${opt_connections:-32}
((runs >= 1)) || usage_error "--runs must be at least 1"
((duration >= 1)) || usage_error "--duration must be at least 1"
((connections >= 1)) || usage_error "--connections must be at least 1"
((scale_secrets >= 1 && scale_leases >= 1)) || usage_error "scale counts must be at least 1"

wrk_threads=2
((connections < wrk_threads)) && wrk_threads=$connections
latency_rate=2000
latency_seconds=$((duration * 3))
# The fill spreads secrets over this many connections; leases go over --connections.
fill_connections=64
# Secrets the KV write workloads cycle through.
write_keys=1000
# AppRole roles the login workload cycles through: twice the connections, so that a role
# rarely has more than one login in flight.
approle_roles=$((connections * 2))
((approle_roles > 256)) && approle_roles=256
# Each database lease role may hold at most 100,000 leases, so the scale step's leases are
# spread over two roles.
scale_lease_roles=(bench-scale-a bench-scale-b)

# --- Working directory and clean-up -------------------------------------------------------

tmp=""
server_pid="" nginx_pid="" idle_pid="" child_pid="" pg_started=false
failures=0
results_dir="" results_file=""

stop_process() {
  local pid=$1 name=$2 seconds=${3:-15}
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < seconds * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "warning: $name (pid $pid) did not stop within $seconds s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  # A second Ctrl-C must not cut the clean-up short and leave servers running.
  trap - EXIT
  trap '' INT TERM
  set +e
  stop_process "$child_pid" "the running measurement" 5
  stop_process "$idle_pid" "keyward-loadgen --mode idle" 5
  stop_process "$server_pid" "keyward server"
  stop_process "$nginx_pid" "nginx" 5
  if $pg_started; then
    KEYWARD_PG_DIR="$tmp/pg" scripts/postgres.sh stop >/dev/null 2>&1 ||
      log "warning: stopping PostgreSQL in $tmp/pg failed"
  fi
  if [[ -n "$tmp" && -f "$tmp/results.jsonl" && -n "$results_file" && ! -f "$results_file" ]]; then
    cp "$tmp/results.jsonl" "$results_file" 2>/dev/null &&
      log "measurements so far saved in $results_file"
  fi
  [[ -n "$tmp" ]] && rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- Packages and binaries ----------------------------------------------------------------

ensure_packages() {
  local -a missing=()
  local -A package_of=(
    [wrk]=wrk [nginx]=nginx-light [jq]=jq [curl]=curl [softhsm2-util]=softhsm2
    [sqlite3]=sqlite3
  )
  local command
  for command in "${!package_of[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
  done
  [[ -x /usr/bin/python3 ]] || missing+=(python3)
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Sets build_dir, building a release build in build-bench unless KEYWARD_BENCH_BUILD_DIR
# names an existing build directory.
prepare_build() {
  local -a targets=(cli/keyward bench/keyward-bench-hsm bench/keyward-bench-sqlite
    bench/keyward-loadgen)
  if [[ -n "${KEYWARD_BENCH_BUILD_DIR:-}" ]]; then
    build_dir=$KEYWARD_BENCH_BUILD_DIR
    [[ -f "$build_dir/build.ninja" ]] ||
      die "KEYWARD_BENCH_BUILD_DIR=$build_dir is not a configured meson build directory"
    log "using the binaries in $build_dir as they are"
  else
    build_dir=build-bench
    if ! command -v meson >/dev/null 2>&1 || ! command -v ninja >/dev/null 2>&1; then
      log "meson or ninja is missing: running scripts/setup.sh to install the build packages"
      KEYWARD_BUILD_DIR=$build_dir KEYWARD_BUILDTYPE=release scripts/setup.sh >&2
    fi
    if [[ ! -f "$build_dir/build.ninja" ]]; then
      meson setup "$build_dir" --buildtype=release >&2 ||
        die "meson setup $build_dir failed; scripts/setup.sh installs the build packages"
    fi
    local buildtype
    buildtype=$(meson introspect --buildoptions "$build_dir" |
      jq -r '.[] | select(.name == "buildtype") | .value')
    [[ "$buildtype" == release ]] ||
      die "$build_dir is a $buildtype build; remove it or run meson configure -Dbuildtype=release $build_dir"
    log "building ${targets[*]} in $build_dir"
    ninja -C "$build_dir" "${targets[@]}" >&2 || die "the build in $build_dir failed"
  fi
  local target
  for target in "${targets[@]}"; do
    [[ -x "$build_dir/$target" ]] ||
      die "$build_dir/$target is missing; build it with: ninja -C $build_dir $target"
  done
}

# --- Helpers ------------------------------------------------------------------------------

# run_child OUT ERR COMMAND...: runs a program in the background with its output in files and
# waits for it. A signal then ends the wait at once, and the clean-up stops the program.
# Returns the program's exit status.
run_child() {
  local out=$1 err=$2
  shift 2
  "$@" >"$out" 2>"$err" &
  child_pid=$!
  local status=0
  wait "$child_pid" || status=$?
  child_pid=""
  return "$status"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a loopback TCP port that nothing listens on, from a random start in 20000..59999.
free_port() {
  local port=$((20000 + RANDOM % 40000))
  for ((i = 0; i < 200; i++)); do
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
    port=$((port + 1))
  done
  die "no free loopback port near $port"
}

# Waits until a URL returns any HTTP status, as long as process $2 runs.
wait_for_http() {
  local url=$1 pid=$2 name=$3
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -s -o /dev/null --max-time 1 "$url"; then
      return 0
    fi
    sleep 0.1
  done
  log "$name did not answer at $url within 60 s"
  return 1
}

# api METHOD PATH [BODY_FILE]: calls keyward with the root token and prints the reply body.
# A reply other than 2xx ends the script with the status and the server's error messages.
api() {
  local method=$1 path=$2 body_file=${3:-}
  local -a data=()
  [[ -n "$body_file" ]] && data=(--data-binary "@$body_file")
  local status
  status=$(curl -sS -o "$tmp/api-reply" -w '%{http_code}' -X "$method" \
    -H "@$tmp/root-header" -H 'Content-Type: application/json' "${data[@]}" \
    "$kw_url/v1/$path") || die "set-up: $method /v1/$path: curl failed"
  if [[ "$status" != 2* ]]; then
    # Error replies carry messages only, never secrets.
    die "set-up: $method /v1/$path returned HTTP $status: $(jq -c '.errors // .' "$tmp/api-reply" 2>/dev/null || head -c 300 "$tmp/api-reply")"
  fi
  cat "$tmp/api-reply"
}

# check_request NAME METHOD PATH [BODY_FILE] [TOKEN_HEADER_FILE]: sends one request of a
# workload before it runs, so that a set-up mistake fails with the server's message.
check_request() {
  local name=$1 method=$2 path=$3 body_file=${4:-} header_file=${5:-$tmp/bench-header}
  local -a args=(-sS -o "$tmp/check-reply" -w '%{http_code}' -X "$method"
    -H 'Content-Type: application/json')
  [[ "$header_file" != none ]] && args+=(-H "@$header_file")
  [[ -n "$body_file" ]] && args+=(--data-binary "@$body_file")
  local status
  status=$(curl "${args[@]}" "$kw_url$path") || die "set-up check of $name: curl failed"
  [[ "$status" == 2* ]] ||
    die "set-up check of $name: $method $path returned HTTP $status: $(jq -c '.errors // .' "$tmp/check-reply" 2>/dev/null)"
}

# record NAME RUN OK ERROR RESULT_JSON: appends one measurement line to the results.
record() {
  local name=$1 run=$2 ok=$3 error=$4 result=$5
  jq -cn --arg name "$name" --argjson run "$run" --argjson ok "$ok" --arg error "$error" \
    --argjson result "$result" \
    '{type: "measurement", name: $name, run: $run, ok: $ok, result: $result}
     + (if $error == "" then {} else {error: $error} end)' >>"$tmp/results.jsonl"
}

fail() {
  local name=$1 run=$2 error=$3 result=${4:-null}
  failures=$((failures + 1))
  log "FAILED: $name (run $run): $error"
  record "$name" "$run" false "$error" "$result"
}

# Problems in a load result (wrk's BENCH_RESULT line or keyward-loadgen's output): replies with
# a status other than 2xx, socket errors, no replies at all. Prints nothing when it is clean.
load_problems() {
  jq -r '[
      ((.status // {}) | to_entries[] | select(.key | test("^2") | not)
        | "\(.value) replies with status \(.key)"),
      (if (.errors // 0) > 0 then "\(.errors) socket errors" else empty end),
      (if (.requests // 0) == 0 then "no replies" else empty end)
    ] | join(", ")' <<<"$1"
}

# check_load NAME RUN JSON [UNIT]: records a load result, failed when it has problems.
check_load() {
  local name=$1 run=$2 json=$3 unit=${4:-req/s}
  if [[ -z "$json" ]] || ! jq -e 'type == "object"' <<<"$json" >/dev/null 2>&1; then
    fail "$name" "$run" "no result line in the output"
    return
  fi
  local problems
  problems=$(load_problems "$json")
  if [[ -n "$problems" ]]; then
    fail "$name" "$run" "$problems; status counts $(jq -c '.status // {}' <<<"$json")" "$json"
    return
  fi
  record "$name" "$run" true "" "$json"
  log "$name (run $run): $(jq -r --arg unit "$unit" \
    '"\((.ops_per_sec // .rps) | floor) \($unit), p99 \(.latency_ms.p99 * 100 | round / 100) ms"' \
    <<<"$json")"
}

# Ends the benchmark when the keyward server has exited: every later workload would fail.
require_server() {
  [[ -z "$server_pid" ]] && return 0
  kill -0 "$server_pid" 2>/dev/null && return 0
  tail -n 20 "$tmp/server.log" >&2
  fail keyward_server 0 "the server exited during the benchmark (its log is above)"
  exit 1
}

# run_wrk NAME RUN URL SCRIPT [VAR=VALUE...]: a warm-up, then the measured wrk run with the
# Lua script bench/SCRIPT, whose environment gets the VAR=VALUE pairs.
run_wrk() {
  local name=$1 run=$2 url=$3 script=$4
  shift 4
  require_server
  local -a environment=(BENCH_LUA_DIR="$repo/bench" BENCH_THREADS="$wrk_threads" "$@")
  local -a command=(wrk -t"$wrk_threads" -c"$connections" --timeout 10s -s "$repo/bench/$script")
  if ((warmup > 0)); then
    run_child "$tmp/wrk.out" "$tmp/wrk.err" \
      env "${environment[@]}" "${command[@]}" -d"${warmup}s" "$url" ||
      log "warning: the warm-up of $name failed: $(tail -n 3 "$tmp/wrk.err" | tr '\n' ' ')"
  fi
  if ! run_child "$tmp/wrk.out" "$tmp/wrk.err" \
    env "${environment[@]}" "${command[@]}" -d"${duration}s" "$url"; then
    fail "$name" "$run" "wrk failed: $(tail -n 3 "$tmp/wrk.err" "$tmp/wrk.out" | tr '\n' ' ')"
    return
  fi
  check_load "$name" "$run" "$(sed -n 's/^BENCH_RESULT //p' "$tmp/wrk.out" | tail -n 1)" \
    "${wrk_unit:-req/s}"
}

# run_ceiling NAME RUN COMMAND...: runs a ceiling program and records its JSON line.
run_ceiling() {
  local name=$1 run=$2
  shift 2
  if ! run_child "$tmp/program.out" "$tmp/program.err" "$@"; then
    fail "$name" "$run" "$(basename "$1") failed: $(tail -n 3 "$tmp/program.err" | tr '\n' ' ')"
    return
  fi
  local json
  json=$(tail -n 1 "$tmp/program.out")
  if ! jq -e '.ops_per_sec > 0' <<<"$json" >/dev/null 2>&1; then
    fail "$name" "$run" "$(basename "$1") printed no ops_per_sec: $json"
    return
  fi
  record "$name" "$run" true "" "$json"
  log "$name (run $run): $(jq -r '.ops_per_sec | floor' <<<"$json") ops/s"
}

# record_value NAME RUN VALUE: a figure the script computes itself.
record_value() {
  record "$1" "$2" true "" "$(jq -cn --argjson value "$3" '{value: $value}')"
  log "$1: $3"
}

# Peak resident set size (VmHWM) of the server in MiB.
server_peak_rss_mib() {
  awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$server_pid/status"
}

# Bytes of the server's SQLite database with its WAL.
database_bytes() {
  local total=0 file
  for file in "$tmp/data/keyward.db" "$tmp/data/keyward.db-wal"; do
    [[ -f "$file" ]] && total=$((total + $(stat -c %s "$file")))
  done
  echo "$total"
}

# run_loadgen NAME RUN ARGS...: keyward-loadgen in closed or rate mode, recorded like wrk's
# results. It exits 1 after non-2xx replies too; then its status counts are reported.
run_loadgen() {
  local name=$1 run=$2
  shift 2
  require_server
  # The bench token and JSON bodies on every request.
  local status=0
  run_child "$tmp/program.out" "$tmp/program.err" "$bin/keyward-loadgen" --url "$kw_url" \
    --header "X-Vault-Token: $bench_token" --header "Content-Type: application/json" "$@" ||
    status=$?
  local json
  json=$(tail -n 1 "$tmp/program.out")
  if ((status != 0)); then
    if jq -e 'type == "object" and has("status")' <<<"$json" >/dev/null 2>&1 &&
      [[ -n "$(load_problems "$json")" ]]; then
      check_load "$name" "$run" "$json"
    else
      fail "$name" "$run" "keyward-loadgen exited with status $status: $(tail -n 3 "$tmp/program.err" | tr '\n' ' ')"
    fi
    return
  fi
  check_load "$name" "$run" "$json"
}

# --- Starting the servers -----------------------------------------------------------------

start_nginx() {
  local port
  port=$(free_port)
  mkdir -p "$tmp/nginx/www" "$tmp/nginx/temp"
  # 200 bytes: {"status":"ok","padding":"xxx…"} and a newline.
  printf '{"status":"ok","padding":"%s"}\n' "$(printf '%0171d' 0 | tr 0 x)" \
    >"$tmp/nginx/www/ceiling.json"
  # The workers may run as nobody: they need to reach and read the file.
  chmod 0711 "$tmp/nginx"
  chmod -R a+rX "$tmp/nginx/www"
  local user_line=""
  # A master process running as root starts its workers as the unprivileged user nobody.
  if [[ $(id -u) -eq 0 ]]; then
    user_line="user nobody nogroup;"
  fi
  cat >"$tmp/nginx/nginx.conf" <<EOF
$user_line
worker_processes $(nproc);
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path $tmp/nginx/temp/body;
  proxy_temp_path $tmp/nginx/temp/proxy;
  fastcgi_temp_path $tmp/nginx/temp/fastcgi;
  uwsgi_temp_path $tmp/nginx/temp/uwsgi;
  scgi_temp_path $tmp/nginx/temp/scgi;
  server {
    listen 127.0.0.1:$port;
    root $tmp/nginx/www;
    default_type application/json;
  }
}
EOF
  nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" -e "$tmp/nginx/error.log" \
    -g 'daemon off;' 2>"$tmp/nginx/stderr.log" &
  nginx_pid=$!
  nginx_url="http://127.0.0.1:$port/ceiling.json"
  wait_for_http "$nginx_url" "$nginx_pid" nginx ||
    die "nginx did not start: $(tail -n 5 "$tmp/nginx/stderr.log" "$tmp/nginx/error.log")"
  local size
  size=$(curl -s "$nginx_url" | wc -c)
  [[ "$size" == 200 ]] || die "nginx served $size bytes instead of 200"
  log "nginx on 127.0.0.1:$port ($(nproc) workers)"
}

start_postgres() {
  pg_started=true
  KEYWARD_PG_DIR="$tmp/pg" scripts/postgres.sh start >"$tmp/postgres.out" 2>&1 ||
    die "scripts/postgres.sh start failed: $(tail -n 5 "$tmp/postgres.out")"
  pg_port=$(cat "$tmp/pg/port")
  log "PostgreSQL on 127.0.0.1:$pg_port"
}

# A SoftHSM token of its own for the ceiling programs, so they never touch keyward's keys.
start_softhsm() {
  hsm_module=""
  local candidate
  for candidate in /usr/lib/softhsm/libsofthsm2.so \
    "/usr/lib/$(uname -m)-linux-gnu/softhsm/libsofthsm2.so"; do
    if [[ -f "$candidate" ]]; then
      hsm_module=$candidate
      break
    fi
  done
  [[ -n "$hsm_module" ]] || die "libsofthsm2.so not found; install softhsm2"
  mkdir -p "$tmp/hsm/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$tmp/hsm/tokens" >"$tmp/hsm/softhsm2.conf"
  export SOFTHSM2_CONF="$tmp/hsm/softhsm2.conf"
  hsm_pin=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  local so_pin
  so_pin=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  softhsm2-util --init-token --free --label keyward-bench --pin "$hsm_pin" --so-pin "$so_pin" \
    >"$tmp/hsm/init.out" 2>&1 ||
    die "softhsm2-util --init-token failed: $(tail -n 3 "$tmp/hsm/init.out")"
}

start_keyward() {
  local port
  port=$(free_port)
  kw_url="http://127.0.0.1:$port"
  root_token="bench-root-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  printf 'X-Vault-Token: %s\n' "$root_token" >"$tmp/root-header"
  # The dev server keeps its own SoftHSM configuration in the data directory.
  env -u SOFTHSM2_CONF "$bin/keyward" server -dev -dev-listen-address="127.0.0.1:$port" \
    -dev-root-token-id="$root_token" -dev-data-dir="$tmp/data" \
    >"$tmp/server.out" 2>"$tmp/server.log" &
  server_pid=$!
  if ! wait_for_http "$kw_url/v1/sys/health" "$server_pid" "keyward server"; then
    tail -n 20 "$tmp/server.log" >&2
    die "keyward server -dev did not start (log above)"
  fi
  log "keyward server -dev on $kw_url (pid $server_pid)"
}

# --- Set-up through the HTTP API ----------------------------------------------------------

setup_keyward() {
  log "set-up: secrets, policies, tokens, AppRole, database, PKI"
  # The 1 KiB secret value, used for reads and every write.
  printf '{"data":{"value":"%s"}}' "$(head -c 768 /dev/urandom | base64 -w0)" \
    >"$tmp/kv-body.json"

  jq -n --arg policy '
path "secret/data/bench/*" { capabilities = ["create", "read", "update"] }
path "secret/data/fill/*" { capabilities = ["create", "update"] }
path "auth/token/create" { capabilities = ["update"] }
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
path "pki/issue/bench" { capabilities = ["update"] }
path "pki/jwt/issue/bench" { capabilities = ["update"] }
' '{policy: $policy}' >"$tmp/policy-rw.json"
  api PUT sys/policies/acl/bench-rw "$tmp/policy-rw.json" >/dev/null
  jq -n --arg policy 'path "secret/data/bench/read" { capabilities = ["read"] }' \
    '{policy: $policy}' >"$tmp/policy-child.json"
  api PUT sys/policies/acl/bench-child "$tmp/policy-child.json" >/dev/null

  # The non-root token of the workloads; it may give its children bench-child.
  echo '{"policies": ["bench-rw", "bench-child"], "ttl": "72h", "display_name": "bench"}' \
    >"$tmp/token-body.json"
  bench_token=$(api POST auth/token/create "$tmp/token-body.json" | jq -r '.auth.client_token')
  [[ -n "$bench_token" && "$bench_token" != null ]] || die "set-up: token create returned no token"
  printf 'X-Vault-Token: %s\n' "$bench_token" >"$tmp/bench-header"
  api POST secret/data/bench/read "$tmp/kv-body.json" >/dev/null
  echo '{"policies": ["bench-child"], "ttl": "2h"}' >"$tmp/child-body.json"

  # AppRole: roles whose secret IDs can log in any number of times. keyward runs at most 5
  # logins per role ID and client address at once (its lockout threshold). So the workload
  # takes the roles in turn (bench/approle_login.lua).
  echo '{"token_policies": "bench-child", "token_ttl": "2h"}' >"$tmp/approle-role.json"
  local role_id secret_id index
  : >"$tmp/approle-logins.jsonl"
  for ((index = 0; index < approle_roles; index++)); do
    api POST "auth/approle/role/bench-$index" "$tmp/approle-role.json" >/dev/null
    role_id=$(api GET "auth/approle/role/bench-$index/role-id" | jq -r '.data.role_id')
    secret_id=$(api POST "auth/approle/role/bench-$index/secret-id" | jq -r '.data.secret_id')
    jq -cn --arg role_id "$role_id" --arg secret_id "$secret_id" \
      '{role_id: $role_id, secret_id: $secret_id}' >>"$tmp/approle-logins.jsonl"
  done
  head -n 1 "$tmp/approle-logins.jsonl" >"$tmp/approle-login.json"

  # Database: the private PostgreSQL, a role for the issue/revoke workload and two roles
  # with long leases for the scale step.
  jq -n --arg port "$pg_port" --rawfile password "$tmp/pg/admin-password" '{
      plugin_name: "postgresql-database-plugin",
      connection_url: ("postgresql://{{username}}:{{password}}@127.0.0.1:" + $port + "/postgres"),
      username: "kwadmin", password: ($password | rtrimstr("\n")), allowed_roles: "*"}' \
    >"$tmp/db-config.json"
  api POST database/config/bench "$tmp/db-config.json" >/dev/null
  rm -f "$tmp/db-config.json"
  local creation='CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '\''{{password}}'\'' VALID UNTIL '\''{{expiration}}'\'';'
  jq -n --arg creation "$creation" \
    '{db_name: "bench", default_ttl: "1h", max_ttl: "24h", creation_statements: $creation}' \
    >"$tmp/db-role.json"
  api POST database/roles/bench "$tmp/db-role.json" >/dev/null
  jq -n --arg creation "$creation" \
    '{db_name: "bench", default_ttl: "720h", max_ttl: "768h", creation_statements: $creation}' \
    >"$tmp/db-role-scale.json"
  local role
  for role in "${scale_lease_roles[@]}"; do
    api POST "database/roles/$role" "$tmp/db-role-scale.json" >/dev/null
  done

  # PKI: a root CA in the HSM and a role for one trust domain.
  echo '{"trust_domain": "bench.test", "ttl": "8760h"}' >"$tmp/pki-root.json"
  api POST pki/root/generate/internal "$tmp/pki-root.json" >/dev/null
  echo '{"allowed_spiffe_ids": ["spiffe://bench.test/w/*"], "ttl": "1h", "max_ttl": "24h"}' \
    >"$tmp/pki-role.json"
  api POST pki/roles/bench "$tmp/pki-role.json" >/dev/null
  echo '{"spiffe_id": "spiffe://bench.test/w/web", "ttl": "10m"}' >"$tmp/svid-body.json"
  echo '{"spiffe_id": "spiffe://bench.test/w/web", "audience": "bench"}' >"$tmp/jwt-body.json"

  # One request of each workload, so that a mistake shows the server's message here.
  check_request "KV read" GET /v1/secret/data/bench/read
  check_request "KV write" POST /v1/secret/data/bench/w/0 "$tmp/kv-body.json"
  check_request "token create" POST /v1/auth/token/create "$tmp/child-body.json"
  check_request "AppRole login" POST /v1/auth/approle/login "$tmp/approle-login.json" none
  check_request "database credential" GET /v1/database/creds/bench
  local lease_id
  lease_id=$(jq -r '.lease_id' "$tmp/check-reply")
  jq -n --arg lease_id "$lease_id" '{lease_id: $lease_id}' >"$tmp/revoke-body.json"
  check_request "lease revoke" PUT /v1/sys/leases/revoke "$tmp/revoke-body.json"
  check_request "X.509-SVID issue" POST /v1/pki/issue/bench "$tmp/svid-body.json"
  check_request "JWT-SVID issue" POST /v1/pki/jwt/issue/bench "$tmp/jwt-body.json"
  rm -f "$tmp/check-reply" "$tmp/api-reply"
}

# --- Measurements -------------------------------------------------------------------------

measure_ceilings() {
  local run=$1
  wrk_unit="req/s" run_wrk nginx "$run" "$nginx_url" request.lua

  local op key threads
  for op in aes ecdsa; do
    for key in token session; do
      for threads in 1 2; do
        local op_name=aes-gcm-decrypt
        [[ $op == ecdsa ]] && op_name=ecdsa-p256-sign
        KEYWARD_BENCH_PIN=$hsm_pin run_ceiling "hsm_${op}_${key}_t${threads}" "$run" \
          "$bin/keyward-bench-hsm" --module "$hsm_module" --token-label keyward-bench \
          --op "$op_name" --key "$key" --threads "$threads" --seconds "$duration"
      done
    done
  done

  # On the file system of the server's data directory, as its commits are.
  run_ceiling sqlite_full_t1 "$run" "$bin/keyward-bench-sqlite" \
    --path "$tmp/sqlite-ceiling.db" --sync full --threads 1 --seconds "$duration"
}

measure_idle_clients() {
  local run=$1
  "$bin/keyward-loadgen" --mode idle --connections "$idle_connections" \
    --source-range 127.0.0.2-127.0.0.50 --url "$kw_url" >"$tmp/idle.out" 2>"$tmp/idle.err" &
  idle_pid=$!
  local ready=false
  for ((i = 0; i < 1200; i++)); do
    if grep -q '"ready"' "$tmp/idle.out" 2>/dev/null; then
      ready=true
      break
    fi
    kill -0 "$idle_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! $ready; then
    fail kv_read_idle "$run" "keyward-loadgen --mode idle did not open $idle_connections connections: $(tail -n 3 "$tmp/idle.err" | tr '\n' ' ')"
    stop_process "$idle_pid" "keyward-loadgen --mode idle" 5
    idle_pid=""
    return
  fi

  local failures_before=$failures
  run_wrk kv_read_idle "$run" "$kw_url/v1/secret/data/bench/read" \
    request.lua BENCH_TOKEN="$bench_token"

  # keyward-loadgen prints how many of its connections the server closed, then exits.
  kill -TERM "$idle_pid" 2>/dev/null || true
  local status=0
  wait "$idle_pid" || status=$?
  idle_pid=""
  # The first line announces the open connections, the last one sums up.
  local ready_line summary=""
  ready_line=$(head -n 1 "$tmp/idle.out")
  (($(wc -l <"$tmp/idle.out") > 1)) && summary=$(tail -n 1 "$tmp/idle.out")
  log "idle connections: $ready_line, then ${summary:-no summary}"
  if ((failures == failures_before)); then
    if ((status != 0)); then
      fail kv_read_idle_connections "$run" "keyward-loadgen --mode idle exited with status $status: $(tail -n 3 "$tmp/idle.err" | tr '\n' ' ')"
    elif [[ -n "$summary" ]] && jq -e '(.closed_by_server // 0) > 0' <<<"$summary" >/dev/null 2>&1; then
      fail kv_read_idle_connections "$run" "the server closed idle connections during the run: $summary"
    fi
  fi
}

measure_workloads() {
  local run=$1
  local read_url="$kw_url/v1/secret/data/bench/read"
  local token_env=(BENCH_TOKEN="$bench_token")

  run_wrk kv_read "$run" "$read_url" request.lua "${token_env[@]}"
  run_wrk kv_write "$run" "$kw_url/v1/secret/data/bench/w" kv_write.lua "${token_env[@]}" \
    BENCH_BODY_FILE="$tmp/kv-body.json" BENCH_KEYS="$write_keys"
  run_wrk kv_write_one "$run" "$kw_url/v1/secret/data/bench/one" request.lua \
    "${token_env[@]}" BENCH_METHOD=POST BENCH_BODY_FILE="$tmp/kv-body.json"
  run_wrk token_create "$run" "$kw_url/v1/auth/token/create" request.lua "${token_env[@]}" \
    BENCH_METHOD=POST BENCH_BODY_FILE="$tmp/child-body.json"
  run_wrk approle_login "$run" "$kw_url/v1/auth/approle/login" approle_login.lua \
    BENCH_BODIES_FILE="$tmp/approle-logins.jsonl"
  wrk_unit="pairs/s" run_wrk db_creds "$run" "$kw_url/v1/database/creds/bench" db_creds.lua \
    "${token_env[@]}"
  run_wrk x509_svid "$run" "$kw_url/v1/pki/issue/bench" request.lua "${token_env[@]}" \
    BENCH_METHOD=POST BENCH_BODY_FILE="$tmp/svid-body.json"
  run_wrk jwt_svid "$run" "$kw_url/v1/pki/jwt/issue/bench" request.lua "${token_env[@]}" \
    BENCH_METHOD=POST BENCH_BODY_FILE="$tmp/jwt-body.json"
  run_wrk mixed "$run" "$read_url" mixed.lua "${token_env[@]}" \
    BENCH_WRITE_PREFIX=/v1/secret/data/bench/w BENCH_BODY_FILE="$tmp/kv-body.json" \
    BENCH_KEYS="$write_keys"

  # The mixed workload at a fixed rate; latency counts from each request's scheduled time.
  log "latency (run $run): mixed workload at $latency_rate req/s for $latency_seconds s"
  run_loadgen latency "$run" --mode rate --rate "$latency_rate" --connections "$connections" \
    --seconds "$latency_seconds" --keys "$write_keys" \
    --request "9 GET /v1/secret/data/bench/read" \
    --request "1 POST /v1/secret/data/bench/w/{k} @$tmp/kv-body.json"

  measure_idle_clients "$run"
}

measure_scale() {
  log "scale: $scale_secrets secrets and $scale_leases leases"
  # Restart the high-water mark, so rss_scale is the peak while the store is loaded and used
  # (writing 5 to clear_refs does that since Linux 4.0).
  local rss_reset=true
  echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || rss_reset=false
  $rss_reset || log "warning: cannot reset VmHWM; rss_scale includes the peak of the runs"

  local bytes_before
  bytes_before=$(database_bytes)
  log "scale: writing $scale_secrets secrets over $fill_connections connections"
  run_loadgen scale_fill 1 --mode closed --count "$scale_secrets" \
    --connections "$fill_connections" --request "1 POST /v1/secret/data/fill/{n} @$tmp/kv-body.json"
  local bytes_after
  bytes_after=$(database_bytes)
  record_value db_bytes_per_secret 1 "$(((bytes_after - bytes_before) / scale_secrets))"

  log "scale: issuing $scale_leases database credentials with 720 h leases"
  local -a lease_requests=()
  local role
  for role in "${scale_lease_roles[@]}"; do
    lease_requests+=(--request "1 GET /v1/database/creds/$role")
  done
  run_loadgen scale_leases 1 --mode closed --count "$scale_leases" --connections "$connections" \
    "${lease_requests[@]}"

  local repeat
  for ((repeat = 1; repeat <= scale_repeats; repeat++)); do
    run_wrk kv_read_scale "$repeat" "$kw_url/v1/secret/data/bench/read" request.lua \
      BENCH_TOKEN="$bench_token"
    run_wrk kv_write_scale "$repeat" "$kw_url/v1/secret/data/bench/w" kv_write.lua \
      BENCH_TOKEN="$bench_token" BENCH_BODY_FILE="$tmp/kv-body.json" BENCH_KEYS="$write_keys"
  done
  record_value rss_scale 1 "$(server_peak_rss_mib)"
}

# --- Machine description and results -----------------------------------------------------

write_meta() {
  local cpu memory kernel filesystem commit command
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  memory=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  kernel=$(uname -r)
  filesystem=$(df -T "$tmp" | awk 'NR == 2 { print $2 " (" $1 ")" }')

  commit=unknown
  if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    # --no-optional-locks: never write the index while other people work in this tree.
    git --no-optional-locks diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
  fi

  command="scripts/bench.sh"
  ((${#original_args[@]} > 0)) && command+=" ${original_args[*]}"
  [[ -n "${KEYWARD_BENCH_BUILD_DIR:-}" ]] &&
    command="KEYWARD_BENCH_BUILD_DIR=$KEYWARD_BENCH_BUILD_DIR $command"

  local versions options
  versions=$(jq -cn --arg nginx "$(nginx -v 2>&1 | sed 's|.*nginx/||')" \
    --arg wrk "$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')" \
    --arg softhsm "$(softhsm2-util --version 2>/dev/null)" \
    --arg sqlite "$(sqlite3 --version | awk '{ print $1 }')" \
    --arg postgresql "$(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null | awk '{ print $3 }')" \
    '{nginx: $nginx, wrk: $wrk, SoftHSM: $softhsm, SQLite: $sqlite, PostgreSQL: $postgresql}')
  options=$(jq -cn --argjson runs "$runs" --argjson duration "$duration" \
    --argjson warmup "$warmup" --argjson connections "$connections" \
    --argjson wrk_threads "$wrk_threads" --argjson quick "$quick" \
    --argjson idle_connections "$idle_connections" --argjson latency_rate "$latency_rate" \
    --argjson latency_seconds "$latency_seconds" --argjson scale_secrets "$scale_secrets" \
    --argjson scale_leases "$scale_leases" --argjson scale_repeats "$scale_repeats" \
    --argjson approle_roles "$approle_roles" '$ARGS.named')

  jq -cn --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --argjson cores "$(nproc)" \
    --arg cpu "$cpu" --arg memory "$memory" --arg kernel "$kernel" \
    --arg filesystem "$filesystem" --arg commit "$commit" --arg command "$command" \
    --argjson versions "$versions" --argjson options "$options" \
    '{type: "meta", date: $date, commit: $commit, command: $command, versions: $versions,
      options: $options,
      machine: {cores: $cores, cpu: $cpu, memory: $memory, kernel: $kernel,
                filesystem: $filesystem}}' >"$tmp/results.jsonl"
}

save_metrics() {
  local label=$1
  curl -sS -o "$results_dir/$stamp-metrics-$label.prom" -H "@$tmp/root-header" \
    "$kw_url/v1/sys/metrics?format=prometheus" 2>/dev/null ||
    log "warning: could not save the server metrics ($label)"
}

# --- Main ---------------------------------------------------------------------------------

ensure_packages
prepare_build

# Replies saved during the set-up hold secret IDs and credentials: files are private by default.
umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/keyward-bench.XXXXXX")
# PostgreSQL's and nginx's users may pass through to their own directories, but not list it.
chmod 0711 "$tmp"
results_dir="$repo/$build_dir/bench-results"
[[ "$build_dir" == /* ]] && results_dir="$build_dir/bench-results"
mkdir -p "$results_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results_file="$results_dir/$stamp.jsonl"

# Copies, so that a rebuild during the run does not change the binaries under it.
bin="$tmp/bin"
mkdir -p "$bin"
cp "$build_dir/cli/keyward" "$build_dir/bench/keyward-bench-hsm" \
  "$build_dir/bench/keyward-bench-sqlite" "$build_dir/bench/keyward-loadgen" "$bin/"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
write_meta
log "working directory $tmp; $runs run(s) of ${duration} s after ${warmup} s warm-up, $connections connections"

start_nginx
start_softhsm
start_postgres
start_keyward
sleep 1
record_value rss_idle 0 "$(server_peak_rss_mib)"
setup_keyward

for ((run = 1; run <= runs; run++)); do
  log "=== run $run of $runs ==="
  measure_ceilings "$run"
  measure_workloads "$run"
done
record_value rss_after_runs 0 "$(server_peak_rss_mib)"
save_metrics runs

if ! $skip_scale; then
  measure_scale
  save_metrics scale
fi

require_server

cp "$tmp/results.jsonl" "$results_file"
log "measurements saved in $results_file"

report_args=("$results_file")
if $write_docs && ((failures == 0)); then
  report_args+=(--docs "$repo/docs/BENCHMARKS.md")
elif $write_docs; then
  log "docs/BENCHMARKS.md left unchanged because $failures measurement(s) failed"
fi
report_status=0
/usr/bin/python3 "$repo/bench/report.py" "${report_args[@]}" || report_status=$?

if ((failures > 0 || report_status != 0)); then
  log "$failures measurement(s) failed; see the messages above and $results_file"
  exit 1
fi
log "done"
