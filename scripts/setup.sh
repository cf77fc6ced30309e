#!/usr/bin/env bash
# Installs every build and test dependency from Debian packages (non-interactive, idempotent)
# and builds keyward into ./build. Run as root on Debian 12.
#   KEYWARD_BUILD_DIR   build directory (default: build)
#   KEYWARD_BUILDTYPE   meson buildtype (default: debugoptimized)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ meson ninja-build pkg-config git
  libsodium-dev libsqlite3-dev sqlite3 zlib1g-dev
  libboost-dev libcpp-httplib-dev nlohmann-json3-dev libssl-dev openssl
  libspdlog-dev libexpected-dev doctest-dev
  softhsm2 libsofthsm2 libp11-kit-dev opensc
  libpq-dev curl procps
  postgresql
  libyaml-cpp-dev python3-hvac
  # tests/e2e/metrics_test.cpp parses the Prometheus text format with the client library's
  # parser (it loads only in /usr/bin/python3).
  python3-prometheus-client
  # The sanitized builds of scripts/test.sh and the fuzz targets: clang 14, its sanitizer and
  # libFuzzer runtimes (libclang_rt.*, only recommended by clang), and llvm-symbolizer-14 for
  # readable stack traces in the reports.
  clang libclang-rt-14-dev llvm-14
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node.js and npm run the jose JWT-SVID checks of the end-to-end tests. A node already on
# PATH (with its own npm) is kept; Debian's packages come in only when npm is missing.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends nodejs npm
fi
# npm ci only when node_modules was not installed from this package-lock.json, so a second
# run needs no network. tests/e2e/jose contains jose for the JWT-SVID checks (without it they
# fail under CI=true and are skipped otherwise); tests/compat/node contains node-vault for the
# client compatibility suite (without it tests/compat/run.sh counts that suite as failed).
for npm_dir in tests/e2e/jose tests/compat/node; do
  if ! cmp -s "$npm_dir/package-lock.json" "$npm_dir/node_modules/.keyward-installed-lock"; then
    if (cd "$npm_dir" && npm ci --ignore-scripts --no-audit --no-fund); then
      cp "$npm_dir/package-lock.json" "$npm_dir/node_modules/.keyward-installed-lock"
    else
      echo "setup: npm ci failed in $npm_dir"
    fi
  fi
done

build_dir="${KEYWARD_BUILD_DIR:-build}"
werror=false
[[ "${CI:-}" == "true" ]] && werror=true
if [[ ! -f "$build_dir/build.ninja" ]]; then
  meson setup "$build_dir" --buildtype="${KEYWARD_BUILDTYPE:-debugoptimized}" -Dwerror="$werror"
fi
ninja -C "$build_dir"
