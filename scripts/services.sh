#!/usr/bin/env bash
# Start (or stop) the servers the integration tests need, on loopback only:
#   - PostgreSQL (Debian's package, installed with apt-get when missing)
#   - an S3-compatible server (moto's server mode, from the project's venv)
#   - MariaDB (Debian's mariadb-server, installed with apt-get when missing), on a free port
#   - a Snowflake stand-in (fakesnow's server mode, from the project's venv), on a free port
#   - a Google Cloud Storage server (gcp-storage-emulator, from the project's venv)
#   - an Azure Blob server (Azurite, from the npm registry, run with node)
# Connection details go to .ci-state/services.env, which scripts/test.sh sources.
#
#   bash scripts/services.sh start          # start what is not running yet
#   bash scripts/services.sh stop           # stop every server this clone started, by process id
#   bash scripts/services.sh status
#   bash scripts/services.sh run CMD...     # start what is not running, run CMD, then stop only what
#                                           # this call started (DGS_KEEP_SERVICES=1 keeps them)
#
# PostgreSQL runs as the `postgres` user when this is root, and that user must reach its data
# directory: a clone under a 0700 folder (root's home, mktemp -d) is out of its reach, so the data
# directory lives in /var/tmp, in a folder owned by postgres and named after this clone's path.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.ci-state"
VENV="${VENV:-.venv}"
# Every server takes a free loopback port unless one is given (kept beside its state while it runs).
PG_PORT="${DGS_PG_PORT:-}"
S3_PORT="${DGS_S3_PORT:-}"
MYSQL_PORT="${DGS_MYSQL_PORT:-}"
SNOWFLAKE_PORT="${DGS_SNOWFLAKE_PORT:-}"
#: Azurite from the npm registry, installed once per version outside the clone (npm's cache helps too).
AZURITE_VERSION=3.37.0
AZURITE_HOME="${DGS_AZURITE_HOME:-/var/tmp/dgsentiment-azurite-$AZURITE_VERSION}"
#: Azurite's well-known development account (public, in Azure's docs): the only one it serves.
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SERVICES=(postgres s3 mariadb snowflake gcs azure)
mkdir -p "$STATE"

log() { echo "services: $*" >&2; }

clone_key() { printf '%s' "$PWD" | sha1sum | cut -c1-12; }

