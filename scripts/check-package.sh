#!/usr/bin/env bash
# Check the package as a user gets it: build the sdist and the wheel, look inside
# the wheel, install it alone (with the pinned Airflow 3 constraints) into a clean
# venv, and check that Airflow sees the provider and that its entry points work.
#
#   bash scripts/check-package.sh        # prints PASS/FAIL lines; exits non-zero on any FAIL
#
# Needs the project's venv (.venv, `make venv`) for `python -m build`. Everything
# else goes to a temporary folder that is removed at the end (KEEP_TMP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
CONSTRAINTS="${CONSTRAINTS:-constraints/airflow-3.txt}"
DIST_NAME=airflow-provider-dgsentiment
PACKAGE=airflow_provider_dgsentiment

started=$SECONDS
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
quiet_pip() { { grep -v "^WARNING: Location 'file:" || true; }; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/check-package.XXXXXX")"
cleanup() { if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

VERSION="$(sed -n 's/^__version__ *= *"\(.*\)"/\1/p' "$PACKAGE/__init__.py")"
if [ -z "$VERSION" ]; then
  echo "FAIL: no __version__ in $PACKAGE/__init__.py"
  exit 1
fi
echo "check-package.sh: $DIST_NAME $VERSION"

# --- 1. build: sdist first, then the wheel from the unpacked sdist (so the sdist is complete).
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m build --version >/dev/null 2>&1; then
  echo "FAIL: $VENV has no 'build' (run: make venv)"
  exit 1
fi
if "$VENV/bin/python" -m build --outdir "$TMP/dist" . >"$TMP/build.log" 2>&1; then
  pass "python -m build ($((SECONDS - started))s)"
else
  tail -30 "$TMP/build.log"
  fail "python -m build"
  exit 1
fi
WHEEL="$(ls "$TMP"/dist/*.whl 2>/dev/null | head -1)"
SDIST="$(ls "$TMP"/dist/*.tar.gz 2>/dev/null | head -1)"
[ -n "$SDIST" ] && pass "sdist $(basename "$SDIST")" || fail "no sdist built"
[ -n "$WHEEL" ] || { fail "no wheel built"; exit 1; }
case "$(basename "$WHEEL")" in
  "${PACKAGE}-${VERSION}-py3-none-any.whl") pass "wheel $(basename "$WHEEL")" ;;
  *) fail "wheel name $(basename "$WHEEL") is not ${PACKAGE}-${VERSION}-py3-none-any.whl" ;;
esac

# --- 2. what is inside the wheel.
if "$VENV/bin/python" - "$WHEEL" "$PACKAGE" "$VERSION" <<'PY'; then
import sys
import zipfile

wheel, package, version = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
problems = []
required = [
    f"{package}/__init__.py",
    f"{package}/get_provider_info.py",
    f"{package}/py.typed",
    f"{package}/client/engine.py",
    f"{package}/storage/warehouse.py",
    f"{package}/run/scoring.py",
    f"{package}/hooks/sentiment.py",
    f"{package}/operators/sentiment.py",
    f"{package}/sensors/sentiment.py",
    f"{package}/triggers/sentiment.py",
    f"{package}/emulator/__init__.py",
    f"{package}/emulator/__main__.py",
    f"{package}/emulator/server.py",
    f"{package}/emulator/scoring.py",
    f"{package}/emulator/pytest_plugin.py",
]
problems += [f"missing {name}" for name in required if name not in names]
dist_info = f"{package}-{version}.dist-info"
allowed_top = {package, dist_info}
problems += [f"unexpected {name}" for name in names if name.split("/")[0] not in allowed_top]
problems += [f"must not ship {name}" for name in names if "example_dags/" in name or name.startswith("tests/") or "/tests/" in name]
problems += [f"stray file {name}" for name in names if "__pycache__" in name or name.endswith((".pyc", ".orig", ".rej"))]
entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
for needed in (
    "[apache_airflow_provider]",
    f"provider_info = {package}.get_provider_info:get_provider_info",
    f"dgsentiment-emulator = {package}.emulator.__main__:main",
    f"dgsentiment = {package}.cli.main:main",
):
    if needed not in entry_points:
        problems.append(f"entry_points.txt lacks {needed!r}")
