#!/usr/bin/env bash
# Run the whole test suite in the project's venv, with the servers started by
# scripts/services.sh when they are up.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ -f .ci-state/services.env ]; then
  set -a; . .ci-state/services.env; set +a
fi
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow-home/tests}"
mkdir -p "$AIRFLOW_HOME"
rc=0
"$VENV/bin/python" -m pytest "$@" || rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
