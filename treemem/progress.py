"""A dependency-free progress bar for long runs, drawn on stderr when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from treemem.types import Closing


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressBar(Closing):
    """`label  42% |#####     | 120/289 frames [00:08<00:11, 14.2 frames/s]`.

    Redraws at most every `interval` seconds. Off by default when `stream` is not a terminal
    (logs and CI), so redirected output stays clean.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        unit: str = "frames",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 0.2,
        width: int = 24,
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self.width = width
        self.done = 0
        self._start = time.monotonic()
        self._drawn_at = float("-inf")
        self._shown = False

    def update(self, done: int) -> None:
        """Set the number of finished items (absolute, not an increment)."""
        self.done = min(max(done, 0), self.total) if self.total else max(done, 0)
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= self.interval or self.done == self.total):
            self._drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fraction = self.done / self.total if self.total else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + " " * (self.width - filled)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        text = (
            f"\r{self.label + '  ' if self.label else ''}{fraction:4.0%} |{bar}| "
            f"{self.done}/{self.total} {self.unit} [{_clock(elapsed)}<{_clock(left)}, "
            f"{rate:.1f} {self.unit}/s]"
        )
        self.stream.write(text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self._shown:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
