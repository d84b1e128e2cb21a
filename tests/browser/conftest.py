"""
Fixtures for the browser tests: a real Airflow 3 api-server, the emulator, and headless Chromium.

- ``emulator``: ``python -m airflow_provider_dgsentiment.emulator`` in a subprocess.
- ``api_server``: ``airflow db migrate`` then ``airflow api-server`` in a subprocess, with a
  private AIRFLOW_HOME (SQLite), the simple auth manager with everyone admin (no login page)
  and ``[core] test_connection = Enabled`` so the UI's Test button works.
- ``browser`` / ``page``: Debian's Chromium (``/usr/bin/chromium``) driven by the ``playwright``
  wheel over CDP, with a fresh profile. ``scripts/browser-test-deps.sh`` installs both; never
  ``playwright install`` (it downloads browsers).

Without Chromium or playwright the tests skip with the reason; under ``CI=true`` they fail,
because there ``.ci/run`` installs both. Every subprocess is stopped at teardown.
Screenshots go to ``artifacts/browser/`` and are listed at the end of the pytest run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import IN_CI, REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

ARTIFACTS_DIR = REPO_ROOT / "artifacts" / "browser"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Flags that keep Chromium off the network (no QUIC, no component/sync/background fetches) and
# running as root in a container.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1400}
EMULATOR_API_KEY = "browser-test-key"
EMULATOR_START_TIMEOUT = 30.0
DB_MIGRATE_TIMEOUT = 180.0
API_SERVER_START_TIMEOUT = 120.0
SUBPROCESS_STOP_TIMEOUT = 20.0
UI_TIMEOUT_MS = 20_000

_screenshots: list[Path] = []


def _unavailable(message: str) -> None:
    """Skip outside CI, fail in CI (there .ci/run installs the browser and the driver)."""
    message = f"{message} (install both with `bash scripts/browser-test-deps.sh`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a subprocess in its own process group, output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen) -> None:
    """Stop a subprocess started by :func:`_start` and its children (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=SUBPROCESS_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=SUBPROCESS_STOP_TIMEOUT)
    except ProcessLookupError:
        proc.wait(timeout=SUBPROCESS_STOP_TIMEOUT)


@dataclass(frozen=True)
class Emulator:
    url: str
    api_key: str


@dataclass(frozen=True)
class ApiServer:
    url: str
    home: Path
    log: Path


@pytest.fixture(scope="module")
def chromium_executable() -> str:
    """Path of the system Chromium (``DGS_CHROMIUM`` overrides ``/usr/bin/chromium``)."""
    wanted = os.environ.get("DGS_CHROMIUM")
    if wanted:
        if not os.access(wanted, os.X_OK):
            _unavailable(f"Chromium not found at DGS_CHROMIUM={wanted}")
        return wanted
    found = DEFAULT_CHROMIUM if os.access(DEFAULT_CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        _unavailable(f"Chromium not found at {DEFAULT_CHROMIUM} or on PATH")
    return found


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """The playwright sync driver (its node process), stopped at teardown."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package `playwright` is not installed in this environment")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def browser(
    playwright_driver: Playwright, chromium_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile, as one persistent browser context."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    try:
        context = playwright_driver.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
    except Exception as exc:  # a Chromium that is installed but cannot start is a failure, never a skip
        pytest.fail(f"Chromium at {chromium_executable} did not start under playwright: {exc}")
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new tab; on a failed test its screenshot and HTML are kept in artifacts/browser/."""
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    tab = browser.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            stem = f"failure-{request.node.name}"
            try:
                tab.screenshot(path=str(ARTIFACTS_DIR / f"{stem}.png"), full_page=True)
                (ARTIFACTS_DIR / f"{stem}.html").write_text(tab.content())
                _screenshots.append(ARTIFACTS_DIR / f"{stem}.png")
            except Exception as exc:  # the page may be gone; the test's own error matters more
                print(f"could not save the failure screenshot: {exc}")
        tab.close()


@pytest.fixture
def screenshot(record_property: Callable[[str, Any], None]) -> Callable[..., Path]:
    """Return ``shot(target, name)``: save ``target.screenshot()`` as artifacts/browser/<name>, list it."""

    def shot(target: Any, name: str, **kwargs: Any) -> Path:
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS_DIR / name
        # Finish CSS transitions first, so a toast or dialog is captured in its final state.
        kwargs.setdefault("animations", "disabled")
        target.screenshot(path=str(path), **kwargs)
        _screenshots.append(path)
        record_property(f"screenshot:{name}", str(path))
        print(f"screenshot: {path}")
        return path

    return shot


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The package's Deepgram emulator in a subprocess, on a free port."""
    workdir = tmp_path_factory.mktemp("emulator")
    log_path = workdir / "emulator.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "airflow_provider_dgsentiment.emulator"]
    argv += ["--host", "127.0.0.1", "--port", "0", "--api-key", EMULATOR_API_KEY]
    proc = _start(argv, log_path, env)
    try:
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT
        url = None
        while url is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].strip()
            if url is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the emulator did not start:\n{_log_tail(log_path)}")
                time.sleep(0.1)
        yield Emulator(url=url, api_key=EMULATOR_API_KEY)
    finally:
        _stop(proc)


def _airflow_env(home: Path) -> dict[str, str]:
    """The api-server's environment: this one minus any Airflow settings, plus a private set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_HOME"
    }
    from cryptography.fernet import Fernet

    (home / "dags").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """``airflow api-server`` (UI + REST API) on a free loopback port, with its own metadata DB."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = _airflow_env(home)
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=DB_MIGRATE_TIMEOUT,
    )
    if migrate.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "api-server.log"
    argv = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1"]
    started = time.monotonic()
    proc = _start(argv, log_path, env)
    try:
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"airflow api-server exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() - started > API_SERVER_START_TIMEOUT:
                waited = f"{API_SERVER_START_TIMEOUT:.0f}s"
                pytest.fail(f"airflow api-server did not answer within {waited}:\n{_log_tail(log_path)}")
            time.sleep(0.25)
        print(f"airflow api-server up at {url} after {time.monotonic() - started:.1f}s (log: {log_path})")
        yield ApiServer(url=url, home=home, log=log_path)
    finally:
        _stop(proc)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so ``page`` can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the screenshots the browser tests saved."""
    if not _screenshots:
        return
    terminalreporter.section("browser screenshots")
    for path in _screenshots:
        try:
            shown = path.relative_to(REPO_ROOT)
        except ValueError:
            shown = path
        terminalreporter.write_line(str(shown))
