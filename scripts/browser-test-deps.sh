#!/usr/bin/env bash
# Install what tests/browser/ needs, each only when missing:
#   - Chromium from Debian's packages (apt-get, as root) at /usr/bin/chromium
#   - the Python `playwright` driver, pinned, into the project's venv
# Playwright drives the system Chromium over CDP. Never run `playwright install`
# here: it downloads browsers from the internet, which this network does not reach.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.2}"
CHROMIUM="${DGS_CHROMIUM:-/usr/bin/chromium}"
CONSTRAINTS="${CONSTRAINTS:-constraints/airflow-3.txt}"

install_chromium() {
  if [ -x "$CHROMIUM" ]; then
    echo "browser-test-deps: Chromium present ($("$CHROMIUM" --version 2>/dev/null | tail -n 1))"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "browser-test-deps: $CHROMIUM is missing and this is not root; the browser tests will skip (fail under CI=true)" >&2
    return 0
  fi
  echo "browser-test-deps: installing Chromium from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  echo "browser-test-deps: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
}

install_playwright() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "browser-test-deps: no venv at $VENV (run \`make venv\` first)" >&2
    return 1
  fi
  if "$VENV/bin/python" - "$PLAYWRIGHT_VERSION" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version

import playwright.sync_api  # noqa: F401  (the wheel ships its node driver)

sys.exit(0 if version("playwright") == sys.argv[1] else 1)
EOF
    echo "browser-test-deps: playwright $PLAYWRIGHT_VERSION present in $VENV"
    return 0
  fi
  echo "browser-test-deps: installing playwright==$PLAYWRIGHT_VERSION into $VENV"
  local constraint_args=()
  [ -f "$CONSTRAINTS" ] && constraint_args=(-c "$CONSTRAINTS")
  # pip's notes about optional local mirrors are noise here; errors still fail the script.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${constraint_args[@]}" \
    "playwright==$PLAYWRIGHT_VERSION" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
}

install_chromium
install_playwright
