"""The discrete-event engine: when every op of a program runs on a topology.

[Note: the timing model]
- A transfer is a *message* on the connection (src, dst, buffer). Messages on one connection go one
  at a time, in the order they become ready (ties by op id): a connection is a FIFO stream, as a TCP
  socket or an NCCL channel is; a program gives each channel its own buffer. Messages on different
  connections run concurrently.
- A message first pays its route's latency α (the sum of its links' latencies), then moves its
  bytes as a *flow* along the route. Flows that share a link share its bandwidth with max-min
  fairness (progressive filling, as SimGrid's flow model); a flow alone gets the smallest
  bandwidth on its route. The connection is free again when the last byte arrives.
- A REDUCE then costs the receiver ``gamma`` seconds per byte before the op ends (γ in Thakur et
  al. 2005); a COPY ends on arrival.
- COMPUTE ops run one at a time on their rank's compute lane, for ``compute_seconds`` plus
  ``compute_flops / flops_per_s``; they overlap with communication, as CUDA streams do.
- ALLOC and FREE take no time.
- COLLECTIVE ops (macro ops of training programs) run one at a time on their rank's comm lane,
  in the order they become ready, as NCCL kernels on one stream do; a program whose collectives
  use several streams and communicators has one lane per connected set of them, and collectives on
  different lanes run at once, sharing the links by processor sharing (:mod:`simulator.engine_share`,
  [Note: streams, communicators and lanes]). A collective starts when every
  rank's op has reached the head of its lane and takes the ring's closed form
  (:mod:`simulator.costs`) with α the slowest ring hop's route latency and β its smallest
  bandwidth on the topology, or the seconds a cost model put in ``meta["coll_seconds"]`` (one per
  collective id: NCCL's tuner, :func:`simulator.training.nccl_collective_seconds`), alone; macro ops
  model no contention with transfers.
So one uncontended ring step costs α + c·β (+ c·γ), exactly the closed forms' terms.

[Note: two paths, one answer]
Most schedules never change a flow's rate while it moves: a ring on a ring or a switch, a
hierarchical ring on ``nodes:MxG``, k channel rings over the same ranks (k equal flows per link,
1/k each). For them every op's times follow from a longest-path sweep, one numpy pass per step
(:mod:`simulator.engine_sweep`), with per-step checks that prove the sharing was uniform. When a
check fails (or the program's steps are not clean levels), the event loop runs instead
(:mod:`simulator.engine_loop`): a heap of timed events, all events at one instant handled as a
batch, flow state in arrays, and max-min rates recomputed for the flows a change touches. Both give
the same times where both apply (a test forces the event loop and compares). Deterministic: no
randomness, ties broken by the order events were scheduled.
Collectives on several comm lanes that overlap defeat the sweep; where every rank runs the same
ops with the same durations the event loop then runs on one rank and its times are every rank's
(:func:`simulator.engine_symmetric.symmetric_timing`, exact by symmetry, tested against the loop on all
ranks). Modules: this one (the API and the result), :mod:`simulator.engine_context` (routes, connections,
durations, result tuples), :mod:`simulator.engine_sweep`, :mod:`simulator.engine_loop`,
:mod:`simulator.maxmin`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .engine_context import Context, RouteTable, collective_durations, collective_latency, compute_durations, link_rows
from .engine_context import ring_alpha_beta as ring_alpha_beta
from .engine_loop import EventLoop
from .engine_share import collective_lanes
from .engine_sweep import sweep
from .engine_symmetric import symmetric_timing
from .errors import UsageError
from .maxmin import max_min_rates as max_min_rates
from .program import OpKind, Program

LANES = ("compute", "comm", "memory")
LANE_COMPUTE, LANE_COMM, LANE_MEMORY = 0, 1, 2
DEFAULT_MAX_LINK_ROWS = 16_000_000


@dataclass(frozen=True)
class SimResult:
    """Times per op (seconds from 0) and link usage intervals: link ``link_id[i]`` carried
    ``link_bytes[i]`` over ``[link_t0[i], link_t1[i])`` (one row per flow, hop and rate period)."""

    start: np.ndarray
    end: np.ndarray
    lane: np.ndarray
    link_id: np.ndarray
    link_t0: np.ndarray
    link_t1: np.ndarray
    link_bytes: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return float(self.end.max() - self.start.min()) if self.end.size else 0.0

    def to_trace(self, prog: Program, topo, meta: dict | None = None):
        """This result as a :class:`~simulator.trace.Trace` (executor "sim", clock "simulated")."""
        from .trace import Trace

        info = {"executor": "sim", "clock": "simulated", "lanes": list(LANES),
                "topology": topo.to_dict(), "engine": self.info, **(meta or {})}
        return Trace(prog, self.start, self.end, self.lane, self.link_id, self.link_t0, self.link_t1,
                     self.link_bytes, info)


def simulate(prog: Program, topo, *, gamma: float = 0.0, flops_per_s: float | None = None,
             method: str = "auto", max_link_rows: int = DEFAULT_MAX_LINK_ROWS,
             link_orbit: np.ndarray | None = None) -> SimResult:
    """Simulate ``prog`` on ``topo`` (a :class:`simulator.topology.Topology`).

    ``method``: "auto" (the sweep when it is exact, else the event loop), "sweep" (raise if it is
    not exact) or "events". Link rows beyond ``max_link_rows`` are dropped (info["link_rows"]
    says so): the op times stay exact. info["shared_steps"] counts the steps the sweep found links
    shared uniformly in. ``link_orbit``: run every route on its links' orbits under a symmetry
    (:meth:`RouteTable.fold`; the program is one orbit's representatives, for time only: no link rows).
    """
    if topo.nranks != prog.nranks:
        raise UsageError(f"topology {topo.name!r} has {topo.nranks} ranks, the program {prog.nranks}")
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise UsageError(f"gamma must be a finite number >= 0 (seconds per byte), got {gamma}")
    if method not in ("auto", "sweep", "events"):
        raise UsageError(f"unknown method {method!r}")
    table = RouteTable(prog, topo)
    if link_orbit is not None:
        if max_link_rows:
            raise UsageError("a program folded onto link orbits is for time only: pass max_link_rows=0")
        table.fold(np.asarray(link_orbit, dtype=np.int64))
    ctx = Context(prog, table, gamma, compute_durations(prog, flops_per_s), collective_durations(prog, topo, gamma))
    lanes = collective_lanes(prog)
    if lanes.size and lanes.max() > 0:  # collectives on more than one lane may overlap and share links
        ctx.coll_lane, ctx.coll_lat = lanes, collective_latency(prog, topo, gamma, ctx.coll_dur)
    timing = None
    if method in ("auto", "sweep"):
        timing = sweep(ctx, max_link_rows, topo.link_bw)
        if timing is None and method == "sweep":
            raise UsageError("the sweep is not exact for this program and topology (flows share a link "
                             "unevenly, or collectives on several lanes may overlap); use method 'auto' or 'events'")
    symmetric = False
    if timing is None and method == "auto" and ctx.n_lanes > 1:
        timing = symmetric_timing(ctx, topo)
        symmetric = timing is not None
    if timing is None:
        ctx.shared_steps = 0
        timing = EventLoop(ctx, topo.link_bw, record=max_link_rows > 0).run()
    lane = np.full(prog.n_ops, LANE_MEMORY, dtype=np.int32)
    lane[prog.kind == OpKind.COMPUTE] = LANE_COMPUTE
    lane[prog.is_transfer | (prog.kind == OpKind.COLLECTIVE)] = LANE_COMM
    rows = link_rows(ctx, timing, max_link_rows)
    info = {"method": timing.method, "gamma": gamma, "link_rows": rows.note, "n_links": int(topo.link_bw.size),
            "shared_steps": ctx.shared_steps, "comm_lanes": ctx.n_lanes, "rank_symmetric": symmetric}
    return SimResult(timing.start, timing.end, lane, rows.link_id, rows.t0, rows.t1, rows.nbytes, info)
