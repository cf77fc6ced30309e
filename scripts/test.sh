#!/usr/bin/env bash
# Sets up, builds and runs every test: the doctest unit suites under tests/unit/, the
# end-to-end suite that drives the real binary, and the Vault client suites (hvac and
# node-vault, tests/compat/run.sh). Then, in two more builds with clang: the unit and
# end-to-end suites and the fuzz targets under AddressSanitizer and UndefinedBehaviorSanitizer,
# and the tests that run threads under ThreadSanitizer. Prints "N passed, N failed" last and
# exits non-zero when a test failed, a suite did not run to completion, a sanitized build
# failed or a sanitizer wrote a report.
#   KEYWARD_BUILD_DIR        the normal build (default: build)
#   KEYWARD_SANITIZERS       0 skips the sanitized builds and runs (default: 1)
#   KEYWARD_ASAN_BUILD_DIR   the ASan+UBSan build (default: build-asan)
#   KEYWARD_TSAN_BUILD_DIR   the TSan build (default: build-tsan)
#   KEYWARD_FUZZ_RUNS        inputs per fuzz target in the ASan build (default: 2000)
#   KEYWARD_ASAN_E2E_ARGS    doctest arguments that narrow the ASan end-to-end run, such as
#                            -ts=e2e/kv,e2e/server (default: the whole suite)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

build_dir="${KEYWARD_BUILD_DIR:-build}"
unit_suites=(
  tests/unit/unit_base
  tests/unit/hsm/unit_hsm
  tests/unit/storage/unit_storage
  tests/unit/vault/audit/unit_audit
  tests/unit/vault/unit_vault
  tests/unit/api/unit_http
  tests/unit/api/unit_api
)
e2e_suite=tests/e2e/e2e_test

# A throwaway PostgreSQL for the database engine tests (loopback only, stopped on exit).
pg_parent=$(mktemp -d)
chmod 0711 "$pg_parent"  # the server's user (kwpg when root) must reach the cluster inside
export KEYWARD_PG_DIR="$pg_parent/pg"
if scripts/postgres.sh start; then
  trap 'scripts/postgres.sh stop; rmdir "$pg_parent"' EXIT
  KEYWARD_TEST_PG_URL=$(cat "$KEYWARD_PG_DIR/url")
  export KEYWARD_TEST_PG_URL
else
  echo "== PostgreSQL did not start: its tests fail under CI=true and are skipped otherwise"
fi

# CI runs the bulk revocation test at full size (20,000 leases, a few minutes). A local run
# uses 2,000 unless KEYWARD_BULK_LEASES sets another count. The sanitized runs always use
# 2,000 leases and 10 kill cycles of the crash test (see run_sanitized_suite).
if [[ "${CI:-}" == "true" ]]; then
  export KEYWARD_BULK_LEASES="${KEYWARD_BULK_LEASES:-20000}"
fi

passed=0
failed=0
log_dir=$(mktemp -d)

# Runs the doctest executable `suite` of build directory `dir` with the extra doctest
# arguments, and adds its counts to the totals. `label` names the log file. The server binary
# of the same build directory is the one the end-to-end tests start.
run_suite() {
  local label=$1 dir=$2 suite=$3
  shift 3
  local binary="$dir/$suite" started=$SECONDS
  if [[ ! -x "$binary" ]]; then
    echo "== $label: missing binary $binary"
    failed=$((failed + 1))
    return
  fi
  echo "== $label"
  KEYWARD_BINARY="$PWD/$dir/cli/keyward" "$binary" "$@" 2>&1 | tee "$log_dir/$label.log" | \
    grep -E '^\[doctest\] (test cases|Status)|ERROR|FAILED|error:' | head -50
  local status=${PIPESTATUS[0]}
  local summary
  summary=$(grep -E '^\[doctest\] test cases:' "$log_dir/$label.log" | tail -1)
  if [[ -z "$summary" ]]; then
    echo "== $label: no summary (exit $status); log: $log_dir/$label.log"
    tail -20 "$log_dir/$label.log"
    failed=$((failed + 1))
    return
  fi
  local p f
  p=$(sed -E 's/.*\| *([0-9]+) passed.*/\1/' <<<"$summary")
  f=$(sed -E 's/.*\| *([0-9]+) failed.*/\1/' <<<"$summary")
  passed=$((passed + p))
  failed=$((failed + f))
  if ((status != 0 && f == 0)); then
    echo "== $label: exited $status; log: $log_dir/$label.log"
    failed=$((failed + 1))
  fi
  # A test-case filter that matches nothing (a renamed test) must not pass silently.
  if ((p + f == 0)); then
    echo "== $label: no test case ran; arguments: $*"
    failed=$((failed + 1))
  fi
  echo "== $label: $((SECONDS - started)) s"
}

