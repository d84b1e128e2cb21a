#!/usr/bin/env bash
# Start (or stop) the servers the integration tests need, on loopback only:
#   - PostgreSQL (Debian's package, installed with apt-get when missing)
#   - an S3-compatible server (moto's server mode, from the project's venv)
# Connection details go to .ci-state/services.env, which scripts/test.sh sources.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.ci-state"
VENV="${VENV:-.venv}"
PG_PORT="${DGS_PG_PORT:-55432}"
S3_PORT="${DGS_S3_PORT:-55900}"
mkdir -p "$STATE"

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

install_postgres() {
  if find_pg_bin >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "services: PostgreSQL is not installed and this is not root; integration tests will skip" >&2
    return 1
  fi
  echo "services: installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
}

start_postgres() {
  install_postgres || return 0
  local bin data sock
  bin="$(find_pg_bin)"
  data="$STATE/pgdata"
  sock="$STATE/pgsock"
  # PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$STATE" postgres
    run_as=(runuser -u postgres --)
  fi
  if [ -f "$data/postmaster.pid" ] && "${run_as[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "services: PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    [ -f "$data/postmaster.pid" ] && "${run_as[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data" "$sock"
    mkdir -p "$data" "$sock"
    if [ "$(id -u)" = 0 ]; then
      chown -R postgres "$data" "$sock"
      chmod o+rx "$STATE"
    fi
    "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $sock -c fsync=off" start >/dev/null
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -q -c "CREATE USER dgs WITH PASSWORD 'dgs';" \
      -c "CREATE DATABASE dgs OWNER dgs;" >/dev/null
    echo "services: PostgreSQL started on 127.0.0.1:$PG_PORT"
  fi
  echo "DGS_TEST_POSTGRES_URI=postgresql://dgs:dgs@127.0.0.1:$PG_PORT/dgs" >> "$STATE/services.env.new"
}

start_s3() {
  local pidfile="$STATE/moto.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "services: S3-compatible server already running on 127.0.0.1:$S3_PORT"
  else
    # Tests count the requests the server receives with moto's recorder (off until a test starts it);
    # its file goes to the state folder, not the working directory.
    MOTO_RECORDER_FILEPATH="$STATE/moto_recording" \
      nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$S3_PORT/moto-api/', timeout=1)" 2>/dev/null; then
        break
      fi
      sleep 0.2
    done
    echo "services: S3-compatible server (moto) started on 127.0.0.1:$S3_PORT"
  fi
  echo "DGS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT" >> "$STATE/services.env.new"
}

stop_all() {
  local bin
  if [ -f "$STATE/moto.pid" ]; then kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true; rm -f "$STATE/moto.pid"; fi
  if [ -d "$STATE/pgdata" ] && bin="$(find_pg_bin)"; then
    local run_as=()
    [ "$(id -u)" = 0 ] && run_as=(runuser -u postgres --)
    "${run_as[@]}" "$bin/pg_ctl" -D "$STATE/pgdata" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -f "$STATE/services.env"
}

case "${1:-start}" in
  start)
    rm -f "$STATE/services.env.new"
    start_postgres
    start_s3
    mv "$STATE/services.env.new" "$STATE/services.env"
    ;;
  stop) stop_all ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
