#!/usr/bin/env bash
# Runs a throwaway PostgreSQL 15 cluster for the tests: a fresh data directory, listening only
# on 127.0.0.1, password (SCRAM) authentication, a superuser `kwadmin` with a random password.
#   scripts/postgres.sh start    initialise and start; prints the connection URL
#   scripts/postgres.sh stop     stop the server and remove the cluster
#   scripts/postgres.sh pause    stop the server, keep the cluster (tests of an unreachable database)
#   scripts/postgres.sh resume   start a paused cluster again on the same port
#   scripts/postgres.sh env      print `export KEYWARD_TEST_PG_URL=...` for a running cluster
# Environment:
#   KEYWARD_PG_DIR   where the cluster and its files live (default: $TMPDIR/keyward-test-pg)
#   KEYWARD_PG_PORT  first port to try (default: 55432; the next free one of 100 is taken)
# The URL (it contains the password) goes to $KEYWARD_PG_DIR/url, mode 0600; the tests read it
# from there when KEYWARD_TEST_PG_URL is not set. As root, the server runs as the system user
# `kwpg` (created when missing), because initdb and postgres refuse to run as root.
set -euo pipefail

pg_dir="${KEYWARD_PG_DIR:-${TMPDIR:-/tmp}/keyward-test-pg}"
pg_bin=/usr/lib/postgresql/15/bin
pg_user=kwpg
data_dir="$pg_dir/data"
url_file="$pg_dir/url"
port_file="$pg_dir/port"
log_file="$pg_dir/server.log"

die() { echo "postgres.sh: $*" >&2; exit 1; }

ensure_installed() {
  [[ -x "$pg_bin/initdb" ]] && return
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL 15 is missing: run apt-get install postgresql as root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
}

# Runs a command as the cluster owner: kwpg when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

ensure_owner() {
  [[ $(id -u) -eq 0 ]] || return 0
  id "$pg_user" >/dev/null 2>&1 && return
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$pg_user"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port="${KEYWARD_PG_PORT:-55432}"
  for ((i = 0; i < 100; i++, port++)); do
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
  done
  die "no free port in ${KEYWARD_PG_PORT:-55432}..$((port - 1))"
}

start_server() {
  as_owner "$pg_bin/pg_ctl" -D "$data_dir" -l "$log_file" -w -t 60 start >/dev/null ||
    { tail -20 "$log_file" >&2; die "pg_ctl start failed; log: $log_file"; }
}

cmd_start() {
  ensure_installed
  ensure_owner
  if [[ -f "$data_dir/postmaster.pid" ]]; then
    die "a cluster already runs in $pg_dir: run '$0 stop' first"
  fi
  rm -rf "$pg_dir"
  mkdir -p "$pg_dir"
  chmod 0700 "$pg_dir"
  [[ $(id -u) -eq 0 ]] && chown "$pg_user" "$pg_dir"

  local password port
  password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
  port=$(free_port)
  local password_file="$pg_dir/admin-password"
  (umask 077 && printf '%s\n' "$password" >"$password_file")
  [[ $(id -u) -eq 0 ]] && chown "$pg_user" "$password_file"

  as_owner "$pg_bin/initdb" -D "$data_dir" -U kwadmin --pwfile="$password_file" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  # A throwaway cluster: durability is not needed, speed of CREATE/DROP ROLE is.
  cat >>"$data_dir/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pg_dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
EOF
  echo "$port" >"$port_file"
  start_server

  (umask 077 && printf 'postgresql://kwadmin:%s@127.0.0.1:%s/postgres\n' "$password" "$port" \
    >"$url_file")
  echo "postgres.sh: PostgreSQL 15 on 127.0.0.1:$port, data in $data_dir"
  echo "postgres.sh: connection URL in $url_file"
}

cmd_stop() {
  if [[ -f "$data_dir/postmaster.pid" ]]; then
    as_owner "$pg_bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$pg_dir"
}

cmd_pause() {
  [[ -f "$data_dir/postmaster.pid" ]] || die "no running cluster in $pg_dir"
  as_owner "$pg_bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null
}

cmd_resume() {
  [[ -d "$data_dir" ]] || die "no cluster in $pg_dir: run '$0 start'"
  local port
  port=$(cat "$port_file")
  port_in_use "$port" && die "port $port was taken while the cluster was paused"
  start_server
}

cmd_env() {
  [[ -f "$url_file" ]] || die "no cluster in $pg_dir: run '$0 start'"
  echo "export KEYWARD_TEST_PG_URL='$(cat "$url_file")'"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  pause) cmd_pause ;;
  resume) cmd_resume ;;
  env) cmd_env ;;
  *) die "usage: $0 start|stop|pause|resume|env" ;;
esac
