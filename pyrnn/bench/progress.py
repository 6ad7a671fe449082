"""Progress on stderr: a redrawn bar on a terminal, one plain line per group otherwise.

Nothing here ever writes to stdout, which carries only the report (so ``| tee`` and ``>`` get a
clean table).
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO


class Progress:
    """Counts ``total`` steps, grouped (a cell and shape per group)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = max(total, 1)
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.group_label = ""

    def group(self, label: str) -> None:
        """A new group of steps begins."""
        self.group_label = label
        if self.live:
            self._draw(label)
        else:
            print(f"pyrnn.bench: [{self.done}/{self.total}] {label}", file=self.stream,
                  flush=True)

    def step(self, label: str) -> None:
        """One more step begins (it counts as done when the next one begins or at close)."""
        if self.done < self.total:
            self.done += 1
        if self.live:
            self._draw(label)

    def note(self, text: str) -> None:
        """A message line that the bar does not overwrite."""
        if self.live:
            self.close()
        print(f"pyrnn.bench: {text}", file=self.stream, flush=True)
        if self.live:
            self._draw(self.group_label)

    def _draw(self, label: str) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        bar_width = 24
        filled = bar_width * self.done // self.total
        head = f"[{'#' * filled}{'.' * (bar_width - filled)}] {self.done}/{self.total} "
        line = (head + label)[: width - 1]
        self.stream.write("\r" + line.ljust(width - 1))
        self.stream.flush()

    def close(self) -> None:
        """Clear the bar so that what follows starts on a clean line."""
        if self.live:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
