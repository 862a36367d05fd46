"""A progress bar for long work: redrawn in place on a terminal, a line per tenth otherwise."""
from __future__ import annotations

import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, total: int, stream: TextIO):
        self.total = max(total, 1)
        self.stream = stream
        self.interactive = stream.isatty()
        self.started = time.perf_counter()
        self._last_tenth = -1

    def update(self, done: int, detail: str = "") -> None:
        fraction = min(done / self.total, 1.0)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        if self.interactive:
            filled = int(fraction * WIDTH)
            bar = "#" * filled + "." * (WIDTH - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total}  {detail}  eta {eta:.0f}s ")
            self.stream.flush()
            return
        tenth = int(fraction * 10)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(f"{done}/{self.total}  {detail}  eta {eta:.0f}s\n")
            self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
