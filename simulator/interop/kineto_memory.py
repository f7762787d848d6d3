"""Memory timelines from a Kineto trace's ``[memory]`` events, and the frees the profiler misses.

[Note: frees the profiler misses]
The profiler records an allocator event only on threads where profiling is on. gloo's worker may
drop the last reference to a buffer (e.g. the copy gloo's reduce-scatter makes of its input) after
its profiled section ends, so the free goes unrecorded and ``Total Allocated`` drifts up by that
buffer (seen here: 4 MiB on rank 0 but not on rank 1 of the same run). Corrections, counted in
``meta.ranks[r].memory``:
- a buffer allocated inside a ``c10d::*`` call (gloo's own copy) and never freed, or whose address
  is handed out again while it is still live, was freed when that collective finished (the
  earliest it can have been: gloo's worker held it until then);
- a buffer the caller allocated for a collective (just before the call, inside the same annotation,
  with the size of one of its tensors: the output FSDP's all-gather fills) is treated the same
  when its address is handed out again while live, or when it was allocated from the second
  training step on and never freed (steady-state steps do not grow memory; a buffer allocated
  earlier, like FSDP's sharded gradients, may well live on); an all-gather's output (FSDP's flat
  all-gather buffer, copied out into the unsharded parameters and dropped) is transient in every
  step, the first included;
- a buffer allocated during set-up (before the first step) on the calling thread, never freed, whose
  size is that of the next collective's tensor on the thread, which also runs during set-up: DDP's
  coalesced broadcast of the initial parameters (16.8 MB for mlp:4x1024), whose last reference
  gloo's worker drops in some runs and not in others, is freed when that broadcast finishes;
- any other address handed out again while live was freed just before.
Anything else still allocated at the end stays allocated (parameters, optimizer state). Memory
allocated before profiling started is one ``before-profiling`` buffer (split where the trace frees
parts of it), counted as parameters and their state (what a training job makes before its first
step). Each allocation's category is one of ``simulator.memory.CATEGORIES``, from the phase that
made it (``PHASE_CATEGORY``) or, in a trace rankscope exported, the category it wrote.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from ..memory import PHASE_CATEGORY, category
from .collectives import MeasuredCollective, numel
from .errors import ImportFormatError
from .measured import Allocation


def allocations(p, calls: list, colls: list[MeasuredCollective]) -> tuple[list[Allocation], dict]:
    """Allocations from the ``[memory]`` events of a rank parser ``p`` (see [Note: frees the
    profiler misses]); ``calls``/``colls``: its c10d calls and the collectives they became."""
    mem = p.mem
    if not mem:
        return [], {}
    for e in mem:
        for k in ("Bytes", "Total Allocated"):
            if not isinstance(e.args.get(k), (int, float)):
                raise ImportFormatError(f"{p.where(e)}: [memory] event without a numeric {k!r}")
    dev_type = 1 if any(int(e.args.get("Device Type", 0)) == 1 for e in mem) else 0
    mem = [e for e in mem if int(e.args.get("Device Type", 0)) == dev_type]
    if dev_type == 1:
        ids = [int(e.args.get("Device Id", 0)) for e in mem]
        dev_id = max(set(ids), key=ids.count)
        mem = [e for e, d in zip(mem, ids) if d == dev_id]
        device = f"cuda:{dev_id}"
    else:
        device = "cpu"
    cat = _Categorizer(p.x)
    held = _HeldByCollective(p.x, calls, colls, p.world) if calls else None
    first = mem[0]
    baseline = int(first.args["Total Allocated"]) - int(first.args["Bytes"])
    live: dict[Any, list] = {}
    out: list[Allocation] = []
    implicit = at_coll = 0
    pre_freed: list[tuple[float, int]] = []

    steps = p.steps()
    steady = steps[1][0] if len(steps) > 1 else math.inf
    setup_end = steps[0][0] if steps else -math.inf

    def missed(a: list, bound: float) -> float:
        """When a buffer whose free went unrecorded was freed (``bound``: before its address was
        handed out again; NaN: no sign that it was freed at all)."""
        nonlocal at_coll
        hit = held.free_time(a[4], a[0], a[1], setup_end) if held is not None else None
        if hit is not None:
            t, inside, kind = hit
            transient = kind == "all-gather" and a[0] >= setup_end
            known = inside or transient or not math.isnan(bound) or a[0] >= steady
            if known and (math.isnan(bound) or t <= bound):
                at_coll += 1
                return t
        return bound

    for e in mem:
        b = int(e.args["Bytes"])
        addr = e.args.get("Addr")
        if b > 0:
            if addr in live:
                a = live.pop(addr)
                out.append(Allocation(a[0], missed(a, e.t), a[1], a[2], a[3]))
                implicit += 1
            c = category(e.args.get("rankscope category") or PHASE_CATEGORY[cat.category(e.tid, e.t)])
            live[addr] = [e.t, b, c, str(e.args.get("rankscope buffer", "")), e.tid]
        elif b < 0:
            a = live.pop(addr, None)
            if a is None:
                pre_freed.append((e.t, -b))
            else:
                out.append(Allocation(a[0], e.t, a[1], a[2], a[3]))
    for a in live.values():
        out.append(Allocation(a[0], missed(a, math.nan), a[1], a[2], a[3]))
    t_first = first.t
    rest = baseline - sum(b for _, b in pre_freed)
    for t, b in pre_freed:
        out.append(Allocation(t_first, t, b, PHASE_CATEGORY["before-profiling"], "before-profiling"))
    if rest > 0:
        out.append(Allocation(t_first, math.nan, rest, PHASE_CATEGORY["before-profiling"], "before-profiling"))
    total_end = sum(a.nbytes for a in out if math.isnan(a.end))
    info = {"device": device, "events": len(mem), "address_reused_while_live": implicit,
            "frees_at_collective_end": at_coll,
            "profiler_total_at_end": int(mem[-1].args["Total Allocated"]),
            "reconstructed_total_at_end": int(total_end)}
    return out, info


class _HeldByCollective:
    """Which collective a buffer belonged to, for frees the profiler missed (see [Note: frees the
    profiler misses]): one allocated inside a ``c10d::*`` call (gloo's own copies), or allocated on
    the calling thread just before the call, inside the same annotation (e.g. ``FSDP::all_gather
    (layer0)``), with the size of one of the call's tensors (the output it fills)."""

    def __init__(self, events: list, calls: list, colls: list[MeasuredCollective], world: int):
        self.calls = []
        for e, c in zip(calls, colls):
            sizes = set()
            dims = e.args.get("Input Dims") or []
            for d in dims:
                try:
                    if d:
                        n = numel(d)
                        sizes |= {n * k for k in (1, 2, 4, 8)}
                except TypeError:
                    pass
            self.calls.append((e.tid, e.t, e.end, c.end if not math.isnan(c.end) else e.end, sizes, c.kind))
        self.calls.sort(key=lambda c: c[1])
        self.ann: dict[Any, list[tuple[float, float]]] = {}
        for e in events:
            if e.cat == "user_annotation" and not e.name.startswith(("ProfilerStep", "rankscope::")):
                self.ann.setdefault(e.tid, []).append((e.t, e.end))

    def _innermost(self, tid: Any, t: float) -> tuple[float, float] | None:
        best = None
        for a, b in self.ann.get(tid, ()):
            if a <= t <= b and (best is None or b - a < best[1] - best[0]):
                best = (a, b)
        return best

    def free_time(self, tid: Any, t: float, nbytes: int,
                  setup_end: float = -math.inf) -> tuple[float, bool, str] | None:
        """(when the collective that held the buffer finished, whether the buffer was allocated
        inside the call, the collective's kind), or None if no collective held it. ``setup_end``: when the first training
        step began (a set-up buffer may belong to the next set-up collective without an annotation)."""
        for ctid, a, b, done, _, kind in self.calls:
            if ctid == tid and a <= t <= b:
                return done, True, kind
        scope = self._innermost(tid, t)
        if scope is None:
            if t >= setup_end:
                return None
            nxt = next((c for c in self.calls if c[0] == tid and c[1] > t), None)
            if nxt is not None and nxt[2] < setup_end and nbytes in nxt[4]:
                return nxt[3], True, nxt[5]
            return None
        for ctid, a, _b, done, sizes, kind in self.calls:
            if ctid == tid and t < a <= scope[1] and nbytes in sizes:
                return done, False, kind
        return None


class _Categorizer:
    """Which phase was running on a thread when it allocated: a key of
    :data:`simulator.memory.PHASE_CATEGORY`, which says what such an allocation holds."""

    RULES = (("comm", ("c10d::", "gloo:", "nccl:", "record_param_comms")),
             ("optimizer", ("rankscope::optimizer", "Optimizer.step#")),
             ("backward", ("rankscope::bwd", "autograd::engine::evaluate_function", "FSDP::pre_backward",
                           "FSDP::post_backward")),
             ("forward", ("rankscope::fwd", "FSDP::pre_forward", "FSDP::post_forward")),
             ("step", ("ProfilerStep#",)))

    def __init__(self, events: list):
        self.idx: dict[tuple[Any, str], tuple[list[float], list[float]]] = {}
        for cat, prefixes in self.RULES:
            per_tid: dict[Any, list[tuple[float, float]]] = {}
            for e in events:
                if e.name.startswith(prefixes):
                    per_tid.setdefault(e.tid, []).append((e.t, e.end))
            for tid, iv in per_tid.items():
                iv.sort()
                starts, ends = [], []
                for s, t in iv:  # merge into disjoint intervals
                    if ends and s <= ends[-1]:
                        ends[-1] = max(ends[-1], t)
                    else:
                        starts.append(s)
                        ends.append(t)
                self.idx[(tid, cat)] = (starts, ends)
        self.any_step = any(k[1] == "step" for k in self.idx)

    def category(self, tid: Any, t: float) -> str:
        for cat, _ in self.RULES:
            iv = self.idx.get((tid, cat))
            if iv:
                i = bisect.bisect_right(iv[0], t) - 1
                if i >= 0 and t <= iv[1][i]:
                    return cat
        return "setup" if self.any_step else "other"
