"""Where the seconds go: named laps, for load and stage timings."""

from __future__ import annotations

import time


class Stopwatch:
    """Named laps in seconds: `lap(name)` adds the time since the previous lap (or the start)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now
