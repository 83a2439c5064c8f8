"""Seconds per stage, in order: ``laps("fit")`` records the time since the previous lap."""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional


class Laps:
    """A lap timer; ``on_lap`` (the job's progress reporter) hears of each finished stage."""

    def __init__(self, on_lap: Optional[Callable[[str], None]] = None) -> None:
        self.seconds: Dict[str, float] = {}
        self._clock = time.monotonic()
        self._on_lap = on_lap

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._clock, 3)
        self._clock = now
        if self._on_lap is not None:
            self._on_lap(name)
