"""The load history beside ``results_path``: what a run pays to read it, by documents known.

Run it from the repository root with the project's virtualenv (``make benchmark``)::

    .venv/bin/python benchmarks/object_history.py [--documents 10000 100000]

For each size it writes a compacted documents index of that many scored records (the lines a
nightly writes, ~400 bytes each) into a file:// ``_load_history`` folder, then prints side by
side: the index's size on disk, the seconds :meth:`ObjectLoadHistory.prepare` takes to read it,
and the memory it holds afterwards per document (tracemalloc). It grades nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from airflow_provider_dgsentiment.storage.object_history import DOCUMENTS_FOLDER, HISTORY_FOLDER, ObjectLoadHistory
from airflow_provider_dgsentiment.storage.sources import results_root


def write_index(root: Path, documents: int) -> int:
    """A snapshot of ``documents`` scored records, as a nightly writes them; return its bytes."""
    folder = root / HISTORY_FOLDER / DOCUMENTS_FOLDER
    folder.mkdir(parents=True)
    path = folder / "snapshot-20261206T000000Z-benchmark.ndjson"
    with path.open("w") as file:
        for index in range(documents):
            line = {"kind": "scored", "source": f"tickets#T-{index:07d}", "fingerprint": f"{index:064x}"}
            line |= {"sentiment": "positive", "sentiment_score": 0.5, "record_key": f"T-{index:07d}"}
            line |= {"location": f"s3://bucket/exports/2024-05-01.jsonl#{index}", "dag_id": "nightly"}
            line |= {"task_id": "score_shard", "run_id": "scheduled__2024-05-01T02:00:00+00:00"}
            file.write(json.dumps(line | {"at": "2026-12-06T00:00:00+00:00"}) + "\n")
    return path.stat().st_size


def measure(documents: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as folder:
        size = write_index(Path(folder), documents)
        tracemalloc.start()
        started = time.perf_counter()
        history = ObjectLoadHistory(results_root(f"file://{folder}", None))
        history.prepare(compact=False)
        elapsed = time.perf_counter() - started
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(history.stored_documents([f"tickets#T-{documents - 1:07d}"])) == 1
    return size, elapsed, held / documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    measure(10)  # first use imports the storage layer: not a cost per document
    print(f"{'documents':>10} {'index MB':>9} {'read s':>7} {'held B/doc':>11}")
    for documents in args.documents:
        size, elapsed, per_document = measure(documents)
        print(f"{documents:>10} {size / 1e6:>9.1f} {elapsed:>7.2f} {per_document:>11.0f}")


if __name__ == "__main__":
    main()
