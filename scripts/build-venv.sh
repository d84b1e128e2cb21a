#!/usr/bin/env bash
# Build a pinned side venv once: the project with EXTRAS, every package from CONSTRAINTS.
#
#   bash scripts/build-venv.sh VENV CONSTRAINTS EXTRAS     # e.g. .venv-af31 constraints/airflow-3.1.txt test
#
# Used by scripts/test-airflow.sh (one venv per Airflow line) and scripts/test-gcs.sh (.venv-gcs).
# A sentinel (VENV/.installed) makes it a no-op until the constraints or pyproject.toml change; a
# lock (VENV.lock) lets a build running in the background (.ci/run) and a test run that needs the
# venv share it: the second caller waits for the first. Python: $PYTHON_AF, else python3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${1:?usage: build-venv.sh VENV CONSTRAINTS EXTRAS}"
constraints="${2:?usage: build-venv.sh VENV CONSTRAINTS EXTRAS}"
extras="${3:?usage: build-venv.sh VENV CONSTRAINTS EXTRAS}"
python="${PYTHON_AF:-${PYTHON_AF2:-python3.11}}"
sentinel="$venv/.installed"

mkdir -p "$(dirname "$venv")"
exec {lock}>"$venv.lock"
flock "$lock"
if [ ! -f "$sentinel" ] || [ "$constraints" -nt "$sentinel" ] || [ pyproject.toml -nt "$sentinel" ]; then
  t0=$SECONDS
  echo "build-venv.sh: building $venv from $constraints (.[$extras])" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # pip's notes about optional local mirrors are noise here; errors still fail the build.
  "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" -e ".[$extras]" 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
  "$venv/bin/pip" check --disable-pip-version-check
  touch "$sentinel"
  echo "build-venv.sh: built $venv in $((SECONDS - t0)) s ($("$venv/bin/pip" list --format=freeze 2>/dev/null | wc -l) packages)" >&2
fi
flock -u "$lock"
