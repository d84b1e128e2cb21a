"""How the engine's window reacts to the account: one value object, given to the engine.

The defaults are what ``make benchmark`` measured best on a shared account (see
:mod:`.concurrency` for the reasoning); a benchmark or a user with an unusual account passes
another :class:`EngineTuning` to the hook (``DeepgramSentimentHook(tuning=...)``) instead of
patching module constants.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineTuning:
    """
    The adaptive window's (AIMD) knobs.

    :param decrease_factor: the window is multiplied by this on a 429 (one decrease per burst).
    :param additive_increase: slots added per window of successes (TCP adds 1.0).
    :param accelerate_after_windows: the increase grows by its own size every this many windows
        without a 429 (quick to take up capacity other workers left).
    :param slow_start: start from ``slow_start_window`` and double per round trip until the
        first 429; False starts at the maximum (the connection's ``max_concurrency``).
    :param slow_start_window: the window slow start begins with.
    """

    decrease_factor: float = 0.75
    additive_increase: float = 1 / 32
    accelerate_after_windows: int = 16
    slow_start: bool = True
    slow_start_window: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.decrease_factor < 1.0:
            raise ValueError(f"decrease_factor must be between 0 and 1, got {self.decrease_factor}")
        if self.additive_increase <= 0:
            raise ValueError(f"additive_increase must be positive, got {self.additive_increase}")
        if self.accelerate_after_windows < 1 or self.slow_start_window < 1:
            raise ValueError("accelerate_after_windows and slow_start_window must be at least 1")


#: The tuning every engine uses unless it is given another.
DEFAULT_TUNING = EngineTuning()
