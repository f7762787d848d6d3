"""Dependencies at the cursor: what an op waits for, the critical path to it, why a rank idles.

The program's dependency lists say what each op waits for; the trace says when each finished.
A *critical path* to an op follows, from the op back to the start, the dependency that finished
last (the one that held it up). "Why is rank r idle" looks at r's next op, the earliest
unfinished op it runs (its sends, computes, allocs and frees), and names the unfinished
dependency it waits for: "rank 3 waits for chunk 5 from rank 2 (op 13)".
"""

from __future__ import annotations

from dataclasses import dataclass

from rankscope.simulator.program import OpKind, Program
from rankscope.simulator.units import format_bytes

from .replay import Replay


@dataclass(frozen=True)
class Wait:
    """Why ``rank`` is (or is not) idle: its next unfinished op and the unfinished op that one
    waits for (None when nothing holds it back), in words."""

    rank: int
    op: int | None
    blocker: int | None
    text: str


def describe_op(prog: Program, op: int) -> str:
    """``op 17: rank 2 -> 3 chunk 5 (reduce, 256KiB)`` and the like, for lists and messages."""
    kind, r, arg = OpKind(int(prog.kind[op])), int(prog.rank[op]), int(prog.arg[op])
    if kind.is_transfer:
        return (f"op {op}: rank {r} -> {int(prog.peer[op])} chunk {arg} "
                f"({kind.label}, {format_bytes(int(prog.chunk_len[arg]))})")
    if kind == OpKind.COMPUTE:
        label = prog.compute_label[arg] if arg < len(prog.compute_label) else ""
        return f"op {op}: compute {label or arg!r} on rank {r}"
    if kind == OpKind.COLLECTIVE:
        buf = int(prog.coll_buf[arg])
        name = f" of {prog.buffers[buf].name!r}" if 0 <= buf < len(prog.buffers) else ""
        return (f"op {op}: {prog.op_label(op)}{name} on rank {r} "
                f"({format_bytes(int(prog.coll_bytes[arg]))})")
    return f"op {op}: {kind.label} {prog.buffers[arg].name!r} on rank {r}"


def _source(p: Program, op: int, rank: int) -> str:
    """``chunk 5 from rank 2 (op 13)`` when ``op`` brings a chunk to ``rank``; else the op."""
    if p.kind[op] <= OpKind.COPY and p.peer[op] == rank:
        return f"chunk {int(p.arg[op])} from rank {int(p.rank[op])} (op {op})"
    return describe_op(p, op)


def critical_path(r: Replay, op: int) -> list[int]:
    """The chain of dependencies that finished last, from its first op to ``op``: each link is
    :attr:`Replay.latest_dep` of the next."""
    latest, path = r.latest_dep, [int(op)]
    while (d := int(latest[path[-1]])) >= 0:
        path.append(d)
    return path[::-1]


def why_idle(r: Replay, rank: int) -> Wait:
    """What ``rank``'s next op is waiting for, at the cursor (see the module docstring)."""
    p, done = r.program, r.finished()
    op = r.next_op(rank)
    if op is None:
        return Wait(rank, None, None, f"rank {rank} has finished all its ops")
    if r.mode == "time" and r.trace.start[op] <= r.time < r.trace.end[op]:
        return Wait(rank, op, None, f"rank {rank} is busy: {describe_op(p, op)}")
    ds = p.deps(op)
    waiting = ds[~done[ds]]
    if waiting.size:
        d = int(waiting[0])
        return Wait(rank, op, d, f"rank {rank} waits for {_source(p, d, rank)} "
                                 f"(for {describe_op(p, op)})")
    into = ds[p.peer[ds] == rank]
    came = f"; it waited for {_source(p, int((into if into.size else ds)[-1]), rank)}" \
        if ds.size else ""
    return Wait(rank, op, None, f"rank {rank} is not waiting: {describe_op(p, op)} is ready{came}")
