"""Requests re-paid after a ``kill -9`` at 50% of 5,000 documents, per output mode, worker and triggerer.

Each run scores ``--documents`` file:// documents at ``--concurrency`` requests in flight against
an emulator answering in ``--latency`` seconds (10 at 0.05 s: 200 documents/s, so 5,000 take 25 s),
is killed (the worker, or the triggerer running the trigger) once half the requests reached the
emulator, and is retried against a fast emulator (the new try, or the restarted triggerer).
Re-paid = requests of both tries beyond one per document: the requests in flight at the kill
plus the results not yet stored (at most ``WRITE_BATCH_SIZE`` documents or ``WRITE_INTERVAL``
seconds of them). The same machinery as tests/reliability/test_durable_kills.py::

    .venv/bin/python benchmarks/durability.py [--documents 5000] [--modes sql results_path both] [--paths worker]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_dgsentiment.emulator.server import EmulatorConfig, EmulatorServer
from airflow_provider_dgsentiment.run.scoring import WRITE_BATCH_SIZE, WRITE_INTERVAL
from tests.support.kills import MODES, PATHS, KillSpec, kill_and_retry, write_documents

API_KEY = "benchmark-key"


def emulator(latency: float) -> EmulatorServer:
    server = EmulatorServer(
        EmulatorConfig(host="127.0.0.1", port=0, api_key=API_KEY, max_concurrency=100, latency=latency)
    )
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    args = parser.parse_args()
    rate = args.concurrency / args.latency
    print(
        f"{args.documents} documents, {args.concurrency} in flight at {args.latency} s ({rate:.0f} documents/s); "
        f"stores every {WRITE_BATCH_SIZE} documents or {WRITE_INTERVAL} s; kill at 50%"
    )
    print(f"{'mode':<14}{'path':<12}{'sent before kill':>18}{'retry sent':>12}{'re-paid':>9}{'bound':>8}")
    bound = args.concurrency + min(WRITE_BATCH_SIZE, round(rate * WRITE_INTERVAL))
    for mode in args.modes:
        for path in args.paths:
            with tempfile.TemporaryDirectory(prefix="dgs-durability-") as folder:
                root = Path(folder)
                write_documents(root / "in", args.documents)
                spec = KillSpec.under(root, mode, path, args.concurrency)
                slow, fast = emulator(args.latency), emulator(0.0)
                try:
                    outcome = kill_and_retry(spec, slow, fast, args.documents, kill_at=args.documents // 2)
                finally:
                    slow.stop()
                    fast.stop()
                print(
                    f"{mode:<14}{path:<12}{outcome.sent_before_kill:>18}{outcome.sent_by_retry:>12}"
                    f"{outcome.repaid:>9}{bound:>8}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
