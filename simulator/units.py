"""Byte sizes in and out (``64MiB``, ``1GB``, ``4096``, ``1.5e6``), and the other formats every
layer prints: seconds, counts, sets of ranks (``{0-3,5}``).

Decimal units (kB, MB, GB, TB) are powers of 1000, as nccl-tests reports them; binary units
(KiB, MiB, GiB, TiB) are powers of 1024. A bare number is bytes; ``B`` may follow any unit.
"""

from __future__ import annotations

import re
from typing import Sequence

from .errors import UsageError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
MAX_BYTES = 1 << 50
"""1 PiB: the largest size a command line or a file may give (a buffer, a chunk, a message); a
thousand of them still sum exactly in float64 and int64, so no byte count wraps."""
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in ``text``; a whole number of bytes in 0..:data:`MAX_BYTES` or :class:`UsageError`."""
    if isinstance(text, bool):
        raise UsageError(f"size must be a number of bytes, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE.match(str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise UsageError(f"cannot parse size {text!r}: use bytes like 4096, 1.5e6, 64KiB, 1GB")
        exact = float(m.group(1)) * _UNITS[unit]
        if not exact <= MAX_BYTES:  # also inf (1e400)
            raise UsageError(f"size {text!r} is over the limit of {MAX_BYTES} bytes (1 PiB)")
        value = int(round(exact))
        if abs(exact - value) > 1e-6 * max(1.0, exact):
            raise UsageError(f"size {text!r} is not a whole number of bytes ({exact})")
    if value < 0:
        raise UsageError(f"size must be >= 0 bytes, got {value}")
    if value > MAX_BYTES:
        raise UsageError(f"size {value} is over the limit of {MAX_BYTES} bytes (1 PiB)")
    return value


def format_bytes(n: float) -> str:
    """Short binary form for tables: ``512B``, ``64KiB``, ``1.5MiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.0f}{unit}" if n == int(n) else f"{n:.3g}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_seconds(t: float) -> str:
    """``850ns``, ``12.3us``, ``1.52ms``, ``2.10s`` for tables."""
    t = float(t)
    if t != t:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(t) >= scale:
            return f"{t / scale:.3g}{unit}"
    return f"{t * 1e9:.3g}ns"


def format_dec_bytes(n: float) -> str:
    """Decimal units, 3 significant digits: ``262kB``, ``2.1MB``, ``31.4GB`` (memory tables)."""
    n = float(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}B"


def format_count(n: float) -> str:
    """``4.2M``, ``6.74B`` parameters."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def format_ranks(ranks: Sequence[int], nranks: int) -> str:
    """``{0-3,5}``; ``all`` when every rank contributed, ``-`` when none did."""
    if len(ranks) == 0:
        return "-"
    if len(ranks) == nranks and nranks > 1:
        return "all"
    runs, start, prev = [], ranks[0], ranks[0]
    for r in list(ranks[1:]) + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}" if prev > start + 1 else f"{start},{prev}")
        if r is not None:
            start = prev = r
    return "{" + ",".join(runs) + "}"
