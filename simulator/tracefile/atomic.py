"""Output files: a regular file is replaced atomically, anything else is streamed to or refused.

A regular file (or a new name) gets a temp file beside it (as readable as any file the user writes:
mkstemp makes 0600), fsynced and renamed over it, so an interrupted write never leaves half a file.
What is not a regular file is never replaced: a FIFO or a character device (``/dev/null``, a
terminal) is opened and written in place, a folder or a block device is refused, ``-`` is
refused (stdout carries the report). SIGTERM removes the temp file as SIGINT does (the handler
raises :class:`SystemExit` while a write is in flight, so ``finally`` blocks run).

:func:`~rankscope.simulator.errors.check_output` runs before any work: a long run must not end in
an error about its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from typing import Any, Callable, Iterator

from ..errors import check_output, output_kind


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises ``SystemExit(143)`` so that
    cleanup runs, as for SIGINT's KeyboardInterrupt; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write_atomic(path: str | os.PathLike, fill: Callable[[Any], None]) -> None:
    """``fill(f)`` writes a binary file object. A regular file (or a new name) is written to a temp
    file beside ``path``, fsynced and renamed over it (on any failure the temp file goes and
    ``path`` is untouched); a symlink's target is what is replaced; a FIFO or character device is
    written in place. Anything else is refused (:func:`check_output`)."""
    path = os.fspath(path)
    check_kind = output_kind(path) if path not in ("", "-") else None
    if check_kind in ("fifo", "chr"):
        with open(path, "wb") as f:
            fill(f)
        return
    if check_kind not in ("new", "file"):
        check_output(path)  # raises the one-line reason
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    with sigterm_as_exit():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, "wb") as f:
                fill(f)  # may close f (pyarrow's PythonFile does)
            fsync_path(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    fsync_path(folder)


def write_text_atomic(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Write a text file atomically (``write(f)`` fills it): every JSON and TOML file rankscope writes."""
    import io

    def fill(raw: Any) -> None:
        f = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
        try:
            write(f)
            f.flush()
        finally:
            f.detach()

    write_atomic(path, fill)
