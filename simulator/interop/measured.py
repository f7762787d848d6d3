"""One rankscope trace from what each rank of a real job recorded (any importer's output).

[Note: measured traces]
An importer reads each rank's file into a :class:`RankRecord`: the collectives it issued
(:class:`~.collectives.MeasuredCollective`), compute spans (forward/backward per unit, optimizer
step), allocations (memory), and the training-step windows. :func:`build_trace` then

1. aligns the ranks: within a process group, the k-th collective of every member rank is one
   collective (by the flight recorder's ``collective_seq_id`` where there is one). Ranks that
   disagree on the kind or the size at some position, or that issued different numbers of
   collectives, are refused with :class:`~.errors.SequenceMismatchError` naming the first
   difference: that difference is usually the bug (or the hang) being looked for.
2. builds a :class:`~simulator.program.Program` on the ranks seen: one COLLECTIVE op per rank and
   collective (the three kinds the collective table holds), one COMPUTE op per span (its measured
   seconds as ``compute_seconds``), one buffer per allocation with an ALLOC op and, if it was freed,
   a FREE op. A measured trace knows the order of ops on each lane, not their data dependencies, so
   dependencies are lane chains: each collective waits for the previous one of its group on that
   rank, each compute op for the previous compute op, each FREE for its ALLOC.
3. orders ops by time (a collective's key is its earliest start over ranks, so its ops stay
   together) and gives each collective, and each other op, its own step, so the program is sorted
   by step as the replay cursor needs; phases name the setup and each training step.

Collectives a Program cannot hold (broadcast, all-to-all, barrier, point-to-point) are kept, with
their times and their position in the rank's sequence, in ``meta["other_collectives"]``: they take
part in the sequence check and the exporters write them back, so an import -> export -> import
round trip loses none. Lanes are the simulator's (:data:`simulator.engine.LANES`); the clock is
``wall``: seconds since the earliest event of any rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..engine import LANE_COMM, LANE_COMPUTE, LANE_MEMORY, LANES
from ..program import Buffer, Init, OpKind, Phase, Program, csr_from_lists
from ..trace import Trace
from .collectives import MODELLED, MeasuredCollective
from .errors import ImportFormatError, SequenceMismatchError


@dataclass(frozen=True)
class Span:
    """A compute annotation on one rank: ``fwd layer0``, ``bwd layer0``, ``optimizer step``."""

    label: str
    start: float
    end: float


@dataclass(frozen=True)
class Allocation:
    """Bytes that one rank's allocator handed out at ``start`` and took back at ``end`` (NaN:
    still allocated when the recording stopped). ``category`` is one of
    ``simulator.memory.CATEGORIES``: what the phase that allocated it most likely made (a profiler
    does not know what a buffer holds; see ``simulator.memory.PHASE_CATEGORY``)."""

    start: float
    end: float
    nbytes: int
    category: str = "other"
    name: str = ""


@dataclass
class RankRecord:
    """What one rank recorded. Times are seconds on a clock shared by all ranks of the import."""

    rank: int
    source: str
    collectives: list[MeasuredCollective] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    steps: list[tuple[float, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _group_key(c: MeasuredCollective) -> str:
    return c.group


def _ordinal(i: int) -> str:
    return f"#{i + 1}"


def align(records: list[RankRecord]) -> list[tuple[str, list[list[MeasuredCollective]]]]:
    """Per process group, the collectives as a list of positions, each the list of the member
    ranks' parts (see [Note: measured traces], point 1)."""
    groups: dict[str, dict[int, list[MeasuredCollective]]] = {}
    empty = [rec.rank for rec in records if not rec.collectives]
    busy = [rec for rec in records if rec.collectives]
    if empty and busy:  # a rank that stopped (or never started) before its first collective
        b = min(busy, key=lambda rec: rec.rank)
        raise SequenceMismatchError(
            f"rank {empty[0]} recorded no collectives while rank {b.rank} recorded {len(b.collectives)} "
            f"(first: {_ordered(b.collectives)[0].describe()}); rank {empty[0]} stopped before its first")
    for rec in records:
        for c in rec.collectives:
            groups.setdefault(_group_key(c), {}).setdefault(rec.rank, []).append(c)
    out = []
    for g in sorted(groups, key=lambda k: (len(k), k)):
        per_rank = groups[g]
        ranks = sorted(per_rank)
        seqs = {r: _ordered(per_rank[r]) for r in ranks}
        use_seq = all(c.seq is not None for r in ranks for c in seqs[r])
        if use_seq:
            positions = _by_seq(g, seqs)
        else:
            positions = _by_position(g, seqs)
        out.append((g, positions))
    return out