modules = sum(1 for name in names if name.startswith(f"{package}/") and name.endswith(".py"))
for problem in problems:
    print(f"  {problem}")
print(f"  {modules} modules under {package}/, {len(names)} files in the wheel")
sys.exit(1 if problems else 0)
PY
  pass "wheel holds $PACKAGE/ (with emulator/) and entry points, and no example_dags/ or tests/"
else
  fail "wheel contents"
fi

# --- 3. install the wheel alone into a clean venv.
step=$SECONDS
"$PYTHON" -m venv "$TMP/venv"
if "$TMP/venv/bin/pip" install --quiet --disable-pip-version-check -c "$CONSTRAINTS" "$WHEEL" 2>&1 \
    | quiet_pip >"$TMP/install.log"; then
  pass "pip install the wheel with -c $CONSTRAINTS into a clean venv ($((SECONDS - step))s)"
else
  cat "$TMP/install.log"
  fail "pip install the wheel with -c $CONSTRAINTS"
  exit 1
fi
if "$TMP/venv/bin/pip" check --disable-pip-version-check >"$TMP/pip-check.log" 2>&1; then
  pass "pip check"
else
  cat "$TMP/pip-check.log"
  fail "pip check"
fi

# Run from the temp folder so nothing imports the source tree by accident.
cd "$TMP"
export AIRFLOW_HOME="$TMP/airflow-home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
unset PYTHONPATH

# --- 4. Airflow sees the provider, with the right version.
if "$TMP/venv/bin/airflow" providers list --output json >"$TMP/providers.json" 2>"$TMP/providers.err"; then
  if "$TMP/venv/bin/python" - "$TMP/providers.json" "$DIST_NAME" "$VERSION" <<'PY'; then
import json
import sys

path, name, version = sys.argv[1:]
text = open(path).read()
providers = json.loads(text[text.index("["):])
found = [p for p in providers if p.get("package_name") == name]
if not found:
    print(f"  {name} not in: {sorted(p.get('package_name') for p in providers)}")
    sys.exit(1)
if found[0].get("version") != version:
    print(f"  {name} version {found[0].get('version')!r}, expected {version!r}")
    sys.exit(1)
PY
    pass "airflow providers list shows $DIST_NAME $VERSION"
  else
    fail "airflow providers list does not show $DIST_NAME $VERSION"
  fi
else
  tail -20 "$TMP/providers.err"
  fail "airflow providers list exited non-zero"
fi

# --- 5. the console script and the hook import.
if "$TMP/venv/bin/dgsentiment-emulator" --help >"$TMP/emulator-help.txt" 2>&1 \
    && grep -q "usage: dgsentiment-emulator" "$TMP/emulator-help.txt"; then
  pass "dgsentiment-emulator --help"
else
  cat "$TMP/emulator-help.txt"
  fail "dgsentiment-emulator --help"
fi
if "$TMP/venv/bin/dgsentiment" --help >"$TMP/command-help.txt" 2>&1 \
    && grep -q "usage: dgsentiment" "$TMP/command-help.txt" \
    && ! env -u DEEPGRAM_API_KEY "$TMP/venv/bin/dgsentiment" score "a test" >"$TMP/command-nokey.txt" 2>&1 \
    && grep -q "No Deepgram API key" "$TMP/command-nokey.txt"; then
  pass "dgsentiment --help; dgsentiment score without a key says where it looked"
else
  cat "$TMP/command-help.txt" "$TMP/command-nokey.txt" 2>/dev/null
  fail "dgsentiment console script"
fi
if "$TMP/venv/bin/python" -c "
import airflow_provider_dgsentiment.hooks.sentiment as module
assert module.__file__.startswith('$TMP/venv/'), module.__file__
" >"$TMP/import.log" 2>&1; then
  pass "import airflow_provider_dgsentiment.hooks.sentiment (from the installed wheel)"
else
  tail -20 "$TMP/import.log"
  fail "import airflow_provider_dgsentiment.hooks.sentiment"
fi

cd "$ROOT"
echo "check-package.sh: $failures failure(s) in $((SECONDS - started))s"
[ "$failures" = 0 ]
