"""The emulator CLI in a child process on a free loopback port, for the benchmarks; stopped by its PID."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any


class EmulatorProcess:
    """
    ``python -m airflow_provider_dgsentiment.emulator`` in its own process, as a context manager.

    :param api_key: the key it accepts.
    :param max_concurrency: requests in flight it serves before answering 429.
    :param latency: seconds added to each request.
    :param jitter: the latency's relative jitter (None: the emulator's default).
    :param seed: the fault generator's seed (None: the emulator's default).
    """

    def __init__(
        self,
        *,
        api_key: str,
        max_concurrency: int,
        latency: float,
        jitter: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.command = [sys.executable, "-m", "airflow_provider_dgsentiment.emulator", "--host", "127.0.0.1"]
        self.command += ["--port", "0", "--api-key", api_key, "--latency", str(latency)]
        self.command += ["--max-concurrency", str(max_concurrency)]
        if jitter is not None:
            self.command += ["--latency-jitter", str(jitter)]
        if seed is not None:
            self.command += ["--seed", str(seed)]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "listening on " in line:
                self.url = line.rsplit("listening on ", 1)[1].strip()
                break
        if not self.url:
            self.__exit__()
            raise RuntimeError(f"the emulator exited with status {self.process.wait()} before listening")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: requests, 429s, peak in flight, tags."""
        with urllib.request.urlopen(f"{self.url}/_emulator/stats", timeout=10) as response:
            return json.loads(response.read())
