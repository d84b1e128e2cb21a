"""The dgsentiment.* metrics through Airflow's real ``Stats``, configured for StatsD, read by a loopback UDP listener.

A child process runs the operator with ``[metrics] statsd_on`` pointing at a UDP socket of this
test (Airflow builds its StatsD logger from that configuration, as in a deployment); the
packets that arrive are the metrics, compared with the emulator's own counters.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

from tests.reliability.helpers import deepgram_conn_json, write_documents

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = 40

CHILD = textwrap.dedent(
    """
    import sys
    from tests.reliability.helpers import make_operator, run_operator

    run_operator(make_operator(source=sys.argv[1], xcom_output="none", max_concurrency=4))
    print("FINISHED", flush=True)
    """
)


def collect(listener: socket.socket, until: float) -> list[str]:
    """Every StatsD line received until ``until`` (a monotonic time)."""
    lines = []
    while time.monotonic() < until:
        listener.settimeout(max(until - time.monotonic(), 0.01))
        try:
            packet = listener.recv(65535)
        except TimeoutError:
            break
        lines += packet.decode().splitlines()
    return lines


def test_requests_429s_retries_tokens_and_the_window_reach_statsd(tmp_path, deepgram_emulator_factory):
    write_documents(tmp_path / "in", DOCUMENTS)
    server = deepgram_emulator_factory(rate_limit_rate=0.2, retry_after=0, seed=7)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    env = {
        **os.environ,
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT": deepgram_conn_json(server, max_retries=10),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"file://{tmp_path}/in/*.txt"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            lines += collect(listener, time.monotonic() + 0.5)
        output = child.communicate(timeout=30)[0]
        lines += collect(listener, time.monotonic() + 0.5)
    finally:
        listener.close()
    assert "FINISHED" in output, output[-3000:]

    counters: dict[str, int] = defaultdict(int)
    gauges: list[float] = []
    for line in lines:
        name, _, rest = line.partition(":")
        value, kind = rest.split("|")[:2]
        if name.startswith("airflow.dgsentiment.") and kind == "c":
            counters[name.removeprefix("airflow.dgsentiment.")] += int(value)
        elif name == "airflow.dgsentiment.concurrency_window" and kind == "g":
            gauges.append(float(value))
    stats = server.stats()
    assert stats["rate_limited"] > 0, "the emulator sent no 429: the test proves nothing"
    assert counters["requests"] == stats["requests"]
    assert counters["rate_limited"] == stats["rate_limited"]
    assert counters["retries"] >= stats["rate_limited"]
    assert counters["input_tokens"] > 0 and counters["output_tokens"] > 0
    assert gauges and all(1 <= window <= 4 for window in gauges)
    print(f"\nStatsD: {dict(counters)}; window gauge {gauges[-1]:.0f} ({len(gauges)} reports)")