def _ordered(cs: list[MeasuredCollective]) -> list[MeasuredCollective]:
    if all(c.seq is not None for c in cs):
        return sorted(cs, key=lambda c: c.seq)
    return sorted(cs, key=lambda c: (_key_time(c), c.issue if not math.isnan(c.issue) else 0.0))


def _key_time(c: MeasuredCollective) -> float:
    for t in (c.issue, c.start):
        if not math.isnan(t):
            return t
    return math.inf


def _mismatch(g: str, pos: int, a: MeasuredCollective, b: MeasuredCollective) -> SequenceMismatchError:
    return SequenceMismatchError(
        f"ranks disagree on the collective sequence of process group {g!r} at collective "
        f"{_ordinal(pos)}: rank {a.rank} issued {a.describe()}, rank {b.rank} issued {b.describe()}")


def _by_position(g: str, seqs: dict[int, list[MeasuredCollective]]) -> list[list[MeasuredCollective]]:
    ranks = sorted(seqs)
    ref = ranks[0]
    n = min(len(seqs[r]) for r in ranks)
    for i in range(n):
        a = seqs[ref][i]
        for r in ranks[1:]:
            b = seqs[r][i]
            if (a.kind, a.nbytes) != (b.kind, b.nbytes):
                raise _mismatch(g, i, a, b)
    lengths = {r: len(seqs[r]) for r in ranks}
    if len(set(lengths.values())) > 1:
        short = min(ranks, key=lambda r: lengths[r])
        long_ = max(ranks, key=lambda r: lengths[r])
        nxt = seqs[long_][lengths[short]]
        counts = ", ".join(f"rank {r}: {lengths[r]}" for r in ranks)
        raise SequenceMismatchError(
            f"ranks disagree on the collective sequence of process group {g!r}: they issued "
            f"different numbers of collectives ({counts}); rank {short} has no collective "
            f"{_ordinal(lengths[short])}, which rank {long_} issued as {nxt.describe()}")
    return [[seqs[r][i] for r in ranks] for i in range(n)]


def _by_seq(g: str, seqs: dict[int, list[MeasuredCollective]]) -> list[list[MeasuredCollective]]:
    """Align by collective_seq_id. A flight recorder keeps the last K entries, so ranks may start
    at different ids: ids before the latest first id are dropped. Past that, every rank must hold
    every id up to the highest: a rank whose record stops early is the one the others wait for."""
    ranks = sorted(seqs)
    by = {r: {c.seq: c for c in seqs[r]} for r in ranks}
    first = max(min(by[r]) for r in ranks if by[r])
    last = {r: max(by[r]) for r in ranks}
    top = max(last.values())
    out = []
    for s in range(first, top + 1):
        have = [r for r in ranks if s in by[r]]
        if len(have) < len(ranks):
            missing = [r for r in ranks if s not in by[r]]
            c = by[have[0]][s] if have else None
            what = f", which rank {have[0]} issued as {c.describe()}" if c else ""
            raise SequenceMismatchError(
                f"ranks disagree on the collective sequence of process group {g!r}: rank(s) "
                f"{', '.join(map(str, missing))} recorded no collective with sequence id {s}{what} "
                f"(last ids per rank: {', '.join(f'{r}: {last[r]}' for r in ranks)})")
        a = by[ranks[0]][s]
        for r in ranks[1:]:
            b = by[r][s]
            if (a.kind, a.nbytes) != (b.kind, b.nbytes):
                raise _mismatch(g, s - 1, a, b)
        out.append([by[r][s] for r in ranks])
    return out