# Adds the counts of a "N passed, N failed" summary line in `log` to the totals. A missing
# line, or a non-zero `status` with no failure counted, is one failure.
add_summary_line() {
  local label=$1 log=$2 status=$3
  local summary p f
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  if [[ -z "$summary" ]]; then
    echo "== $label: no summary (exit $status); log: $log"
    tail -20 "$log"
    failed=$((failed + 1))
    return
  fi
  read -r p _ f _ <<<"${summary//,/}"
  passed=$((passed + p))
  failed=$((failed + f))
  if ((status != 0 && f == 0)); then
    echo "== $label: exited $status; log: $log"
    failed=$((failed + 1))
  fi
}

for suite in "${unit_suites[@]}" "$e2e_suite"; do
  run_suite "$(basename "$suite")" "$build_dir" "$suite"
done

# The Vault client suites (hvac, node-vault) against a dev server of this build.
echo "== compat"
started=$SECONDS
KEYWARD_BINARY="$PWD/$build_dir/cli/keyward" tests/compat/run.sh 2>&1 | tee "$log_dir/compat.log" | \
  grep -E '^(== |FAIL|SKIP|[0-9]+ passed, [0-9]+ failed$)'
add_summary_line compat "$log_dir/compat.log" "${PIPESTATUS[0]}"
echo "== compat: $((SECONDS - started)) s"

# ---- Sanitizers ----
#
# Every sanitized process (test executables, the servers and CLIs they start, fuzz targets)
# writes its reports to files under one directory per suite run (log_path), because the
# end-to-end tests do not read every server's stderr. After the run each report counts as one
# failure and its file is printed. Suppressions for reports in code that is not keyward's are
# in tests/sanitizers/, each with its reason.
supp_dir="$PWD/tests/sanitizers"
report_root="$log_dir/sanitizer-reports"
if command -v llvm-symbolizer-14 >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH TSAN_SYMBOLIZER_PATH
  ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer-14)
  TSAN_SYMBOLIZER_PATH=$ASAN_SYMBOLIZER_PATH
fi

# Configures the sanitized build directory `dir` with clang and the given meson options (an
# existing one keeps its compiler), then builds `sanitized_targets` (all when empty). A failed
# build counts as one failure, and the function then returns non-zero.
build_sanitized() {
  local label=$1 dir=$2
  shift 2
  local werror=false started=$SECONDS
  [[ "${CI:-}" == "true" ]] && werror=true
  echo "== $label build ($dir)"
  if [[ -f "$dir/build.ninja" ]]; then
    meson setup --reconfigure "$dir" -Dwerror="$werror" "$@" >"$log_dir/$label-setup.log" 2>&1
  else
    CC=clang CXX=clang++ meson setup "$dir" --buildtype=debugoptimized -Dwerror="$werror" "$@" \
      >"$log_dir/$label-setup.log" 2>&1
  fi || {
    echo "== $label: meson setup failed; log: $log_dir/$label-setup.log"
    tail -20 "$log_dir/$label-setup.log"
    failed=$((failed + 1))
    return 1
  }
  if ! ninja -C "$dir" "${sanitized_targets[@]}" >"$log_dir/$label-build.log" 2>&1; then
    echo "== $label: build failed; log: $log_dir/$label-build.log"
    grep -E 'error|FAILED' "$log_dir/$label-build.log" | head -30
    failed=$((failed + 1))
    return 1
  fi
  echo "== $label build: $((SECONDS - started)) s"
}

