"""Seconds per sub-stage, in order: ``laps("fit")`` records the time since the previous lap."""

from __future__ import annotations

import time
from typing import Dict


class Laps:
    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self._clock = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._clock, 3)
        self._clock = now
