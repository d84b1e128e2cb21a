#!/usr/bin/env bash
# A real distributed Airflow 3 deployment on loopback, as users run it (SPEC section 14):
#   PostgreSQL metadata DB (database airflow_deploy on the scripts/services.sh server),
#   Redis broker (Debian's redis-server), api-server, scheduler, dag-processor, triggerer,
#   two Celery workers (CeleryExecutor), the S3-compatible server (services.sh) and the
#   provider's emulator; AIRFLOW_HOME in .ci-state/deployment/, DAGs = example_dags/.
#
#   bash scripts/deployment.sh install     # redis-server (apt, as root) + the celery provider (pip -c)
#   bash scripts/deployment.sh start       # install, fresh DBs, start everything, wait until healthy
#   bash scripts/deployment.sh test        # start, run tests/deployment against it, stop (make test-deployment)
#   bash scripts/deployment.sh stop        # stop every process this script started, by PID
#   bash scripts/deployment.sh status
#   bash scripts/deployment.sh kill NAME [SIGNAL]   # signal one component's process group (faults)
#   bash scripts/deployment.sh restart NAME         # start one component again (after kill)
#
# NAME is one of: redis emulator api-server scheduler dag-processor triggerer worker1 worker2.
# Each component runs in its own session (setsid), so its PID is also its process-group id:
# kill/stop signal exactly that group, which holds the component and the children it forked.
# Connection details for the tests go to .ci-state/deployment/deployment.env.
# DGS_DEPLOY_DAGS_FOLDER=DIR serves another DAGs folder (default example_dags/), e.g. a DAG under review.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
STATE="$REPO/.ci-state/deployment"
# kill/restart (called by the tests) reuse the venv the deployment was started with.
if [ -z "${VENV:-}" ] && [ -f "$STATE/venv" ]; then VENV="$(cat "$STATE/venv")"; fi
VENV="${VENV:-.venv}"
VENV="$(cd "$VENV" 2>/dev/null && pwd || echo "$VENV")"
PY="$VENV/bin/python"
CONSTRAINTS="${CONSTRAINTS:-constraints/airflow-3.txt}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
ENV_FILE="$STATE/deployment.env"
AIRFLOW_ENV="$STATE/airflow.env"
#: Celery worker slots each: the pool holds the scoring tasks to 2; the rest are small tasks.
WORKER_CONCURRENCY="${DGS_DEPLOY_WORKER_CONCURRENCY:-2}"
EMULATOR_MAX_CONCURRENCY=10
EMULATOR_LATENCY=0.05
COMPONENTS=(redis emulator api-server scheduler dag-processor triggerer worker1 worker2)

log() { echo "deployment: $*" >&2; }

install() {
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      log "redis-server is not installed and this is not root"; return 1
    fi
    log "installing redis-server from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
  fi
  if ! "$PY" -c "import airflow.providers.celery" 2>/dev/null; then
    log "installing the celery provider (pinned by $CONSTRAINTS)"
    # By name, not as '.[celery]': an editable reinstall would re-point a shared venv at this tree.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$CONSTRAINTS" \
      apache-airflow-providers-celery 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  fi
}

services_env() {
  # The PostgreSQL and S3-compatible servers: already exported, else services.sh's env, else start them.
  if [ -z "${DGS_TEST_POSTGRES_URI:-}" ] || [ -z "${DGS_TEST_S3_ENDPOINT:-}" ]; then
    [ -f .ci-state/services.env ] || VENV="$VENV" bash scripts/services.sh start
    set -a; . .ci-state/services.env; set +a
  fi
  [ -n "${DGS_TEST_POSTGRES_URI:-}" ] || { log "no PostgreSQL (DGS_TEST_POSTGRES_URI)"; return 1; }
}

