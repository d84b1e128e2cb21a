#!/usr/bin/env bash
# Run docs/getting-started.md as a user would: every ```bash block of the page, in order, in one
# shell, in a fresh temporary folder; then check that each line of the page's ```text blocks (the
# output it shows) was printed. Called by `make test`; prints the seconds it took.
#
# The page's own hidden note says what differs from a user's run: the block marked "not run in CI"
# (the install) is skipped and the project's venv is put on PATH instead; /tmp/first-dag becomes a
# fresh temporary folder and the port 8765 a free loopback port, so runs never collide.
#
#   bash scripts/run-getting-started.sh          # VENV=.venv by default; KEEP_TMP=1 keeps the folder
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${VENV:-.venv}"
PAGE="${PAGE:-docs/getting-started.md}"
started=$SECONDS

TMP="$(mktemp -d "${TMPDIR:-/tmp}/getting-started.XXXXXX")"
cleanup() { if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
VENV_BIN="$(cd "$VENV/bin" && pwd)"
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# Extract: the bash blocks (minus the ones marked "not run in CI") and the expected output lines.
"$VENV/bin/python" - "$PAGE" "$TMP" "$PORT" <<'PY'
import re
import sys
from pathlib import Path

page, folder, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = page.read_text()
blocks = re.finditer(r"(?P<before>[^\n]*)\n```(?P<lang>\w*)\n(?P<body>.*?)\n```", text, re.S)
script = [
    "set -euo pipefail",
    'trap \'if [ -n "${EMULATOR_PID:-}" ]; then kill "$EMULATOR_PID" 2>/dev/null || true; fi\' EXIT',
]
expected = []
ran = 0
for block in blocks:
    body = block["body"].replace("/tmp/first-dag", f"{folder}/first-dag").replace("8765", port)
    if block["lang"] == "bash":
        if "not run in CI" in block["before"]:
            continue
        script += [f"echo '--- block {ran + 1} of {page}'", body]
        ran += 1
    elif block["lang"] == "text":
        expected += [line for line in body.splitlines() if line.strip()]
if not ran:
    sys.exit(f"{page}: no bash blocks found")
Path(folder, "page.sh").write_text("\n".join(script) + "\n")
Path(folder, "expected.txt").write_text("\n".join(expected) + "\n")
print(f"run-getting-started.sh: {ran} bash blocks and {len(expected)} expected output lines from {page}")
PY

# A user's environment: their HOME, the venv's commands first; nothing of the test suite's Airflow.
rc=0
env -u AIRFLOW_HOME -u AIRFLOW__CORE__DAGS_FOLDER HOME="$TMP" PATH="$VENV_BIN:$PATH" \
  bash -c "cd '$TMP' && timeout 900 bash page.sh" >"$TMP/output.txt" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  tail -60 "$TMP/output.txt"
  echo "FAIL: $PAGE: a command failed (exit $rc) after $((SECONDS - started))s"
  exit 1
fi
missing=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  if ! grep -qF -- "$line" "$TMP/output.txt"; then
    echo "FAIL: $PAGE shows output that the run did not print: $line"
    missing=1
  fi
done <"$TMP/expected.txt"
if [ "$missing" != 0 ]; then
  cat "$TMP/output.txt"
  exit 1
fi
cat "$TMP/output.txt"
echo "PASS: $PAGE ran in a fresh folder in $((SECONDS - started))s"
