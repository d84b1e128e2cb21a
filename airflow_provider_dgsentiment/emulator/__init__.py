"""A local Deepgram-compatible ``/v1/read`` server: no key, no network, no spend.

Run it with ``dgsentiment-emulator`` (or ``python -m airflow_provider_dgsentiment.emulator``),
start it in-process with :class:`EmulatorServer`, or use the ``deepgram_emulator``
pytest fixture. It needs the ``emulator`` extra (aiohttp and vaderSentiment).

The names below are loaded on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.emulator.scoring import score_text
    from airflow_provider_dgsentiment.emulator.server import EmulatorConfig, EmulatorServer
    from airflow_provider_dgsentiment.emulator.tokens import count_tokens

__all__ = ["EmulatorConfig", "EmulatorServer", "count_tokens", "score_text"]

_EXPORTS = {
    "EmulatorConfig": "airflow_provider_dgsentiment.emulator.server",
    "EmulatorServer": "airflow_provider_dgsentiment.emulator.server",
    "score_text": "airflow_provider_dgsentiment.emulator.scoring",
    "count_tokens": "airflow_provider_dgsentiment.emulator.tokens",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