free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_config() {
  local pg_hostport api_port redis_port emu_port
  pg_hostport="$("$PY" -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(f"{p.hostname}:{p.port}")' "$DGS_TEST_POSTGRES_URI")"
  read -r api_port redis_port emu_port <<<"$(free_ports 3)"
  local secret jwt fernet password key
  secret="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
  jwt="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
  fernet="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
  password="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')"
  key="$("$PY" -c 'import secrets; print("deploy-" + secrets.token_hex(8))')"
  mkdir -p "$STATE/airflow-home/config"
  printf '{"deploy": "%s"}\n' "$password" >"$STATE/passwords.json"
  # A deployment's cluster policy: caps retry_delay so a task killed with its worker is retried
  # within seconds, not after the DAG's 5 minutes (the DAG files stay as users get them).
  cat >"$STATE/airflow-home/config/airflow_local_settings.py" <<'EOF'
"""Cluster policy of the test deployment (scripts/deployment.sh): retry killed tasks quickly."""

from datetime import timedelta

MAX_RETRY_DELAY = timedelta(seconds=5)


def task_policy(task):
    if task.retry_delay and task.retry_delay > MAX_RETRY_DELAY:
        task.retry_delay = MAX_RETRY_DELAY
EOF
  local meta="postgresql+psycopg2://dgs:dgs@$pg_hostport/airflow_deploy"
  cat >"$AIRFLOW_ENV" <<EOF
AIRFLOW_HOME=$STATE/airflow-home
PYTHONPATH=$REPO
AIRFLOW__CORE__EXECUTOR=CeleryExecutor
AIRFLOW__CORE__DAGS_FOLDER=${DGS_DEPLOY_DAGS_FOLDER:-$REPO/example_dags}
AIRFLOW__CORE__LOAD_EXAMPLES=False
AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
AIRFLOW__CORE__FERNET_KEY=$fernet
AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$api_port/execution/
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=deploy:admin
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$STATE/passwords.json
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$meta
AIRFLOW__CELERY__BROKER_URL=redis://127.0.0.1:$redis_port/0
AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql://dgs:dgs@$pg_hostport/airflow_deploy
AIRFLOW__CELERY__WORKER_CONCURRENCY=$WORKER_CONCURRENCY
AIRFLOW__CELERY__SYNC_PARALLELISM=1
AIRFLOW__API__HOST=127.0.0.1
AIRFLOW__API__PORT=$api_port
AIRFLOW__API__BASE_URL=http://127.0.0.1:$api_port
AIRFLOW__API__WORKERS=1
AIRFLOW__API__SECRET_KEY=$secret
AIRFLOW__API_AUTH__JWT_SECRET=$jwt
AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=30
AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=5
AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR=True
AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD=15
DGSENTIMENT_EXAMPLE_SQL_CONN_ID=dgs_warehouse
DGSENTIMENT_INBOX_SOURCE=file://$STATE/inbox/*.txt
DGSENTIMENT_INBOX_POLL_INTERVAL=5
DGSENTIMENT_EXAMPLE_TABLES_NAMESPACE=postgres://$pg_hostport
DGSENTIMENT_EXAMPLE_TABLES_DATABASE=dgs_deploy_results
DGSENTIMENT_EXAMPLE_TABLES_SCHEMA=public
EOF
  cat >"$ENV_FILE" <<EOF
DGS_DEPLOY_API_URL=http://127.0.0.1:$api_port
DGS_DEPLOY_USERNAME=deploy
DGS_DEPLOY_PASSWORD=$password
DGS_DEPLOY_EMULATOR_URL=http://127.0.0.1:$emu_port
DGS_DEPLOY_EMULATOR_KEY=$key
DGS_DEPLOY_EMULATOR_LOG=$LOGS/emulator.log
DGS_DEPLOY_METADATA_URI=postgresql://dgs:dgs@$pg_hostport/airflow_deploy
DGS_DEPLOY_RESULTS_URI=postgresql://dgs:dgs@$pg_hostport/dgs_deploy_results
DGS_DEPLOY_S3_ENDPOINT=$DGS_TEST_S3_ENDPOINT
DGS_DEPLOY_SCRIPT=$REPO/scripts/deployment.sh
DGS_DEPLOY_STATE=$STATE
DGS_DEPLOY_INBOX=$STATE/inbox
DGS_DEPLOY_REDIS_PORT=$redis_port
EOF
}

