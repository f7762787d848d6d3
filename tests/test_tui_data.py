"""Traces the TUI tests open: a 4-rank ring all-reduce, a small hand-built training step, and a
"measured" copy of the ring whose step 3 ran slow. Deterministic: simulated times only."""

from __future__ import annotations

import numpy as np

from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.program import Buffer, Init, OpKind, Phase, split
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import Trace

MiB = 1 << 20


def ring4_trace(size: int = 64 * MiB) -> Trace:
    """Ring all-reduce, 4 ranks, simulated on switch:4 (25 GB/s, 5 us links)."""
    prog = build("all-reduce", "ring", 4, size)
    topo = parse_topology("switch:4")
    return simulate(prog, topo).to_trace(prog, topo)


def nccl_trace(spec: str = "nodes:1x4,gpu=h100", algo: str = "ring", size: int = MiB) -> Trace:
    """NCCL's all-reduce as ``rankscope sim --algo nccl --nccl-algo ALGO`` writes it: a buffer per
    distinct ring (2 on 1x4 H100, each half of the message) or per tree channel's slot."""
    from rankscope.simulator.nccl import nccl_collective, simulate_nccl

    topo = parse_topology(spec)
    prog, ch = nccl_collective("all-reduce", topo, size, algo=algo)
    sim, view, seconds = simulate_nccl(prog, topo)
    return sim.to_trace(prog, view, meta={"nccl": ch.to_dict(), "simulated_seconds": seconds})


def training_program(n: int = 2, layers: int = 2):
    """One FSDP-like step on ``n`` ranks: all-gather the parameters, forward and backward per
    layer (activations allocated in forward, freed in backward), reduce-scatter the gradients,
    free the gathered parameters, optimizer step."""
    bufs = [Buffer("grad", 8 * MiB, Init.OWN, alive=False, category="grad"),
            Buffer("params", 8 * MiB, Init.SHARD, alive=False, category="param_unsharded"),
            Buffer("shard", 4 * MiB, Init.EMPTY, category="param"),
            Buffer("optim", 8 * MiB, Init.EMPTY, category="optim")]
    bufs += [Buffer(f"act{i}", 6 * MiB, Init.EMPTY, alive=False, category="activation")
             for i in range(layers)]
    b = ProgramBuilder(n, bufs, meta={"collective": "fsdp-step", "nranks": n})
    cells = split(8 * MiB, n)
    b.grid(0, cells)
    b.grid(1, cells)
    step = 0
    for r in range(n):
        b.alloc(r, 1, step)
    step += 1
    last: dict[int, list[int]] = {r: [] for r in range(n)}  # what rank r's next compute waits for
    for k in range(1, n):
        for r in range(n):
            last[(r + k) % n].append(b.transfer(r, (r + k) % n, b.chunk(1, r), OpKind.COPY,
                                                step + k - 1))
    b.phases.append(Phase("all-gather", step, n - 1))
    step += n - 1
    for layer in range(layers):
        for r in range(n):
            act = b.alloc(r, 4 + layer, step, deps=last[r])
            last[r] = [b.compute(r, step, seconds=0.4e-3, label=f"fwd{layer}", deps=[act])]
        step += 1
    for r in range(n):
        b.alloc(r, 0, step, deps=last[r])
    for layer in reversed(range(layers)):
        for r in range(n):
            last[r] = [b.compute(r, step, seconds=0.8e-3, label=f"bwd{layer}", deps=last[r])]
            b.free(r, 4 + layer, step + 1, deps=last[r])
        step += 1
    first_rs = step
    reduced: dict[int, list[int]] = {r: [] for r in range(n)}
    for k in range(1, n):
        for r in range(n):
            reduced[(r + k) % n].append(b.transfer(r, (r + k) % n, b.chunk(0, (r + k) % n),
                                                   OpKind.REDUCE, step, after=last[r]))
        step += 1
    b.phases.append(Phase("reduce-scatter", first_rs, n - 1))
    for r in range(n):
        b.free(r, 1, step, deps=last[r])
        opt = b.compute(r, step, seconds=0.2e-3, label="opt", deps=reduced[r])
        b.free(r, 0, step + 1, deps=[opt])
    return b.build()


def training_trace() -> Trace:
    prog = training_program()
    topo = parse_topology("switch:2")
    return simulate(prog, topo).to_trace(prog, topo)


def measured_copy(trace: Trace, slow_step: int = 3, factor: float = 1.5) -> Trace:
    """The same program "measured": every op of ``slow_step`` takes ``factor`` times as long and
    everything after it shifts by the delay; clock ``monotonic``, executor ``gloo``."""
    p = trace.program
    start, end = trace.start.copy(), trace.end.copy()
    ops = p.step == slow_step
    extra = (end[ops] - start[ops]).max() * (factor - 1)
    end[ops] = start[ops] + (end[ops] - start[ops]) * factor
    later = p.step > slow_step
    start[later] += extra
    end[later] += extra
    meta = {"executor": "gloo", "clock": "monotonic", "topology": trace.meta["topology"],
            "lanes": trace.meta["lanes"]}
    return Trace(p, start, end, trace.lane, meta=meta)


def test_data_is_deterministic():
    a, b = ring4_trace(), ring4_trace()
    assert np.array_equal(a.end, b.end)
    t = training_trace()
    assert (t.program.kind == OpKind.COMPUTE).any() and t.ran.all()
