"""Link figures and counts as topologies take them: bandwidths and latencies from numbers or strings
with units ("25 GB/s", "400Gb/s", "2 us"), rank counts, node names; each checked, with a
TopologyError that says what to write instead. Shared by the topology model, its presets and its
TOML loader (:mod:`simulator.topology`, :mod:`simulator.topology_toml`)."""

from __future__ import annotations

import math
import numbers
import re
from decimal import Decimal, InvalidOperation

from .errors import TopologyError

_BW_UNITS = {"B/s": 0, "kB/s": 3, "MB/s": 6, "GB/s": 9, "TB/s": 12,
             "b/s": 0, "kb/s": 3, "Mb/s": 6, "Gb/s": 9, "Tb/s": 12}
_LAT_UNITS = {"s": 0, "ms": -3, "us": -6, "µs": -6, "ns": -9}
_QTY = re.compile(r"^\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ/]+)\s*$")
BW_RANGE = (1.0, 1e18)  # bytes/s a link may have: 1 B/s to 1 EB/s
LAT_MAX = 3600.0  # seconds of latency a link may have (femtosecond ticks stay exact integers)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_quantity(value, what: str, bandwidth: bool) -> float:
    """Bytes/s (``bandwidth``) or seconds from a number (a string of one too, as the command line
    gives it: ``--bw 25e9``) or a string with a unit; checked."""
    units, example = (_BW_UNITS, "25 GB/s") if bandwidth else (_LAT_UNITS, "5 us")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TopologyError(f"{what} {value!r} is not a number; give a number or a string like {example!r}")
    x = value
    if isinstance(value, str) and is_number(value):
        x = float(value)
    elif isinstance(value, str):
        m = _QTY.match(value)
        try:
            x = Decimal(m.group(1)).scaleb(units[m.group(2)])  # exact, then rounded once
        except (AttributeError, KeyError, InvalidOperation):
            raise TopologyError(f"cannot read {what} {value!r}: use a number or a string like {example!r} "
                                f"(units: {', '.join(units)})") from None
        x = x / 8 if m.group(2).endswith("b/s") else x  # "Gb/s" counts bits
    try:
        x = float(x)
    except OverflowError:
        x = math.inf
    if not (math.isfinite(x) and (x > 0 if bandwidth else x >= 0)):
        kind = "bandwidth > 0 bytes/s" if bandwidth else "latency >= 0 s"
        raise TopologyError(f"{what} {value!r} must be a finite {kind}, e.g. {example!r}")
    lo, hi = BW_RANGE if bandwidth else (0.0, LAT_MAX)
    if not lo <= x <= hi:
        unit = "bytes/s" if bandwidth else "s"
        raise TopologyError(f"{what} {value!r} is out of range: {lo:g} to {hi:g} {unit}")
    return x


def parse_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise TopologyError(f"{what} {value!r} must be a whole number >= 1")
    return int(value)


def parse_node(x, n: int, what: str):
    if isinstance(x, str) and x:
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TopologyError(f"{what} {x!r} is neither a rank (an int) nor a switch/NIC name (a string)")
    if not 0 <= x < n:
        raise TopologyError(f"{what} {x} is not a rank: ranks are 0..{n - 1}; use one of those "
                            "or a string for a switch/NIC node")
    return int(x)



def bounded(n: int, spec: str) -> None:
    """A preset's rank count within the limit (rankscope.simulator.limits.max_ranks), checked before
    its links are built: ``nodes:1000x1000`` would take minutes of Python first."""
    from . import limits

    if n > limits.max_ranks():
        raise TopologyError(f"topology {spec!r}: {n} ranks is over the limit of {limits.max_ranks()} "
                            "(raise it with RANKSCOPE_MAX_RANKS=<n>)")