fresh_databases() {
  # The metadata DB and the results DB, empty for every start; as the server's superuser.
  "$PY" - "$DGS_TEST_POSTGRES_URI" <<'EOF'
import sys, urllib.parse
import psycopg
u = urllib.parse.urlsplit(sys.argv[1])
with psycopg.connect(host=u.hostname, port=u.port, user="postgres", dbname="postgres", autocommit=True) as conn:
    for db in ("airflow_deploy", "dgs_deploy_results"):
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db} OWNER dgs")
EOF
}

load_env() {
  set -a; . "$ENV_FILE"; . "$AIRFLOW_ENV"; set +a
}

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

spawn() {
  # spawn NAME CMD...: run CMD in its own session, stdout+stderr to logs/NAME.log, PID to pids/NAME.pid.
  local name="$1"; shift
  if alive "$name"; then log "$name already running (pid $(cat "$PIDS/$name.pid"))"; return 0; fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  log "$name started (pid $!)"
}

start_one() {
  local name="$1"
  load_env
  case "$name" in
    redis)
      spawn redis redis-server --bind 127.0.0.1 --port "$DGS_DEPLOY_REDIS_PORT" --save "" --appendonly no \
        --dir "$STATE" --protected-mode yes ;;
    emulator)
      local emu_port="${DGS_DEPLOY_EMULATOR_URL##*:}"
      spawn emulator "$PY" -m airflow_provider_dgsentiment.emulator --port "$emu_port" \
        --max-concurrency "$EMULATOR_MAX_CONCURRENCY" --latency "$EMULATOR_LATENCY" --api-key "$DGS_DEPLOY_EMULATOR_KEY" ;;
    api-server) spawn api-server "$VENV/bin/airflow" api-server ;;
    scheduler) spawn scheduler "$VENV/bin/airflow" scheduler ;;
    dag-processor) spawn dag-processor "$VENV/bin/airflow" dag-processor ;;
    # --skip-serve-logs: Airflow's log server binds every interface; the logs are on this disk anyway.
    triggerer) spawn triggerer "$VENV/bin/airflow" triggerer --skip-serve-logs ;;
    worker1 | worker2)
      spawn "$name" "$VENV/bin/airflow" celery worker \
        --celery-hostname "$name@%h" --concurrency "$WORKER_CONCURRENCY" --skip-serve-logs ;;
    *) log "unknown component $name"; return 2 ;;
  esac
}

wait_for() {
  # wait_for WHAT SECONDS CMD...: retry CMD until it succeeds; fail naming WHAT and the logs.
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what not ready after ${seconds}s; logs in $LOGS"; return 1
    fi
    sleep 1
  done
}

http_ok() { "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

workers_ready() {
  # Both Celery workers have logged "<name>@<host> ready." since they last started.
  grep -q "worker1@.* ready" "$LOGS/worker1.log" && grep -q "worker2@.* ready" "$LOGS/worker2.log"
}

dags_parsed() {
  "$PY" - "$DGS_DEPLOY_METADATA_URI" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    n = conn.execute("SELECT COUNT(*) FROM serialized_dag WHERE dag_id IN ('deepgram_sentiment_nightly','deepgram_sentiment_report')").fetchone()[0]
sys.exit(0 if n == 2 else 1)
EOF
}

start() {
  local t0=$SECONDS
  install
  services_env
  stop_all quiet
  rm -rf "$STATE"
  mkdir -p "$PIDS" "$LOGS" "$STATE/inbox"
  echo "$VENV" >"$STATE/venv"
  write_config
  fresh_databases
  load_env
  log "migrating the metadata DB (PostgreSQL airflow_deploy)"
  "$VENV/bin/airflow" db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -20 "$LOGS/db-migrate.log" >&2; return 1; }
  for c in "${COMPONENTS[@]}"; do start_one "$c"; done
  wait_for "emulator" 60 http_ok "$DGS_DEPLOY_EMULATOR_URL/_emulator/stats"
  wait_for "api-server" 120 http_ok "$DGS_DEPLOY_API_URL/api/v2/monitor/health"
  wait_for "celery workers" 120 workers_ready
  wait_for "example DAGs parsed" 180 dags_parsed
  log "up in $((SECONDS - t0))s: api $DGS_DEPLOY_API_URL, emulator $DGS_DEPLOY_EMULATOR_URL, env $ENV_FILE"
}