# Counts the sanitizer reports in the files under `reports` as failures and prints the files.
# A file belongs to one process and may contain several reports, each ending in a SUMMARY line.
count_reports() {
  local label=$1 reports=$2 report count
  for report in "$reports"/*; do
    [[ -f "$report" ]] || continue
    count=$(grep -c '^SUMMARY: ' "$report")
    ((count > 0)) || count=1
    echo "== $label: $count sanitizer report(s) in $report"
    head -80 "$report"
    failed=$((failed + count))
  done
}

# Runs one suite (run_suite arguments) with the sanitizer options of `kind` (asan or tsan),
# each report going to a fresh directory, then counts the reports.
run_sanitized_suite() {
  local kind=$1 label=$2
  local reports="$report_root/$label"
  mkdir -p "$reports"
  local log="log_path=$reports/report"
  if [[ "$kind" == asan ]]; then
    # abort_on_error: a server that hits an error dies by SIGABRT, which the tests see as a
    # crash. UBSan keeps running after a report so that one run shows every report. ASan and
    # UBSan share one runtime, so both options name the same log_path.
    ASAN_OPTIONS="$log:abort_on_error=1:detect_leaks=1:check_initialization_order=1" \
    LSAN_OPTIONS="suppressions=$supp_dir/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="$log:print_stacktrace=1:halt_on_error=0:suppressions=$supp_dir/ubsan.supp" \
    KEYWARD_BULK_LEASES=2000 KEYWARD_CRASH_CYCLES=10 \
      run_suite "${@:2}"
  else
    TSAN_OPTIONS="$log:halt_on_error=0:second_deadlock_stack=1:suppressions=$supp_dir/tsan.supp" \
    KEYWARD_BULK_LEASES=2000 KEYWARD_CRASH_CYCLES=10 \
      run_suite "${@:2}"
  fi
  count_reports "$label" "$reports"
}

if [[ "${KEYWARD_SANITIZERS:-1}" != 0 ]]; then
  # ASan+UBSan, with clang because the fuzz targets in the same build need libFuzzer. Every
  # unit suite and the whole end-to-end suite run against this build's server.
  asan_dir="${KEYWARD_ASAN_BUILD_DIR:-build-asan}"
  asan_options=(-Dsanitize=true)
  if grep -q "option('fuzz'" meson_options.txt; then
    asan_options+=(-Dfuzz=true)
  fi
  sanitized_targets=()
  if build_sanitized asan "$asan_dir" "${asan_options[@]}"; then
    for suite in "${unit_suites[@]}"; do
      run_sanitized_suite asan "asan-$(basename "$suite")" "$asan_dir" "$suite"
    done
    # shellcheck disable=SC2086  # the doctest arguments are split on purpose
    run_sanitized_suite asan asan-e2e_test "$asan_dir" "$e2e_suite" ${KEYWARD_ASAN_E2E_ARGS:-}

    if [[ -x scripts/fuzz.sh ]]; then
      # fuzz.sh makes every report a crash (UBSan included) and counts it by exit status.
      echo "== asan-fuzz"
      started=$SECONDS
      LSAN_OPTIONS="suppressions=$supp_dir/lsan.supp:print_suppressions=0" \
      UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp_dir/ubsan.supp" \
        scripts/fuzz.sh --runs "${KEYWARD_FUZZ_RUNS:-20000}" "$asan_dir" 2>&1 | \
        tee "$log_dir/asan-fuzz.log" | grep -E '^(fuzz_|[0-9]+ passed, [0-9]+ failed$)'
      add_summary_line asan-fuzz "$log_dir/asan-fuzz.log" "${PIPESTATUS[0]}"
      echo "== asan-fuzz: $((SECONDS - started)) s"
    fi
  fi

  # TSan builds only what the concurrency tests need: the server, the suites below, and the
  # end-to-end suite (its SDK example programs are not run here).
  tsan_dir="${KEYWARD_TSAN_BUILD_DIR:-build-tsan}"
  tsan_unit_runs=(
    # Every test of these suites runs threads: the storage commit thread and the HTTP
    # server's listener and workers.
    "unit_storage|tests/unit/storage/unit_storage|"
    "unit_http|tests/unit/api/unit_http|"
    # The test cases of the other suites that start threads.
    "unit_hsm|tests/unit/hsm/unit_hsm|concurrent*"
    "unit_audit|tests/unit/vault/audit/unit_audit|concurrent*"
    "unit_vault|tests/unit/vault/unit_vault|concurrent*,quota holds*,worker thread*,static roles rotate*"
    "unit_api|tests/unit/api/unit_api|unseal waits for requests*"
  )
  # The end-to-end cases that drive one server from several clients at once: concurrent
  # writers and logins, reads during a bulk revocation, kills during writes, slow clients.
  tsan_e2e_cases=(
    "*concurrent*"
    "bulk revoke-prefix while other clients read"
    "no child survives a revocation that races*"
    "kill -9*"
    "slowloris*"
    "per-address connection limit"
    "slow bodies and stalled readers*"
    "stalled TLS handshakes*"
  )
  sanitized_targets=(cli/keyward "$e2e_suite")
  for entry in "${tsan_unit_runs[@]}"; do
    IFS='|' read -r _ suite _ <<<"$entry"
    sanitized_targets+=("$suite")
  done
  if build_sanitized tsan "$tsan_dir" -Db_sanitize=thread; then
    for entry in "${tsan_unit_runs[@]}"; do
      IFS='|' read -r name suite cases <<<"$entry"
      filter=()
      [[ -n "$cases" ]] && filter=("-tc=$cases")
      run_sanitized_suite tsan "tsan-$name" "$tsan_dir" "$suite" "${filter[@]}"
    done
    run_sanitized_suite tsan tsan-e2e_test "$tsan_dir" "$e2e_suite" \
      "-tc=$(IFS=,; echo "${tsan_e2e_cases[*]}")"
  fi
fi

echo "$passed passed, $failed failed"
((failed == 0))
