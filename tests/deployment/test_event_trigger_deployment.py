"""The asset-scheduled example on a real distributed Airflow 3: its event trigger in the triggerer (SPEC 16).

``deepgram_sentiment_on_new_objects`` is scheduled on the asset ``dgsentiment_new_texts``, whose
``AssetWatcher`` runs :class:`DeepgramNewObjectsTrigger` in the deployment's triggerer over the
inbox folder (``DGSENTIMENT_INBOX_SOURCE``, a look every 5 s). New texts must fire exactly one
event per batch, each event must start one run that scores only what is new, and a triggerer
restart must not fire again for objects already announced or scored.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.api import AirflowAPI
from tests.deployment.pipeline import TERMINAL_RUN_STATES, Deployment, MetadataDB, emulator_stats

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(900)]

DAG_ID = "deepgram_sentiment_on_new_objects"
ASSET = "dgsentiment_new_texts"
#: scripts/deployment.sh sets DGSENTIMENT_INBOX_POLL_INTERVAL to this.
POLL_INTERVAL = 5
#: The dag-processor registers the watcher's trigger when it parses the unpaused DAG again (every 30 s).
TRIGGER_TIMEOUT = 240
RUN_TIMEOUT = 300


def write_texts(inbox: Path, texts: dict[str, str]) -> None:
    """Land ``texts`` in the inbox together: written beside it, then renamed in, so one look sees them all."""
    staging = inbox.parent / "inbox-staging"
    staging.mkdir(exist_ok=True)
    for name, text in texts.items():
        (staging / name).write_text(text)
    for name in texts:
        (staging / name).replace(inbox / name)


def wait_for_watcher(deployment: Deployment, *, not_on: int | None = None) -> tuple[int, int]:
    """Wait until the watcher's trigger runs in a triggerer (one other than ``not_on``); return both ids."""
    deadline = time.monotonic() + TRIGGER_TIMEOUT
    with MetadataDB(deployment.metadata_uri) as metadata:
        while time.monotonic() < deadline:
            found = metadata.watcher_trigger(ASSET)
            if found and found[1] is not None and found[1] != not_on:
                return found[0], found[1]
            time.sleep(2)
    raise TimeoutError(f"the watcher of {ASSET} was not running in a triggerer after {TRIGGER_TIMEOUT}s")


def asset_runs(airflow: AirflowAPI) -> list[dict[str, Any]]:
    return airflow.dag_runs(DAG_ID, run_type="asset_triggered")


def wait_for_runs(airflow: AirflowAPI, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` asset-triggered runs exist and all have ended."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = asset_runs(airflow)
        if len(runs) >= count and all(run["state"] in TERMINAL_RUN_STATES for run in runs):
            return runs
        time.sleep(3)
    raise TimeoutError(
        f"{DAG_ID}: {len(asset_runs(airflow))} asset-triggered run(s) after {RUN_TIMEOUT}s, {count} expected"
    )


def watched_events(deployment: Deployment) -> list[dict[str, Any]]:
    with MetadataDB(deployment.metadata_uri) as metadata:
        return metadata.watched_asset_events(ASSET)


def batch_sizes(events: list[dict[str, Any]]) -> list[int]:
    """How many objects each watcher event announced (Airflow keeps the trigger event as ``payload``)."""
    return [event["extra"]["payload"]["count"] for event in events]


def test_new_texts_fire_one_run_per_batch_across_a_triggerer_restart(deployment, airflow, say):
    inbox = Path(deployment.inbox)
    assert not list(inbox.iterdir()), f"{inbox} is not empty at the start"
    airflow.unpause(DAG_ID)
    trigger_id, triggerer = wait_for_watcher(deployment)
    say(f"on_new_objects: watcher trigger {trigger_id} running in triggerer job {triggerer}")

    sent = emulator_stats(deployment).requests
    write_texts(inbox, {f"call-{i}.txt": f"Call {i}: the agent was kind and fixed it fast." for i in range(3)})
    (first,) = wait_for_runs(airflow, 1)
    paid = emulator_stats(deployment).requests - sent
    events = watched_events(deployment)
    say(
        f"on_new_objects: 3 texts landed -> {len(events)} event(s) {batch_sizes(events)}, "
        f"run {first['dag_run_id']} {first['state']}, {paid} request(s)"
    )
    assert first["state"] == "success"
    assert batch_sizes(events) == [3], events
    assert paid == 3

    deployment.control("restart", "triggerer")
    trigger_id, restarted = wait_for_watcher(deployment, not_on=triggerer)
    time.sleep(4 * POLL_INTERVAL)  # four looks by the restarted triggerer over the same, scored inbox
    runs, events = asset_runs(airflow), watched_events(deployment)
    say(
        f"on_new_objects: triggerer restarted (job {triggerer} -> {restarted}); after {4 * POLL_INTERVAL}s: "
        f"{len(events)} event(s), {len(runs)} run(s)"
    )
    assert len(events) == 1 and len(runs) == 1, "the restarted triggerer fired again for scored objects"

    sent = emulator_stats(deployment).requests
    changed = {"call-0.txt": "Call 0, corrected: the agent was rude."}
    write_texts(inbox, {"call-3.txt": "Call 3: nobody answered for an hour, awful.", "call-4.txt": "Fine.", **changed})
    runs = wait_for_runs(airflow, 2)
    paid = emulator_stats(deployment).requests - sent
    events = watched_events(deployment)
    say(
        f"on_new_objects: 2 new + 1 changed -> {len(events)} event(s) {batch_sizes(events)}, "
        f"runs {[(run['dag_run_id'], run['state']) for run in runs]}, {paid} request(s)"
    )
    assert len(runs) == 2 and all(run["state"] == "success" for run in runs), runs
    assert batch_sizes(events) == [3, 3], events
    assert paid == 3
