"""Running a trigger to its end in a test, as the triggerer would."""

from __future__ import annotations

import asyncio
import json


def all_events(trigger) -> list:
    """Run the trigger to its end and return every event it yielded."""

    async def collect() -> list:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def only_event(trigger) -> dict:
    """Run the trigger; check it yields exactly one event and return that event's payload."""
    events = all_events(trigger)
    assert len(events) == 1, f"expected one terminal event, got {len(events)}"
    payload = events[0].payload
    json.dumps(payload)  # plain JSON, nothing pickled
    return payload