pg_root() {
  # Where PostgreSQL's files live: reachable by the user it runs as, one folder per clone.
  if [ -n "${DGS_PG_STATE:-}" ]; then echo "$DGS_PG_STATE"; return; fi
  echo "/var/tmp/dgsentiment-postgres-$(id -u)-$(clone_key)"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_up() {
  "$VENV/bin/python" -c "import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer: the server is up" "$1" 2>/dev/null
}

wait_http() {
  # wait_http WHAT URL LOG: up to 30 s, else fail naming the log.
  local what="$1" url="$2" logfile="$3"
  for _ in $(seq 1 150); do
    http_up "$url" && return 0
    sleep 0.2
  done
  log "$what did not answer on $url within 30 s; its log: $logfile"
  tail -20 "$logfile" >&2 || true
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  # stop_pid PIDFILE: TERM the process (ours only: by pid), wait up to 10 s, then KILL it.
  local pidfile="$1" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------------- PostgreSQL

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

apt_install() {
  # apt_install WHAT PACKAGE...: Debian's packages, as root only (else the tests needing them skip).
  local what="$1"; shift
  if [ "$(id -u)" != 0 ]; then
    log "$what is not installed and this is not root; the tests that need it will skip"
    return 1
  fi
  log "installing $what from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}

install_postgres() {
  find_pg_bin >/dev/null || apt_install PostgreSQL postgresql
}

pg_run_as() {
  # PostgreSQL refuses to run as root: as root, run its tools as the postgres user, from / (the
  # clone may sit in a folder postgres cannot enter).
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

postgres_running() {
  local bin data
  bin="$(find_pg_bin 2>/dev/null)" || return 1
  data="$(pg_root)/pgdata"
  [ -f "$data/postmaster.pid" ] && pg_run_as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start_postgres() {
  install_postgres || return 0
  local bin root data sock
  bin="$(find_pg_bin)"
  root="$(pg_root)"
  data="$root/pgdata"
  sock="$root/pgsock"
  if postgres_running; then
    PG_PORT="$(cat "$root.port" 2>/dev/null || echo "$PG_PORT")"
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    [ -f "$data/postmaster.pid" ] && pg_run_as "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$root"
    mkdir -p "$data" "$sock"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
      chown -R postgres "$root"
    fi
    chmod 700 "$data"
    PG_PORT="${PG_PORT:-$(free_port)}"
    echo "$PG_PORT" >"$root.port"
    pg_run_as "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    pg_run_as "$bin/pg_ctl" -D "$data" -l "$root/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $sock -c fsync=off" start >/dev/null
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -q -c "CREATE USER dgs WITH PASSWORD 'dgs';" \
      -c "CREATE DATABASE dgs OWNER dgs;" >/dev/null
    log "PostgreSQL started on 127.0.0.1:$PG_PORT (data in $data)"
  fi
  echo "DGS_TEST_POSTGRES_URI=postgresql://dgs:dgs@127.0.0.1:$PG_PORT/dgs" >>"$STATE/services.env.new"
}

stop_postgres() {
  local bin root
  root="$(pg_root)"
  if [ -d "$root/pgdata" ] && bin="$(find_pg_bin)"; then
    pg_run_as "$bin/pg_ctl" -D "$root/pgdata" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$root"
  fi
  rm -f "$root.port"
}

# ---------------------------------------------------------------------- S3 (moto)

s3_running() { pid_alive "$STATE/moto.pid"; }

start_s3() {
  if s3_running; then
    S3_PORT="$(cat "$STATE/moto.port")"
    log "S3-compatible server already running on 127.0.0.1:$S3_PORT"
  else
    # Tests count the requests the server receives with moto's recorder (off until a test starts it);
    # its file goes to the state folder, not the working directory.
    S3_PORT="${S3_PORT:-$(free_port)}"
    MOTO_RECORDER_FILEPATH="$STATE/moto_recording" \
      nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pid"
    echo "$S3_PORT" >"$STATE/moto.port"
    wait_http "S3-compatible server (moto)" "http://127.0.0.1:$S3_PORT/moto-api/" "$STATE/moto.log"
    log "S3-compatible server (moto) started on 127.0.0.1:$S3_PORT"
  fi
  echo "DGS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT" >>"$STATE/services.env.new"
}

stop_s3() { stop_pid "$STATE/moto.pid"; rm -f "$STATE/moto.port"; }

# ---------------------------------------------------------------------- MariaDB and fakesnow

# The port a running server of ours listens on (kept beside its pid), else a free one.
port_of() {
  local file="$1" wanted="$2"
  if [ -n "$wanted" ]; then echo "$wanted"; elif [ -f "$file" ]; then cat "$file"; else free_port; fi
}

install_mariadb() {
  command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 && return 0
  apt_install MariaDB mariadb-server
}

mariadb_running() { pid_alive "$STATE/mariadb.pid"; }

start_mariadb() {
  install_mariadb || return 0
  local data="$STATE/mariadb" port
  port="$(port_of "$STATE/mariadb.port" "$MYSQL_PORT")"
  if mariadb_running; then
    log "MariaDB already running on 127.0.0.1:$port"
  else
    rm -rf "$data"
    mkdir -p "$data"
    # mariadbd runs as the user it is given; as root, the data directory belongs to root and it runs as root.
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$STATE/mariadb-install.log" 2>&1
    nohup mariadbd --no-defaults --user="$(id -un)" --datadir="$data/data" --bind-address=127.0.0.1 --port="$port" \
      --socket="$data/mysqld.sock" --pid-file="$data/mysqld.pid" --skip-name-resolve \
      --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M >"$STATE/mariadb.log" 2>&1 &
    echo $! >"$STATE/mariadb.pid"
    echo "$port" >"$STATE/mariadb.port"
    for _ in $(seq 1 150); do
      mariadb --no-defaults --socket="$data/mysqld.sock" -uroot -e "SELECT 1" >/dev/null 2>&1 && break
      sleep 0.2
    done
    mariadb --no-defaults --socket="$data/mysqld.sock" -uroot -e \
      "CREATE DATABASE dgs CHARACTER SET utf8mb4; CREATE USER 'dgs'@'127.0.0.1' IDENTIFIED BY 'dgs'; GRANT ALL ON dgs.* TO 'dgs'@'127.0.0.1';"
    log "MariaDB started on 127.0.0.1:$port"
  fi
  echo "DGS_TEST_MYSQL_URI=mysql://dgs:dgs@127.0.0.1:$port/dgs" >>"$STATE/services.env.new"
}

stop_mariadb() { stop_pid "$STATE/mariadb.pid"; rm -f "$STATE/mariadb.port"; }

snowflake_running() { pid_alive "$STATE/fakesnow.pid"; }

start_snowflake() {
  local port
  if [ ! -x "$VENV/bin/fakesnow" ]; then
    log "fakesnow is not installed in $VENV; Snowflake tests will skip"
    return 0
  fi
  port="$(port_of "$STATE/fakesnow.port" "$SNOWFLAKE_PORT")"
  if snowflake_running; then
    log "Snowflake stand-in (fakesnow) already running on 127.0.0.1:$port"
  else
    rm -rf "$STATE/fakesnow"
    mkdir -p "$STATE/fakesnow"
    nohup "$VENV/bin/fakesnow" -s --host 127.0.0.1 -p "$port" -d "$STATE/fakesnow" >"$STATE/fakesnow.log" 2>&1 &
    echo $! >"$STATE/fakesnow.pid"
    echo "$port" >"$STATE/fakesnow.port"
    for _ in $(seq 1 150); do
      "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1)" 2>/dev/null && break
      sleep 0.2
    done
    log "Snowflake stand-in (fakesnow) started on 127.0.0.1:$port"
  fi
  echo "DGS_TEST_SNOWFLAKE_URI=snowflake://fake:snow@127.0.0.1:$port" >>"$STATE/services.env.new"
}

stop_snowflake() { stop_pid "$STATE/fakesnow.pid"; rm -f "$STATE/fakesnow.port"; }

# ---------------------------------------------------------------------- GCS (gcp-storage-emulator)

gcs_running() { pid_alive "$STATE/gcs.pid"; }

start_gcs() {
  if [ ! -x "$VENV/bin/gcp-storage-emulator" ]; then
    log "gcp-storage-emulator is not in $VENV (the test extra installs it); GCS tests will skip"
    return 0
  fi
  # gs:// needs the google provider (the gcs extra), which make venv leaves out: its install is the
  # size of everything else together. Without it the GCS tests skip, and no server is needed.
  if ! "$VENV/bin/python" -c "import airflow.providers.google" 2>/dev/null; then
    log "the google provider is not in $VENV (pip install -e '.[gcs]'); GCS tests will skip"
    return 0
  fi
  if gcs_running; then
    log "GCS server already running at $(cat "$STATE/gcs.endpoint")"
  else
    local port
    port="${DGS_GCS_PORT:-$(free_port)}"
    # --in-memory: nothing on disk, nothing left behind when it stops.
    nohup "$VENV/bin/gcp-storage-emulator" start --host 127.0.0.1 --port "$port" --in-memory \
      >"$STATE/gcs.log" 2>&1 &
    echo $! >"$STATE/gcs.pid"
    echo "http://127.0.0.1:$port" >"$STATE/gcs.endpoint"
    wait_http "GCS server (gcp-storage-emulator)" "http://127.0.0.1:$port/storage/v1/b" "$STATE/gcs.log"
    log "GCS server (gcp-storage-emulator) started on 127.0.0.1:$port"
  fi
  echo "DGS_TEST_GCS_ENDPOINT=$(cat "$STATE/gcs.endpoint")" >>"$STATE/services.env.new"
}

stop_gcs() { stop_pid "$STATE/gcs.pid"; rm -f "$STATE/gcs.endpoint"; }

# ---------------------------------------------------------------------- Azure Blob (Azurite)

install_azurite() {
  [ -x "$AZURITE_HOME/node_modules/.bin/azurite-blob" ] && return 0
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install "node and npm" nodejs npm || return 1
  fi
  log "installing azurite@$AZURITE_VERSION from the npm registry into $AZURITE_HOME"
  local partial="$AZURITE_HOME.partial.$$"
  rm -rf "$partial"
  mkdir -p "$partial"
  npm install --silent --no-audit --no-fund --prefix "$partial" "azurite@$AZURITE_VERSION" >"$STATE/azurite-install.log" 2>&1 \
    || { log "npm install azurite failed; its log: $STATE/azurite-install.log"; tail -20 "$STATE/azurite-install.log" >&2; return 1; }
  rm -rf "$AZURITE_HOME"
  mv "$partial" "$AZURITE_HOME"
}

azure_running() { pid_alive "$STATE/azurite.pid"; }

start_azure() {
  install_azurite || return 0
  local endpoint
  if azure_running; then
    log "Azure Blob server already running at $(cat "$STATE/azurite.endpoint")"
  else
    local port
    port="${DGS_AZURE_PORT:-$(free_port)}"
    # --inMemoryPersistence: blobs in memory only; --disableTelemetry: no call home;
    # --skipApiVersionCheck: the Python SDK may speak a newer API version than this Azurite.
    nohup node "$AZURITE_HOME/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
      --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose --silent \
      >"$STATE/azurite.log" 2>&1 &
    echo $! >"$STATE/azurite.pid"
    echo "http://127.0.0.1:$port/$AZURITE_ACCOUNT" >"$STATE/azurite.endpoint"
    wait_http "Azure Blob server (Azurite)" "http://127.0.0.1:$port/$AZURITE_ACCOUNT?comp=list" "$STATE/azurite.log"
    log "Azure Blob server (Azurite $AZURITE_VERSION) started on 127.0.0.1:$port"
  fi
  endpoint="$(cat "$STATE/azurite.endpoint")"
  {
    echo "DGS_TEST_AZURE_BLOB_ENDPOINT=$endpoint"
    echo "DGS_TEST_AZURE_ACCOUNT=$AZURITE_ACCOUNT"
    echo "DGS_TEST_AZURE_KEY=$AZURITE_KEY"
  } >>"$STATE/services.env.new"
}

stop_azure() { stop_pid "$STATE/azurite.pid"; rm -f "$STATE/azurite.endpoint"; }

# ---------------------------------------------------------------------- all of them

running() { "${1}_running"; }

start_all() {
  rm -f "$STATE/services.env.new"
  touch "$STATE/services.env.new"
  local service
  for service in "${SERVICES[@]}"; do "start_$service"; done
  mv "$STATE/services.env.new" "$STATE/services.env"
}

stop_all() {
  local service
  for service in "${SERVICES[@]}"; do "stop_$service"; done
  rm -f "$STATE/services.env"
}

status() {
  local service
  for service in "${SERVICES[@]}"; do
    if running "$service"; then echo "$service: running"; else echo "$service: stopped"; fi
  done
}

run_with_services() {
  # Start what is not running, run "$@", stop what this call started (by pid), keep its exit code.
  local service started=()
  for service in "${SERVICES[@]}"; do running "$service" || started+=("$service"); done
  start_all
  local rc=0
  "$@" || rc=$?
  if [ "${DGS_KEEP_SERVICES:-}" = 1 ]; then
    log "DGS_KEEP_SERVICES=1: leaving ${started[*]:-nothing} running (bash scripts/services.sh stop)"
  else
    for service in "${started[@]}"; do "stop_$service"; done
    [ "${#started[@]}" = "${#SERVICES[@]}" ] && rm -f "$STATE/services.env"
    [ "${#started[@]}" = 0 ] || log "stopped ${started[*]}"
  fi
  return "$rc"
}

case "${1:-start}" in
  start) start_all ;;
  stop) stop_all ;;
  status) status ;;
  run)
    shift
    [ "$#" -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }
    run_with_services "$@"
    ;;
  *) echo "usage: $0 start|stop|status|run CMD..." >&2; exit 2 ;;
esac
