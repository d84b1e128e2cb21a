"""Names earlier releases exported from paths that moved: one helper that warns and forwards."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def warn_moved(old_module: str, new_module: str, name: str) -> Any:
    """
    Return ``name`` from ``new_module``, warning that ``old_module`` is a deprecated path.

    Used by a module-level ``__getattr__`` in the old module, so the warning names the line
    of user code that imports the old path.

    :param old_module: the module the user imported (e.g. ``airflow_provider_dgsentiment.results``).
    :param new_module: the module that holds the name now.
    :param name: the attribute asked for.
    """
    if name.startswith("__"):
        raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(new_module), name)
    from airflow.exceptions import AirflowProviderDeprecationWarning

    warnings.warn(
        f"{old_module}.{name} moved to {new_module}.{name} in airflow-provider-dgsentiment 0.3; "
        f"import it from there (the old path goes in 0.5)",
        AirflowProviderDeprecationWarning,
        stacklevel=3,
    )
    return value
