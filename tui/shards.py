"""FSDP, visibly: per unit, what each rank holds of its parameters and gradients at the cursor.

For training programs with ``param_unsharded`` buffers (ZeRO-3/FSDP, ``simulator.training``):
every rank keeps its 1/N shard of each unit (in the flat ``param`` buffer); a unit's unsharded
parameters are alive on a rank from its all-gather's ALLOC to its FREE (filling while the
all-gather runs), and its full-size gradient (``grad_unsharded``) from its ALLOC until the
reduce-scatter that sends it back to shards is done. Pure: read from the Replay's layout (which
buffers are alive on which rank) and the trace's collective times. No widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.program import OpKind

from .replay import Replay

FULL, FILLING, NONE = "█", "▒", "·"


@dataclass(frozen=True)
class UnitRow:
    """One unit: its name, the bytes of its shard on each rank, and per rank a glyph for its
    unsharded parameters and for its full-size gradient (FULL, FILLING: a collective on it runs
    now, NONE: not alive)."""

    unit: str
    shard_bytes: int
    params: str
    grads: str


def units(r: Replay) -> list[tuple[str, int, int]]:
    """(unit, unsharded parameters buffer, full-size gradient buffer or -1) of an FSDP program."""
    bufs = r.program.buffers
    by_name = {b.name: i for i, b in enumerate(bufs)}
    out = []
    for i, b in enumerate(bufs):
        if b.category == "param_unsharded":
            unit = b.name.rsplit(".", 1)[0]
            out.append((unit, i, by_name.get(f"{unit}.grad_unsharded", -1)))
    return out


def rows(r: Replay) -> list[UnitRow]:
    """The units' state at the cursor (see the module docstring)."""
    p, tr = r.program, r.trace
    alive = r.layout.alive
    co = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
    running = co[(tr.start[co] <= r.time) & (r.time < tr.end[co])] if r.mode == "time" else \
        co[np.isin(co, r.step_ops())]
    busy = {(int(p.coll_buf[p.arg[o]]), int(p.rank[o])) for o in running}
    out = []
    for unit, pb, gb in units(r):
        def glyphs(b: int) -> str:
            if b < 0:
                return ""
            return "".join(FILLING if (b, k) in busy else FULL if alive[k, b] else NONE for k in range(r.nranks))
        out.append(UnitRow(unit, -(-p.buffers[pb].nbytes // r.nranks), glyphs(pb), glyphs(gb)))
    return out
