"""A dependency-free progress bar on stderr that appears only when work takes more than a moment."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "sweep") as bar: bar.step("64MiB ring")``.

    Draws nothing for the first ``delay`` seconds (quick runs stay quiet) and nothing when stderr is
    not a terminal unless ``force``; then a one-line bar redrawn in place.
    """

    def __init__(self, total: int, label: str, *, delay: float = 0.5, force: bool = False, stream=None):
        self.total, self.label, self.delay = max(total, 1), label, delay
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.done = 0
        self.t0 = time.perf_counter()
        self.drawn = False

    def __enter__(self) -> "Progress":
        return self

    def step(self, what: str = "") -> None:
        self.done += 1
        if not self.enabled or time.perf_counter() - self.t0 < self.delay:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"{elapsed:5.1f}s eta {eta:5.1f}s {what[:30]:<30}")
        self.stream.flush()
        self.drawn = True

    def __exit__(self, *exc) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
