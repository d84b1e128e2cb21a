#!/usr/bin/env bash
# Lint, format check and the architecture's import contracts (pyproject.toml), in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/lint-imports" --config pyproject.toml
"$VENV/bin/mypy"
