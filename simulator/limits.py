"""Size estimates and the budgets they are checked against, before anything is built.

Every verb that builds a program estimates its op count first (closed forms below, checked
against the builders in tests/test_hardening_limits.py) and refuses, in one line naming the
estimate and the limit, what would not fit: a typo (``--ranks 1000000``) fails in well under a
second instead of running for minutes or exhausting memory.

Two budgets, each raised by an environment variable:

- ``RANKSCOPE_MAX_OPS``: ops a program may have (default: the memory budget over
  :data:`BYTES_PER_OP`, the measured peak of building and simulating a ring all-reduce,
  about 64 bytes per op at 33.5M ops (README, Benchmarks: 2.1 GB peak), doubled for slack);
- ``RANKSCOPE_MEMORY``: bytes rankscope may use for one file or program (default half of the
  machine's physical memory; a size like ``64GiB``).
"""

from __future__ import annotations

import math
import os
import re

from .errors import UsageError
from .units import MAX_BYTES, parse_size

BYTES_PER_OP = 128
BUDGET_HINT = "raise it with RANKSCOPE_MEMORY=<bytes>, e.g. RANKSCOPE_MEMORY=64GiB"
OPS_HINT = "raise it with RANKSCOPE_MAX_OPS=<n>"
MAX_RANKS = 1 << 22   # 4M ranks: per-rank arrays stay tens of MB (traces hold at most this many)
DEFAULT_MAX_CLI_RANKS = 1 << 13   # ranks a command line may ask for (RANKSCOPE_MAX_RANKS raises it)
MAX_GRAD_ACCUM = 1 << 12  # micro-batches of one training step (each repeats every layer's ops)
MAX_PIECES = 1 << 12  # pieces of a pipelined broadcast (4,096 pieces on 4 ranks: 12,288 ops)
__all__ = ["MAX_BYTES", "MAX_RANKS", "MAX_PIECES", "MAX_GRAD_ACCUM", "memory_budget", "max_ops", "max_ranks", "check_ops",
           "check_ranks", "collective_ops", "model_units", "train_ops"]


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_budget() -> int:
    """Bytes one file or program may take: ``RANKSCOPE_MEMORY`` or half the physical memory."""
    text = os.environ.get("RANKSCOPE_MEMORY")
    if text:
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
    return _env_int("RANKSCOPE_MAX_OPS", memory_budget() // BYTES_PER_OP)


def check_ops(estimate: float, what: str) -> None:
    """Refuse ``what`` when its estimated op count exceeds :func:`max_ops`."""
    limit = max_ops()
    if not estimate <= limit:
        raise UsageError(f"{what} would have about {estimate:.3g} ops, over the limit of {limit:.3g} "
                         f"({OPS_HINT}, or RANKSCOPE_MEMORY)")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        v = int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {text!r}") from None
    if v < 1:
        raise UsageError(f"{name} must be >= 1, got {v}")
    return v


def max_ranks() -> int:
    """Ranks one command may ask for: ``RANKSCOPE_MAX_RANKS`` or 8,192 (a topology of N ranks is
    built link by link in Python and routed pair by pair: 4,096 ranks already take seconds)."""
    return min(_env_int("RANKSCOPE_MAX_RANKS", DEFAULT_MAX_CLI_RANKS), MAX_RANKS)


def check_ranks(n: int, what: str = "--ranks") -> None:
    limit = max_ranks()
    if n > limit:
        raise UsageError(f"{what}: {n} ranks is over the limit of {limit} (raise it with RANKSCOPE_MAX_RANKS=<n>, "
                         f"at most {MAX_RANKS})")


def _log2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def collective_ops(collective: str, algo: str, nranks: int, *, pieces: int = 4,
                   nodes: int | None = None) -> float:
    """An upper bound on the op count of :func:`~rankscope.simulator.collectives.build` (same
    names and aliases), from each builder's loop structure:

    - ring all-reduce: 2 (N-1) steps of N transfers; reduce-scatter, all-gather: (N-1) N;
    - halving-doubling (hd, hd-far): 2 log2 N steps of N transfers, plus 4 N for a non-power-of-two N's extras;
    - parameter server: 2 (N-1) transfers;
    - hierarchical (M nodes x G): intra reduce-scatter and all-gather 2 (G-1) G M, inter ring
      2 (M-1) M G;
    - ring broadcast: (N-1) x pieces; tree: N-1;
    - nccl-ring: the ring's count per channel, times the channels; nccl-tree: per channel and
      piece, a reduce up and a broadcast down the tree, 2 (N-1) transfers.
    """
    from .collectives import ALIASES, NCCL_CHANNELS

    coll = ALIASES.get(collective, collective)
    a = ALIASES.get(algo, algo)
    n = nranks
    if a == "nccl-tree":
        return float(NCCL_CHANNELS * max(1, pieces) * 2 * (n - 1))
    if a == "nccl-ring":
        return NCCL_CHANNELS * collective_ops(coll, "ring", n)
    if coll == "broadcast":
        return float((n - 1) * max(1, pieces)) if a == "ring" else float(n)
    if coll in ("reduce-scatter", "all-gather"):
        return float(n * (n - 1))
    if a in ("hd", "hd-far"):  # either order of the halving-doubling steps: the same transfers
        return float(2 * _log2(n) * n + 4 * n)
    if a == "ps":
        return float(2 * n)
    if a == "hier" and nodes:
        g = max(1, n // nodes)
        return float(2 * (g - 1) * g * nodes + 2 * (nodes - 1) * nodes * g + 2 * n)
    return float(2 * n * (n - 1))


_MLP = re.compile(r"^\s*mlp:(\d+)x(\d+)\s*$", re.I)
_PARAMS = re.compile(r"^\s*params:([^x]*)(?:x(\d+))?\s*$", re.I)
MAX_PARAMS = 1e15     # parameters of a model: 14,000 Llama-2-70Bs
MAX_UNITS = 100_000   # layers (units) of a model: Llama-2-70B has 83


def model_units(spec: str) -> int | None:
    """The unit count a model spec asks for, read from its text before anything is built
    (``mlp:LxW`` has L, ``params:PxU`` has U); None for presets and specs without one."""
    p = _PARAMS.match(spec)
    if p is not None:
        try:
            params = float(p.group(1))
        except ValueError:
            return None  # parse_model says what is wrong
        if not params <= MAX_PARAMS:
            raise UsageError(f"model {spec!r} asks for {params:g} parameters, over the limit of {MAX_PARAMS:g}")
        if p.group(2) is None:
            return None
        units = int(p.group(2)) if len(p.group(2)) < 12 else MAX_UNITS + 1
    else:
        m = _MLP.match(spec)
        if m is None:
            return None
        units = int(m.group(1)) if len(m.group(1)) < 12 else MAX_UNITS + 1
    if units > MAX_UNITS:
        raise UsageError(f"model {spec!r} asks for {units} layers, over the limit of {MAX_UNITS}")
    m = _MLP.match(spec)
    if m and (len(m.group(2)) > 9 or int(m.group(2)) > 1 << 24):
        raise UsageError(f"model {spec!r}: the width is over the limit of {1 << 24}")
    return units


def train_ops(units: int, nranks: int, grad_accum: int = 1) -> float:
    """An upper bound on a training step's ops: each rank runs per unit and micro-batch a forward
    and a backward compute, its allocs and frees, and at most three collectives (ZeRO-3:
    all-gather forward and backward, reduce-scatter), 14 ops, plus the optimizer's and the step's
    fixed ops (64); tests/test_hardening_limits.py checks it against
    :func:`~.training.compile_step`."""
    return float(nranks) * (14 * units * max(1, grad_accum) + 64)
