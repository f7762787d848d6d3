"""What every verb's parser shares: the parser class whose errors are one line, argument types,
and the topology and rank-count options.

Argument types raise :class:`argparse.ArgumentTypeError`, which argparse turns into a usage error;
:class:`Parser` turns that into a :class:`~rankscope.simulator.errors.UsageError` (one line on
stderr, exit 2) instead of argparse's usage block and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any, Callable

from rankscope.simulator import limits
from rankscope.simulator.errors import UsageError
from rankscope.simulator.sim_report import link_words
from rankscope.simulator.topology import DEFAULT_BW, DEFAULT_LAT
from rankscope.simulator.units import parse_size


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # one line and exit 2, instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def byte_size(text: str) -> int:
    """A byte count: ``4096``, ``1.5e6``, ``64KiB``, ``1GB``."""
    try:
        return parse_size(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def byte_sizes(text: str) -> list[int]:
    """Comma-separated byte counts: ``4KiB,1MiB``."""
    return [byte_size(t) for t in text.split(",") if t]


MAX_INT = 1 << 62  # no count on a command line is larger (and 4000-digit integers are refused quickly)


def int_at_least(lo: int, hi: int = MAX_INT) -> Callable[[str], int]:
    """An integer in ``lo..hi``."""
    def conv(text: str) -> int:
        if len(text) > 30:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:20]!r}... ({len(text)} characters)")
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {v}")
        return v
    return conv


def bounded_float(lo: float, hi: float, what: str, *, lo_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``lo..hi`` (``(lo, hi]`` with ``lo_open``)."""
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(v) and (lo < v if lo_open else lo <= v) and v <= hi):
            raise argparse.ArgumentTypeError(f"must be {what} {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {text}")
        return v
    return conv


MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 7 * 86400.0


def seconds(text: str) -> float:
    """A timeout in seconds: 1 s (torch.distributed's rendezvous needs that much) to a week."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not MIN_TIMEOUT <= v <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} seconds, got {text}")
    return v


def gamma(text: str) -> float:
    """``--gamma``: a reduction cost in seconds per byte, 0 (default) to 1 s/B (a byte a second)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds per byte, got {text!r}") from None
    if not 0 <= v <= 1:  # also NaN
        raise argparse.ArgumentTypeError(f"gamma must be a finite number >= 0 and <= 1 (seconds per byte), got {text}")
    return v


DEFAULT_LINKS = link_words({"preset": "switch", "bw": DEFAULT_BW, "lat": DEFAULT_LAT})
"""``25 GB/s and 5 us per link; alpha = 2 links = 10 us (rank -> switch -> rank)``: the default
links of ``switch:N``, from the simulator's own defaults, in the words ``rankscope sim`` prints."""


def add_topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", "-t", help=f"switch:N (default; {DEFAULT_LINKS}), ring:N (the same links; "
                   "alpha = 1 link to the next rank), dgx-a100, dgx-h100, "
                   "nodes:MxG[,gpu=h100,nics=8,nic=400Gb/s], or a .toml file")
    p.add_argument("--bw", help=f"per-link bandwidth override for ring/switch, e.g. 25GB/s (default "
                   f"{DEFAULT_BW / 1e9:g} GB/s)")
    p.add_argument("--lat", help=f"per-link latency override for ring/switch, e.g. 5us (default "
                   f"{DEFAULT_LAT * 1e6:g} us)")
    p.add_argument("--gamma", type=gamma, default=0.0, help="reduction cost in seconds per byte (default 0)")


_PRESET_RANKS = re.compile(r"^\s*(?:(?:ring|switch):(\d+)|nodes:(\d+)x(\d+))\s*$", re.I)


def spec_ranks(spec: str) -> int | None:
    """The rank count written in a preset spec (``switch:16``, ``nodes:2x8``), read from the text
    and checked against :func:`~rankscope.simulator.limits.max_ranks` before the topology is
    built (``nodes:1000x1000`` would cost minutes of links first); None if the text has none."""
    m = _PRESET_RANKS.match(spec)
    if not m:
        return None
    if m.group(1) is not None:
        if len(m.group(1)) > 12:
            limits.check_ranks(10 ** 12, f"topology {spec!r}")
        n = int(m.group(1))
    else:
        if len(m.group(2)) + len(m.group(3)) > 12:
            limits.check_ranks(10 ** 12, f"topology {spec!r}")
        n = int(m.group(2)) * int(m.group(3))
    limits.check_ranks(n, f"topology {spec!r}")
    return n


def resolve_ranks(a: argparse.Namespace, default: int) -> int:
    """``--ranks``, else the rank count of a ``--topology`` that has one (``dgx-h100``: 8, a TOML
    file, ``switch:16``), else ``default``; set on ``a``, checked against the rank limit and
    returned. A topology spec without a count (``ring``) takes the default; any other error of
    the topology (a TOML file's zero bandwidth) is raised as it is."""
    if a.topology:
        spec_ranks(a.topology)
    if a.ranks is None:
        a.ranks = default
        if a.topology and a.topology.strip().lower() not in ("ring", "switch"):
            from rankscope.simulator.topology import parse_topology

            a.ranks = parse_topology(a.topology, bw=a.bw, lat=a.lat).nranks
    limits.check_ranks(a.ranks)
    return a.ranks


def topology_from_args(a: argparse.Namespace, nranks: int):
    from rankscope.simulator.topology import parse_topology

    limits.check_ranks(nranks)
    if a.topology:
        spec_ranks(a.topology)
    spec = a.topology or f"switch:{nranks}"
    return parse_topology(spec, nranks, bw=a.bw, lat=a.lat)


def finite_or_null(doc: Any) -> Any:
    """``doc`` with every NaN and infinity replaced by None: JSON has neither (``"algbw":
    Infinity`` is not JSON; 0 seconds on one rank has no bandwidth)."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite_or_null(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite_or_null(v) for v in doc]
    return doc


def dump_json(doc: Any) -> None:
    """``doc`` as one line of strict JSON on stdout (NaN and infinities as null)."""
    json.dump(finite_or_null(doc), sys.stdout, allow_nan=False, default=_plain)
    sys.stdout.write("\n")


def _plain(o: Any) -> Any:
    """numpy scalars and arrays in a JSON document (``json`` knows neither)."""
    if hasattr(o, "tolist"):
        return finite_or_null(o.tolist())
    raise TypeError(f"{type(o).__name__} is not JSON-able")
