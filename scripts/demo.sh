#!/usr/bin/env bash
# make demo: run the offline demo in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" scripts/demo.py
