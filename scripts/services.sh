#!/usr/bin/env bash
# Start (or stop) the servers the integration tests need, on loopback only:
#   - PostgreSQL (Debian's package, installed with apt-get when missing)
#   - an S3-compatible server (moto's server mode, from the project's venv)
#   - MariaDB (Debian's mariadb-server, installed with apt-get when missing), on a free port
#   - a Snowflake stand-in (fakesnow's server mode, from the project's venv), on a free port
# Connection details go to .ci-state/services.env, which scripts/test.sh sources.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.ci-state"
VENV="${VENV:-.venv}"
PG_PORT="${DGS_PG_PORT:-55432}"
S3_PORT="${DGS_S3_PORT:-55900}"
# MariaDB and fakesnow take a free loopback port unless one is given.
MYSQL_PORT="${DGS_MYSQL_PORT:-}"
SNOWFLAKE_PORT="${DGS_SNOWFLAKE_PORT:-}"
mkdir -p "$STATE"

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

# Install Debian package $2 (named $1 in messages) as root; elsewhere say its tests will skip.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: $1 is not installed and this is not root; its integration tests will skip" >&2
    return 1
  fi
  echo "services: installing $1 from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$2" >/dev/null
}

install_postgres() {
  find_pg_bin >/dev/null || apt_install PostgreSQL postgresql
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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The port a running server of ours listens on (kept beside its pid), else a free one.
port_of() {
  local file="$1" wanted="$2"
  if [ -n "$wanted" ]; then echo "$wanted"; elif [ -f "$file" ]; then cat "$file"; else free_port; fi
}

install_mariadb() {
  command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 && return 0
  apt_install MariaDB mariadb-server
}

start_mariadb() {
  install_mariadb || return 0
  local data="$STATE/mariadb" pidfile="$STATE/mariadb.pid" port
  port="$(port_of "$STATE/mariadb.port" "$MYSQL_PORT")"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "services: MariaDB already running on 127.0.0.1:$port"
  else
    rm -rf "$data"
    mkdir -p "$data"
    # mariadbd runs as the user it is given; as root, the data directory belongs to root and it runs as root.
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$STATE/mariadb-install.log" 2>&1
    nohup mariadbd --no-defaults --user="$(id -un)" --datadir="$data/data" --bind-address=127.0.0.1 --port="$port" \
      --socket="$data/mysqld.sock" --pid-file="$data/mysqld.pid" --skip-name-resolve \
      --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M >"$STATE/mariadb.log" 2>&1 &
    echo $! >"$pidfile"
    echo "$port" >"$STATE/mariadb.port"
    for _ in $(seq 1 150); do
      mariadb --no-defaults --socket="$data/mysqld.sock" -uroot -e "SELECT 1" >/dev/null 2>&1 && break
      sleep 0.2
    done
    mariadb --no-defaults --socket="$data/mysqld.sock" -uroot -e \
      "CREATE DATABASE dgs CHARACTER SET utf8mb4; CREATE USER 'dgs'@'127.0.0.1' IDENTIFIED BY 'dgs'; GRANT ALL ON dgs.* TO 'dgs'@'127.0.0.1';"
    echo "services: MariaDB started on 127.0.0.1:$port"
  fi
  echo "DGS_TEST_MYSQL_URI=mysql://dgs:dgs@127.0.0.1:$port/dgs" >> "$STATE/services.env.new"
}

start_snowflake() {
  local pidfile="$STATE/fakesnow.pid" port
  if [ ! -x "$VENV/bin/fakesnow" ]; then
    echo "services: fakesnow is not installed in $VENV; Snowflake tests will skip" >&2
    return 0
  fi
  port="$(port_of "$STATE/fakesnow.port" "$SNOWFLAKE_PORT")"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "services: Snowflake stand-in (fakesnow) already running on 127.0.0.1:$port"
  else
    rm -rf "$STATE/fakesnow"
    mkdir -p "$STATE/fakesnow"
    nohup "$VENV/bin/fakesnow" -s --host 127.0.0.1 -p "$port" -d "$STATE/fakesnow" >"$STATE/fakesnow.log" 2>&1 &
    echo $! >"$pidfile"
    echo "$port" >"$STATE/fakesnow.port"
    for _ in $(seq 1 150); do
      python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1)" 2>/dev/null && break
      sleep 0.2
    done
    echo "services: Snowflake stand-in (fakesnow) started on 127.0.0.1:$port"
  fi
  echo "DGS_TEST_SNOWFLAKE_URI=snowflake://fake:snow@127.0.0.1:$port" >> "$STATE/services.env.new"
}

# Stop the server whose pid is in $1 (ours only: by pid), waiting up to 10 s.
stop_pid() {
  local pidfile="$1" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}

stop_all() {
  local bin
  if [ -f "$STATE/moto.pid" ]; then kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true; rm -f "$STATE/moto.pid"; fi
  stop_pid "$STATE/mariadb.pid"
  stop_pid "$STATE/fakesnow.pid"
  rm -f "$STATE/mariadb.port" "$STATE/fakesnow.port"
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
    start_mariadb
    start_snowflake
    mv "$STATE/services.env.new" "$STATE/services.env"
    ;;
  stop) stop_all ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
