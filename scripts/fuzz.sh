#!/usr/bin/env bash
# Runs every libFuzzer target of a build made with -Dfuzz=true (clang), for a bounded time.
#
#   scripts/fuzz.sh [--runs N | --seconds S] BUILD_DIR
#
# For each tests/fuzz/corpus/<name>/, the target BUILD_DIR/tests/fuzz/fuzz_<name> first
# replays every file in tests/fuzz/regressions/<name>/, then fuzzes for N runs (or S seconds)
# starting from a temporary copy of the committed corpus, so no new corpus file lands in the
# repository. Default: --seconds 60.
# Prints one line per target and then "N passed, N failed"; exits 1 when any target crashed,
# failed a check or was not built. Crash inputs and fuzzer logs go to BUILD_DIR/fuzz-artifacts/
# and BUILD_DIR/fuzz-logs/. Copy a crash input into tests/fuzz/regressions/<name>/ once fixed.
set -euo pipefail

usage() {
  echo "usage: scripts/fuzz.sh [--runs N | --seconds S] BUILD_DIR" >&2
  exit 2
}

bound=(-max_total_time=60)
bound_text="60 s"
build_dir=""
while (($# > 0)); do
  case "$1" in
    --runs)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage
      bound=(-runs="$2")
      bound_text="$2 runs"
      shift 2
      ;;
    --seconds)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage
      bound=(-max_total_time="$2")
      bound_text="$2 s"
      shift 2
      ;;
    -h | --help) usage ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
    *)
      [[ -z "$build_dir" ]] || usage
      build_dir="$1"
      shift
      ;;
  esac
done
[[ -n "$build_dir" ]] || usage
[[ -d "$build_dir" ]] || { echo "fuzz.sh: no build directory $build_dir" >&2; exit 2; }
build_dir="$(cd "$build_dir" && pwd)"
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
corpus_root="$source_dir/tests/fuzz/corpus"
regression_root="$source_dir/tests/fuzz/regressions"

# A UBSan report must fail the run like an ASan one; callers may set their own options.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/keyward-fuzz.XXXXXX")"
trap 'rm -rf "$work_dir"' EXIT
mkdir -p "$build_dir/fuzz-artifacts" "$build_dir/fuzz-logs"

passed=0
failed=0
for corpus in "$corpus_root"/*/; do
  name="$(basename "$corpus")"
  binary="$build_dir/tests/fuzz/fuzz_$name"
  log="$build_dir/fuzz-logs/$name.log"
  artifacts="$build_dir/fuzz-artifacts/$name/"
  if [[ ! -x "$binary" ]]; then
    echo "fuzz_$name: FAILED: $binary not built (configure with -Dfuzz=true and clang)"
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$artifacts"
  : > "$log"

  regressions=()
  if [[ -d "$regression_root/$name" ]]; then
    mapfile -t regressions < <(find "$regression_root/$name" -type f | sort)
  fi
  if ((${#regressions[@]} > 0)) &&
      ! "$binary" -artifact_prefix="$artifacts" "${regressions[@]}" >> "$log" 2>&1; then
    echo "fuzz_$name: FAILED: a regression input crashes again (log: $log)"
    tail -n 40 "$log" | sed 's/^/    /'
    failed=$((failed + 1))
    continue
  fi

  scratch="$work_dir/$name"
  mkdir -p "$scratch"
  cp -R "$corpus". "$scratch/"
  start=$SECONDS
  if "$binary" "${bound[@]}" -timeout=30 -artifact_prefix="$artifacts" -print_final_stats=1 \
      "$scratch" >> "$log" 2>&1; then
    inputs=$(find "$scratch" -type f | wc -l)
    echo "fuzz_$name: passed ($bound_text, regression inputs ${#regressions[@]}," \
         "corpus $inputs inputs, $((SECONDS - start)) s)"
    passed=$((passed + 1))
  else
    crash=$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //')
    echo "fuzz_$name: FAILED: ${crash:+input $crash, }log $log"
    tail -n 40 "$log" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
((failed == 0))