# -- the program -------------------------------------------------------------------------------
@dataclass
class _Op:
    key: float
    tie: tuple
    rank: int
    kind: OpKind
    arg: int
    start: float
    end: float
    lane: int
    dep: list = field(default_factory=list)  # _Op objects it waits for


def build_trace(records: Iterable[RankRecord], meta: dict[str, Any] | None = None) -> Trace:
    """The trace of a measured run (see [Note: measured traces])."""
    records = sorted(records, key=lambda r: r.rank)
    if not records:
        raise ImportFormatError("nothing to import: no rank's file was given")
    seen: dict[int, str] = {}
    for rec in records:
        if rec.rank in seen:
            raise ImportFormatError(f"two files claim rank {rec.rank}: {seen[rec.rank]} and {rec.source}")
        seen[rec.rank] = rec.source
    nranks = max(seen) + 1
    t0 = _earliest(records)
    ops: list[_Op] = []
    coll_kind, coll_bytes, coll_info = [], [], []
    others: list[dict[str, Any]] = []
    for g, positions in align(records):
        prev: dict[int, _Op] = {}
        for pos, parts in enumerate(positions):
            first = parts[0]
            if not first.modelled:
                for c in parts:
                    others.append({"rank": c.rank, "kind": c.kind, "nbytes": c.nbytes,
                                   "start": c.start - t0, "end": c.end - t0, "issue": c.issue - t0,
                                   "name": c.name, "impl": c.impl, "group": g, "position": pos,
                                   "dtype": c.dtype, "group_ranks": list(c.group_ranks or ())})
                continue
            cid = len(coll_kind)
            coll_kind.append(int(MODELLED[first.kind]))
            coll_bytes.append(int(first.nbytes))
            coll_info.append({"name": first.name, "impl": first.impl, "group": g, "position": pos,
                              "dtype": first.dtype, "group_ranks": list(first.group_ranks or ())})
            key = min(_key_time(c) for c in parts) - t0
            for c in parts:
                op = _Op(key, (0, cid, c.rank), c.rank, OpKind.COLLECTIVE, cid, c.start - t0,
                         c.end - t0, LANE_COMM, [prev[c.rank]] if c.rank in prev else [])
                prev[c.rank] = op
                ops.append(op)
    labels, seconds = [], []
    buffers: list[Buffer] = []
    for rec in records:
        prev_c = None
        for sp in sorted(rec.spans, key=lambda s: (s.start, s.end)):
            k = len(labels)
            labels.append(sp.label)
            seconds.append(max(0.0, sp.end - sp.start))
            op = _Op(sp.start - t0, (1, rec.rank, k), rec.rank, OpKind.COMPUTE, k, sp.start - t0,
                     sp.end - t0, LANE_COMPUTE, [prev_c] if prev_c else [])
            ops.append(op)
            prev_c = op
        for i, a in enumerate(sorted(rec.allocations, key=lambda a: a.start)):
            b = len(buffers)
            buffers.append(Buffer(a.name or f"r{rec.rank}.{a.category}.{i}", int(a.nbytes), Init.EMPTY,
                                  alive=False, category=a.category))
            al = _Op(a.start - t0, (2, rec.rank, b, 0), rec.rank, OpKind.ALLOC, b, a.start - t0,
                     a.start - t0, LANE_MEMORY)
            ops.append(al)
            if not math.isnan(a.end):
                ops.append(_Op(a.end - t0, (2, rec.rank, b, 1), rec.rank, OpKind.FREE, b, a.end - t0,
                               a.end - t0, LANE_MEMORY, [al]))
    ops.sort(key=lambda o: (o.key if not math.isnan(o.key) else math.inf, o.tie))
    index = {id(o): i for i, o in enumerate(ops)}
    step = np.zeros(len(ops), dtype=np.int64)
    s = -1
    last_coll = None
    for i, o in enumerate(ops):
        if o.kind == OpKind.COLLECTIVE and o.arg == last_coll:
            step[i] = s
            continue
        s += 1
        step[i] = s
        last_coll = o.arg if o.kind == OpKind.COLLECTIVE else None
    ptr, idx = csr_from_lists([[index[id(d)] for d in o.dep] for o in ops])
    windows = {str(r.rank): [[a - t0, b - t0] for a, b in r.steps] for r in records}
    phases = _phases(ops, step, records, t0)
    pmeta = {"kind": "measured", "nranks": nranks, "ranks": sorted(seen),
             **{k: v for k, v in (meta or {}).get("program_meta", {}).items()}}
    prog = Program(
        nranks, np.array([int(o.kind) for o in ops], np.uint8), np.array([o.rank for o in ops]),
        np.full(len(ops), -1), np.array([o.arg for o in ops]), step, ptr, idx, tuple(buffers),
        np.zeros(0), np.zeros(0), np.zeros(0), np.array(seconds, np.float64),
        np.zeros(len(labels)), tuple(labels), tuple(phases), pmeta,
        np.array(coll_kind, np.uint8), np.array(coll_bytes, np.int64),
        np.full(len(coll_kind), -1, np.int32)).validate()
    tmeta = {k: v for k, v in (meta or {}).items() if k != "program_meta"}
    tmeta = {"executor": "measured", "clock": "wall", "topology": None, "lanes": list(LANES),
             **tmeta, "steps": windows, "collectives": coll_info, "other_collectives": others,
             "ranks": {str(r.rank): {"source": r.source, **r.info} for r in records},
             "t0": t0}
    return Trace(prog, np.array([o.start for o in ops], np.float64),
                 np.array([o.end for o in ops], np.float64), np.array([o.lane for o in ops], np.int32),
                 meta=tmeta)


