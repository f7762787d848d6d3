"""Drill-down: a training step's COLLECTIVE op as the schedule that implements it.

A training program keeps each collective as one macro op (``simulator.training``); opening one
builds its ring schedule with the same builder ``rankscope sim`` uses
(``simulator.collectives.build(kind, "ring", N, bytes)``) and simulates it on the topology the
trace recorded, so the collective view shows its steps with provenance. Pure: no widgets.
"""

from __future__ import annotations

from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import Topology, parse_topology
from rankscope.simulator.trace import Trace
from rankscope.simulator.units import format_bytes

RING_KINDS = {CollKind.ALL_GATHER: "all-gather", CollKind.REDUCE_SCATTER: "reduce-scatter",
              CollKind.ALL_REDUCE: "all-reduce"}


def schedule(trace: Trace, op: int) -> tuple[Trace, str]:
    """(the simulated ring schedule of COLLECTIVE op ``op``, a title naming it)."""
    p = trace.program
    if p.kind[op] != OpKind.COLLECTIVE:
        raise ValueError(f"op {op} is not a collective")
    a = int(p.arg[op])
    kind = CollKind(int(p.coll_kind[a]))
    name = RING_KINDS.get(kind, kind.label)
    nbytes, n = int(p.coll_bytes[a]), p.nranks
    prog = build(name, "ring", n, nbytes)
    topo_d = trace.meta.get("topology")
    topo = Topology.from_dict(topo_d) if isinstance(topo_d, dict) else parse_topology(f"switch:{n}")
    sub = simulate(prog, topo).to_trace(prog, topo, {"drilled_from": int(op)})
    b = int(p.coll_buf[a])
    what = f" of {p.buffers[b].name!r}" if b >= 0 else ""
    return sub, f"op {op}: {kind.label}{what}, {format_bytes(nbytes)}, as a ring on {n} ranks · escape: back"
