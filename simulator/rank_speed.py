"""Per-rank compute speed: stragglers as a program transformation, not an engine feature.

The engine takes each compute op's seconds from the program (``compute_seconds[arg]``), and a
training step shares one compute entry among all ranks' copies of a template op ([Note:
templates] in simulator/training.py). :func:`scale_compute` gives every compute op its own entry,
scaled by its rank's factor, so a slow rank (a throttled GPU, an older node) simulates with the
unchanged engine. A topology carries the factors as ``[[rank]]``
tables (``id``, ``speed``) in its TOML; ``meta["rank_speed"]`` holds one speed per rank.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import UsageError
from .program import OpKind, Program


def time_factors(topo, nranks: int) -> np.ndarray:
    """Seconds multiplier per rank from ``topo.meta["rank_speed"]`` (1 / speed; all 1 without)."""
    speeds = (topo.meta or {}).get("rank_speed") if topo is not None else None
    if not speeds:
        return np.ones(nranks)
    if len(speeds) != nranks:
        raise UsageError(f"topology {topo.name!r} gives {len(speeds)} rank speeds for {nranks} ranks")
    return 1.0 / np.asarray(speeds, dtype=np.float64)


def scale_compute(prog: Program, factor) -> Program:
    """``prog`` with every compute op on rank r taking ``factor[r]`` times as long (FLOPs scaled
    alike, for programs timed by a device rate). Returns ``prog`` itself when every factor is 1."""
    f = np.asarray(factor, dtype=np.float64)
    if f.shape != (prog.nranks,) or not np.all(f > 0) or not np.all(np.isfinite(f)):
        raise UsageError(f"need one finite factor > 0 per rank ({prog.nranks}), got {f.tolist()}")
    if np.all(f == 1.0):
        return prog
    comp = np.flatnonzero(prog.kind == OpKind.COMPUTE)
    a = prog.arg[comp]
    arg = prog.arg.copy()
    arg[comp] = np.arange(comp.size)
    labels = prog.compute_label
    return dataclasses.replace(
        prog, arg=arg, compute_seconds=prog.compute_seconds[a] * f[prog.rank[comp]],
        compute_flops=(prog.compute_flops[a] * f[prog.rank[comp]]) if prog.compute_flops.size else np.zeros(comp.size),
        compute_label=tuple(labels[i] for i in a.tolist()),
        meta={**prog.meta, "rank_time_factor": f.tolist()})


def with_topology_speeds(prog: Program, topo) -> Program:
    """``prog`` scaled by the ``[[rank]]`` speeds of ``topo`` (unchanged when it has none)."""
    return scale_compute(prog, time_factors(topo, prog.nranks))
