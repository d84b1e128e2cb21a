#!/usr/bin/env bash
# Run the unit and DAG tests on the Airflow 2.11 line.
#
# Builds .venv-af2 (Python 3.11) from constraints/airflow-2.txt once, with a
# sentinel like the Makefile's (rebuilt when the constraints or pyproject.toml
# change), installs this project editable into it, and runs pytest with a
# private AIRFLOW_HOME so the Airflow 2 metadata DB never meets the Airflow 3 one.
#
#   bash scripts/test-airflow2.sh                  # tests/ without tests/integration, tests/browser
#   bash scripts/test-airflow2.sh tests/hooks -x   # any pytest arguments instead
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV_AF2:-.venv-af2}"
PYTHON="${PYTHON_AF2:-python3.11}"
CONSTRAINTS=constraints/airflow-2.txt
SENTINEL="$VENV/.installed"

if [ ! -f "$SENTINEL" ] || [ "$CONSTRAINTS" -nt "$SENTINEL" ] || [ pyproject.toml -nt "$SENTINEL" ]; then
  echo "test-airflow2.sh: building $VENV from $CONSTRAINTS" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # pip's notes about optional local mirrors are noise here; errors still fail the build.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$CONSTRAINTS" -e '.[test]' 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
  "$VENV/bin/pip" check --disable-pip-version-check
  touch "$SENTINEL"
fi

"$VENV/bin/python" -c 'import airflow, sys; print(f"test-airflow2.sh: Airflow {airflow.__version__}, Python {sys.version.split()[0]}")'

if [ "$#" -eq 0 ]; then
  # tests/browser drives Airflow 3's api-server and React UI, which Airflow 2 does not have.
  set -- tests --ignore=tests/integration --ignore=tests/browser -q
fi
# scripts/test.sh loads the services' env and refuses a run that collected no tests.
VENV="$VENV" AIRFLOW_HOME="${AIRFLOW_HOME_AF2:-$PWD/.airflow-home/tests-af2}" exec bash scripts/test.sh "$@"
