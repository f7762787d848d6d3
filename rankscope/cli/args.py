"""What every verb's parser shares: the parser class whose errors are one line, argument types,
and the topology and rank-count options.

Argument types raise :class:`argparse.ArgumentTypeError`, which argparse turns into a usage error;
:class:`Parser` turns that into a :class:`~rankscope.simulator.errors.UsageError` (one line on
stderr, exit 2) instead of argparse's usage block and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from rankscope.simulator.errors import UsageError
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


def int_at_least(lo: int) -> Callable[[str], int]:
    """An integer >= ``lo``."""
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return conv


def seconds(text: str) -> float:
    """A duration in seconds, > 0 and finite."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds and finite, got {text}")
    return v


def add_topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", "-t", help="ring:N, switch:N (default), dgx-a100, dgx-h100, nodes:MxG, "
                   "or a .toml file")
    p.add_argument("--bw", help="per-link bandwidth override for ring/switch, e.g. 25GB/s (default 25GB/s)")
    p.add_argument("--lat", help="per-link latency override for ring/switch, e.g. 5us (default 5us)")
    p.add_argument("--gamma", type=float, default=0.0, help="reduction cost in seconds per byte (default 0)")


def resolve_ranks(a: argparse.Namespace, default: int) -> int:
    """``--ranks``, else the rank count of a ``--topology`` that has one (``dgx-h100``: 8, a TOML
    file, ``switch:16``), else ``default``; set on ``a`` and returned."""
    if a.ranks is None:
        a.ranks = default
        if a.topology:
            from rankscope.simulator.errors import TopologyError
            from rankscope.simulator.topology import parse_topology

            try:
                a.ranks = parse_topology(a.topology, bw=a.bw, lat=a.lat).nranks
            except TopologyError:  # a spec without N ("ring"): the default; a bad one fails later
                pass
    return a.ranks


def topology_from_args(a: argparse.Namespace, nranks: int):
    from rankscope.simulator.topology import parse_topology

    spec = a.topology or f"switch:{nranks}"
    return parse_topology(spec, nranks, bw=a.bw, lat=a.lat)


def dump_json(doc: Any) -> None:
    """``doc`` as one line of JSON on stdout."""
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
