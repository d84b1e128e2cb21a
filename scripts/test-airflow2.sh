#!/usr/bin/env bash
# Run the unit and DAG tests on the Airflow 2.11 line (.venv-af2 from constraints/airflow-2.txt);
# kept for the commands people know: it is scripts/test-airflow.sh 2.11.
#
#   bash scripts/test-airflow2.sh                  # tests/ without tests/integration, tests/browser
#   bash scripts/test-airflow2.sh tests/hooks -x   # any pytest arguments instead
exec bash "$(dirname "$0")/test-airflow.sh" 2.11 "$@"