def _earliest(records: list[RankRecord]) -> float:
    ts = []
    for r in records:
        ts += [t for c in r.collectives for t in (c.start, c.issue) if not math.isnan(t)]
        ts += [s.start for s in r.spans] + [a.start for a in r.allocations] + [w[0] for w in r.steps]
    ts = [t for t in ts if not math.isnan(t)]
    return min(ts) if ts else 0.0


def _phases(ops: list[_Op], step: np.ndarray, records: list[RankRecord], t0: float) -> list[Phase]:
    """``setup`` before the first training step, then ``step k`` from the earliest start of step
    k on any rank (display only: ranks' windows differ slightly)."""
    n = max((len(r.steps) for r in records), default=0)
    if not ops:
        return []
    starts = [min((r.steps[k][0] for r in records if len(r.steps) > k), default=math.inf) - t0
              for k in range(n)]
    names = ["setup"] + [f"step {k}" for k in range(n)]
    bounds = [-math.inf] + starts
    keys = np.array([o.key if not math.isnan(o.key) else math.inf for o in ops])
    first_op = [int(np.searchsorted(keys, b, side="left")) for b in bounds] + [len(ops)]
    out = []
    for j, name in enumerate(names):
        a, b = first_op[j], first_op[j + 1]
        if b > a:
            s0 = int(step[a])
            s1 = int(step[b - 1]) + 1
            out.append(Phase(name, s0, s1 - s0))
    return out


def step_of(times: np.ndarray, windows: list[list[float]]) -> np.ndarray:
    """For each time, the index of the latest training-step window that starts at or before it
    (-1 before the first: setup). Used to split a measured trace into training steps."""
    if not windows:
        return np.full(np.shape(times), -1, dtype=np.int64)
    starts = np.array([w[0] for w in windows])
    return np.searchsorted(starts, np.asarray(times), side="right") - 1
