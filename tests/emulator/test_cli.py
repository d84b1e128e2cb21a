"""The ``dgsentiment-emulator`` command line."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from airflow_provider_dgsentiment.emulator.__main__ import build_parser, config_from_args, main

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)
LISTENING_RE = re.compile(r"^dgsentiment-emulator listening on (http://127\.0\.0\.1:(\d+))$")


def _read_line(stream, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"the emulator printed no listening line within {timeout} s")


def test_module_serves_until_sigterm():
    env = {**os.environ, "DEEPGRAM_EMULATOR_API_KEY": "cli-env-key"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_dgsentiment.emulator", "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = _read_line(proc.stdout, timeout=60).rstrip("\n")
        match = LISTENING_RE.match(line)
        assert match, line
        url, port = match.group(1), int(match.group(2))
        assert port != 0

        response = requests.post(
            f"{url}/v1/read?sentiment=true&language=en",
            json={"text": REFERENCE_TEXT},
            headers={"Authorization": "Token cli-env-key"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        segments = response.json()["results"]["sentiments"]["segments"]
        assert [(s["start_word"], s["end_word"], s["sentiment"]) for s in segments] == [
            (0, 8, "positive"),
            (9, 18, "neutral"),
        ]
        wrong = requests.post(
            f"{url}/v1/read?sentiment=true&language=en",
            json={"text": REFERENCE_TEXT},
            headers={"Authorization": "Token emulator-key"},
            timeout=10,
        )
        assert wrong.status_code == 401

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("dgsentiment-emulator")
    if not script.exists():
        script = shutil.which("dgsentiment-emulator")
    if script is None:
        pytest.skip("dgsentiment-emulator is not on this environment's PATH")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0
    for flag in ("--host", "--port", "--api-key", "--max-concurrency", "--latency", "--error-rate", "--drop-rate"):
        assert flag in result.stdout


def test_flags_map_to_the_config(monkeypatch):
    monkeypatch.delenv("DEEPGRAM_EMULATOR_API_KEY", raising=False)
    args = build_parser().parse_args(
        [
            "--host", "127.0.0.2", "--port", "9000", "--max-concurrency", "4",
            "--latency", "0.05", "--latency-jitter", "0.1", "--error-rate", "0.2",
            "--rate-limit-rate", "0.3", "--retry-after", "2", "--drop-rate", "0.1",
            "--spike-rate", "0.05", "--spike-latency", "3", "--seed", "42", "--accept-any-key",
        ]
    )  # fmt: skip
    config = config_from_args(args)

    assert (config.host, config.port, config.max_concurrency) == ("127.0.0.2", 9000, 4)
    assert (config.latency, config.latency_jitter) == (0.05, 0.1)
    assert (config.error_rate, config.rate_limit_rate, config.retry_after) == (0.2, 0.3, 2)
    assert (config.drop_rate, config.spike_rate, config.spike_latency, config.seed) == (0.1, 0.05, 3.0, 42)
    assert config.accept_any_key is True
    assert config.api_key == "emulator-key"


def test_defaults(monkeypatch):
    monkeypatch.setenv("DEEPGRAM_EMULATOR_API_KEY", "from-env")
    config = config_from_args(build_parser().parse_args([]))

    assert (config.host, config.port, config.max_concurrency, config.latency) == ("127.0.0.1", 8765, 10, 0.0)
    assert config.latency_jitter == 0.2
    assert config.retry_after == 1
    assert config.api_key == "from-env"
    assert config_from_args(build_parser().parse_args(["--api-key", "explicit"])).api_key == "explicit"


@pytest.mark.parametrize(
    "argv",
    [
        ["--error-rate", "1.5"],
        ["--latency", "-1"],
        ["--max-concurrency", "0"],
        ["--error-rate", "0.6", "--drop-rate", "0.6"],
    ],
)
def test_bad_flags_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(argv)

    assert exc_info.value.code == 2
    assert "dgsentiment-emulator" in capsys.readouterr().err


def test_port_in_use_exits_with_an_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        assert main(["--port", str(port)]) == 1

    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
