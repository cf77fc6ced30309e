#!/usr/bin/env bash
# Sets up, builds and runs `keyward server -dev` on its embedded defaults: a SQLite file and a
# SoftHSM token that it creates in ./keyward-dev on first start and reuses afterwards.
# Extra arguments go to the server, such as -dev-listen-address=127.0.0.1:8300.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${KEYWARD_BUILD_DIR:-build}/cli/keyward" server -dev "$@"
