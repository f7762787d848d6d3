"""What lessons say about a trace, read from the simulator: nothing here is typed in.

Small functions from a program, a trace or a :class:`~rankscope.tui.replay.Replay` to the numbers
and names a narration prints and a question checks.
"""

from __future__ import annotations

import numpy as np

from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind, Program
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import Trace
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.units import format_ranks

from ..replay import Replay


def simulated(prog: Program, topology: str) -> Trace:
    """``prog`` simulated on ``topology`` (the defaults: 25 GB/s and 5 us per link)."""
    topo = parse_topology(topology)
    return simulate(prog, topo).to_trace(prog, topo, {"example": "lesson"})


def collective(coll: str, algo: str, n: int, nbytes: int, topology: str | None = None, **kw) -> Trace:
    return simulated(build(coll, algo, n, nbytes, **kw), topology or f"switch:{n}")


def training_step(model: str, n: int, strategy: str, device: str = "cpu") -> Trace:
    prog = compile_step(parse_model(model), n, TrainConfig(strategy=strategy), parse_device(device))
    return simulated(prog, f"switch:{n}")


def holds(r: Replay, rank: int, seg: int) -> str:
    """The contribution set of buffer 0's segment ``seg`` on ``rank``, as the grid prints it."""
    return format_ranks(r.layout.contributors(0, rank, seg), r.nranks)


def senders_to(r: Replay, rank: int) -> str:
    """The ranks whose transfers of the current step land on ``rank``."""
    p, ops = r.program, r.transfers()
    return format_ranks(sorted({int(p.rank[o]) for o in ops if p.peer[o] == rank}), r.nranks)


def busiest_receiver(r: Replay, step: int) -> tuple[int, int]:
    """(rank, how many transfers it receives) of step ``step``'s most-received rank."""
    p, ops = r.program, r.step_ops(step)
    ops = ops[p.kind[ops] <= OpKind.COPY]
    got = np.bincount(p.peer[ops], minlength=r.nranks)
    k = int(np.argmax(got))
    return k, int(got[k])


def compute_labels(r: Replay, step: int | None = None) -> list[str]:
    """The compute labels of step ``step``'s ops (default: the current step)."""
    p = r.program
    ops = r.step_ops(step)
    ops = ops[p.kind[ops] == OpKind.COMPUTE]
    return list(dict.fromkeys(p.compute_label[p.arg[o]] for o in ops))


def phase_word(label: str) -> str:
    """forward, backward or optimizer, from a compute label."""
    return "forward" if label.startswith("fwd") else "backward" if label.startswith("bwd") else "optimizer"


def collectives(r: Replay, step: int | None = None) -> list[tuple[str, str, int]]:
    """(kind, buffer name, bytes) of step ``step``'s collectives, one per collective."""
    p = r.program
    ops = r.step_ops(step)
    ops = ops[(p.kind[ops] == OpKind.COLLECTIVE) & (p.rank[ops] == 0)]
    out = []
    for o in ops:
        a = int(p.arg[o])
        b = int(p.coll_buf[a])
        out.append((CollKind(int(p.coll_kind[a])).label, p.buffers[b].name if b >= 0 else "",
                    int(p.coll_bytes[a])))
    return out


def steps_with(p: Program, pred) -> list[int]:
    """Steps holding an op of rank 0 for which ``pred(op)`` is true, in order."""
    ops = np.flatnonzero(p.rank == 0)
    return sorted({int(p.step[o]) for o in ops if pred(int(o))})


def unit_of(buffer_name: str) -> str:
    """``layer2`` from ``layer2.unsharded``."""
    return buffer_name.split(".")[0]


def ring_bound(n: int, nbytes: int) -> float:
    """2(N-1)/N x S: what each rank must send in any all-reduce (Patarasuk and Yuan, 2009)."""
    return 2 * (n - 1) / n * nbytes


def why_holds(r: Replay, rank: int, seg: int) -> str:
    """Why segment ``seg`` of ``rank`` holds what it holds: the transfer that last wrote it."""
    from ..deps import describe_op

    writer = r.last_writer(rank, seg)
    held = holds(r, rank, seg)
    if writer is None:
        return f"rank {rank}'s s{seg} holds {held}: no transfer has written it yet, it is still its own input."
    return f"rank {rank}'s s{seg} holds {held}, last written by {describe_op(r.program, writer)}."


def why_senders(r: Replay, rank: int) -> str:
    """The current step's transfers into ``rank``, in words."""
    from ..deps import describe_op

    p, ops = r.program, r.transfers()
    into = [describe_op(p, int(o)) for o in ops if p.peer[o] == rank]
    return "the step's transfers into rank %d: %s." % (rank, "; ".join(into) if into else "none")


def segment_received(trace: Trace, step: int, rank: int) -> int:
    """The buffer-0 segment that ``rank`` receives in ``step`` (its first transfer in)."""
    from rankscope.simulator.provenance import layout

    p = trace.program
    ops = np.flatnonzero((p.step == step) & (p.peer == rank) & (p.kind <= OpKind.COPY))
    c = int(p.arg[ops[0]])
    return int(np.searchsorted(layout(p, 0).bounds[0], p.chunk_off[c], side="right")) - 1