descendants() {
  # Every process below PID (children, grandchildren, ...), found through their parent ids.
  local pid="$1" child
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

signal_tree() {
  # signal_tree NAME SIGNAL: the component's process group and every descendant of it. Airflow's
  # task supervisor puts each task runner in a process group of its own, so the group alone
  # would leave a killed worker's tasks running as orphans.
  local name="$1" sig="$2" pid tree
  pid="$(cat "$PIDS/$name.pid")"
  tree="$(descendants "$pid")"
  kill "-$sig" -- "-$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  [ -z "$tree" ] || kill "-$sig" $tree 2>/dev/null || true
}

stop_one() {
  local name="$1" pid
  [ -f "$PIDS/$name.pid" ] || return 0
  pid="$(cat "$PIDS/$name.pid")"
  local tree
  if kill -0 "$pid" 2>/dev/null; then
    tree="$(descendants "$pid")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    # Whatever is left of what it had forked: SIGKILL, by PID.
    # shellcheck disable=SC2086
    [ -z "$tree" ] || kill -KILL $tree 2>/dev/null || true
  fi
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDS/$name.pid"
}

stop_all() {
  [ -d "$PIDS" ] || return 0
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[$i]}"; done
  [ "${1:-}" = quiet ] || log "stopped"
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c running (pid $(cat "$PIDS/$c.pid"))"; else echo "$c stopped"; fi
  done
}

test_deployment() {
  # Start, run tests/deployment against it, stop (also when a step fails); print the durations.
  local t0=$SECONDS rc=0 t_up
  trap 'stop_all' EXIT
  ( start )
  t_up=$((SECONDS - t0))
  (
    set -a; . "$ENV_FILE"; set +a
    VENV="$VENV" bash scripts/test.sh tests/deployment -m deployment -p no:cacheprovider "$@"
  ) || rc=$?
  if [ "$rc" != 0 ]; then
    local c
    for c in scheduler worker1 worker2 triggerer; do
      log "last lines of $c.log:"; tail -n 15 "$LOGS/$c.log" >&2 || true
    done
  fi
  log "test-deployment: ${t_up}s to install and start, $((SECONDS - t0 - t_up))s of tests, $((SECONDS - t0))s in all (rc $rc)"
  return "$rc"
}

case "${1:-start}" in
  install) install ;;
  start)
    # A start that fails half-way stops what it had started.
    trap 'rc=$?; [ "$rc" = 0 ] || { log "start failed (rc $rc); stopping what it started"; stop_all quiet; }' EXIT
    start
    ;;
  test) shift; test_deployment "$@" ;;
  stop) stop_all ;;
  status) status ;;
  kill)
    name="${2:?component}"; sig="${3:-KILL}"
    alive "$name" || { log "$name is not running"; exit 1; }
    signal_tree "$name" "$sig"
    log "sent SIG$sig to $name (pid $(cat "$PIDS/$name.pid"), its process group and descendants)"
    ;;
  restart)
    name="${2:?component}"
    stop_one "$name"
    start_one "$name"
    ;;
  *) echo "usage: $0 install|start|test [PYTEST ARGS]|stop|status|kill NAME [SIGNAL]|restart NAME" >&2; exit 2 ;;
esac
