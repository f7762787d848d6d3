"""Size estimates and the budgets they are checked against, before anything is built.

Every verb that builds a program estimates its op count first (closed forms below, checked
against the builders in tests/test_hardening_limits.py) and refuses, in one line naming the
estimate and the limit, what would not fit: a typo (``--ranks 1000000``) fails in well under a
second instead of running for minutes or exhausting memory.

Two budgets, each raised by an environment variable:

- ``RANKSCOPE_MAX_OPS``: ops a program may have (default: the memory budget over
  :data:`BYTES_PER_OP`, the measured peak of building and simulating a ring all-reduce,
  about 200 bytes per op: program columns, engine state, trace columns);
- ``RANKSCOPE_MEMORY``: bytes rankscope may use for one file or program (default half of the
  machine's physical memory; a size like ``64GiB``).
"""

from __future__ import annotations

import math
import os

from .errors import UsageError

BYTES_PER_OP = 200
BUDGET_HINT = "raise it with RANKSCOPE_MEMORY=<bytes>, e.g. RANKSCOPE_MEMORY=64GiB"
OPS_HINT = "raise it with RANKSCOPE_MAX_OPS=<n>"
MAX_RANKS = 1 << 22   # 4M ranks: per-rank arrays stay tens of MB (traces hold at most this many)
MAX_BYTES = 1 << 50   # 1 PiB: the largest buffer or message size a command line or a file may give


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_budget() -> int:
    """Bytes one file or program may take: ``RANKSCOPE_MEMORY`` or half the physical memory."""
    text = os.environ.get("RANKSCOPE_MEMORY")
    if text:
        from .units import parse_size

        try:
            v = parse_size(text)
        except UsageError as e:
            raise UsageError(f"RANKSCOPE_MEMORY: {e}") from None
        if v < 1:
            raise UsageError(f"RANKSCOPE_MEMORY must be >= 1 byte, got {text!r}")
        return v
    return _physical_memory() // 2


def max_ops() -> int:
    """Ops one program may have: ``RANKSCOPE_MAX_OPS`` or the memory budget / BYTES_PER_OP."""
    text = os.environ.get("RANKSCOPE_MAX_OPS")
    if text:
        try:
            v = int(text)
        except ValueError:
            raise UsageError(f"RANKSCOPE_MAX_OPS must be an integer, got {text!r}") from None
        if v < 1:
            raise UsageError(f"RANKSCOPE_MAX_OPS must be >= 1, got {v}")
        return v
    return memory_budget() // BYTES_PER_OP


def check_ops(estimate: float, what: str) -> None:
    """Refuse ``what`` when its estimated op count exceeds :func:`max_ops`."""
    limit = max_ops()
    if not estimate <= limit:
        raise UsageError(f"{what} would have about {estimate:.3g} ops, over the limit of {limit:.3g} "
                         f"({OPS_HINT}, or RANKSCOPE_MEMORY)")


def check_ranks(n: int, what: str = "--ranks") -> None:
    if n > MAX_RANKS:
        raise UsageError(f"{what} {n} is over the limit of {MAX_RANKS} ranks")


def _log2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def collective_ops(collective: str, algo: str, nranks: int, *, pieces: int = 4,
                   nodes: int | None = None) -> float:
    """An upper bound on the op count of :func:`~rankscope.simulator.collectives.build` (same
    names and aliases), from each builder's loop structure:

    - ring all-reduce: 2 (N-1) steps of N transfers; reduce-scatter, all-gather: (N-1) N;
    - halving-doubling: 2 log2 N steps of N transfers, plus 2 N for a non-power-of-two N's extras;
    - parameter server: 2 (N-1) transfers;
    - hierarchical (M nodes x G): intra reduce-scatter and all-gather 2 (G-1) G M, inter ring
      2 (M-1) M G;
    - ring broadcast: (N-1) x pieces; tree: N-1.
    """
    from .collectives import ALIASES

    coll = ALIASES.get(collective, collective)
    a = ALIASES.get(algo, algo)
    n = nranks
    if coll == "broadcast":
        return float((n - 1) * max(1, pieces)) if a == "ring" else float(n)
    if coll in ("reduce-scatter", "all-gather"):
        return float(n * (n - 1))
    if a == "hd":
        return float(2 * _log2(n) * n + 4 * n)
    if a == "ps":
        return float(2 * n)
    if a == "hier" and nodes:
        g = max(1, n // nodes)
        return float(2 * (g - 1) * g * nodes + 2 * (nodes - 1) * nodes * g + 2 * n)
    return float(2 * n * (n - 1))
