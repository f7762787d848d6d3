"""A measured training run checked against the simulator: collective sequences and peak memory.

No torch here: it reads a trace (from ``rankscope real train`` or ``rankscope import kineto``).

[Note: what must match]
For the same model, N and strategy, :func:`simulated` compiles the step with
:func:`simulator.training.compile_step` and a :class:`~simulator.training.TrainConfig` that says
what the real run did: fp32 (a plain CPU run), DDP's bucket size, FSDP2 (``strategy="zero3"``,
``fsdp_version=2``, reshard after forward, backward prefetch, no forward prefetch).
- Collectives: on every rank and in every training step, the measured sequence of (kind, bytes)
  equals the simulated one exactly. Two things torch does that one compiled step does not say,
  handled here and reported under ``mapping``:
  * DDP's first iteration puts every gradient in one bucket (torch assigns buckets by size only
    after it has seen the order gradients become ready), so step 0 is compared with a one-bucket
    program (``bucket_bytes`` = the whole model);
  * DDP's second iteration, when it rebuilds its buckets, broadcasts the new bucket order from
    rank 0 (two small ``broadcast`` calls): left out of that step's comparison, and listed.
  Anything else a step issues is a mismatch. Collectives before the first step (DDP's parameter
  check and broadcast at construction) belong to setup and are listed, not compared.
- Memory: each rank's peak within the last step (the steady state: optimizer state exists, and
  DDP's bucket rebuild of step 1 is over) against the simulated peak; within 10% passes.
  the README ("Real training runs") explains the remainder.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from rankscope.simulator.engine import simulate
from rankscope.simulator.interop.measured import step_of
from rankscope.simulator.memory import memory_timeline
from rankscope.simulator.models import Model, parse_device
from rankscope.simulator.program import CollKind, OpKind, Program
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import Trace
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.whatif import measured_peaks

MEMORY_TOLERANCE = 0.10


def train_config(strategy: str, bucket_bytes: int, checkpointing: str = "none",
                 param_dtype: str = "fp32") -> TrainConfig:
    """The simulator's configuration of what the real run does (see [Note: what must match]);
    ``param_dtype="bf16"``: FSDP2's MixedPrecisionPolicy, whose fp32 shards are the master weights."""
    s = "zero3" if strategy in ("fsdp", "zero3") else strategy
    return TrainConfig(strategy=s, precision=param_dtype, bucket_bytes=bucket_bytes, fsdp_version=2,
                       reshard_after_forward=True, forward_prefetch=False, backward_prefetch=True,
                       checkpointing=checkpointing, master_weights="param" if param_dtype == "bf16" else "optimizer")


def simulated(model: Model, nranks: int, strategy: str, bucket_bytes: int, checkpointing: str = "none",
              param_dtype: str = "fp32"):
    """(program, result) of one simulated step on a CPU-class device and a switch."""
    prog = compile_step(model, nranks, train_config(strategy, bucket_bytes, checkpointing, param_dtype),
                        parse_device("cpu"))
    return prog, simulate(prog, parse_topology(f"switch:{nranks}"))


def program_sequence(prog: Program, rank: int) -> list[tuple[str, int]]:
    """(kind label, bytes) of ``rank``'s collectives, in issue order (op id order)."""
    ops = np.flatnonzero((prog.kind == OpKind.COLLECTIVE) & (prog.rank == rank))
    return [(CollKind(int(prog.coll_kind[a])).label, int(prog.coll_bytes[a])) for a in prog.arg[ops]]


def measured_sequences(trace: Trace) -> dict[int, list[dict[str, Any]]]:
    """Per rank, every collective (the program's and ``other_collectives``) in issue order, with
    the training step it belongs to (-1: setup)."""
    p = trace.program
    windows = trace.meta.get("steps", {})
    out: dict[int, list[dict[str, Any]]] = {}
    ops = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
    info = trace.meta.get("collectives", [])
    rows = [{"rank": int(p.rank[o]), "kind": CollKind(int(p.coll_kind[p.arg[o]])).label,
             "nbytes": int(p.coll_bytes[p.arg[o]]), "start": float(trace.start[o]),
             "issue": float(trace.start[o]),
             "name": info[int(p.arg[o])]["name"] if int(p.arg[o]) < len(info) else ""} for o in ops]
    rows += [{"rank": int(c["rank"]), "kind": c["kind"], "nbytes": int(c["nbytes"]),
              "start": float(c["start"]), "issue": float(c.get("issue", c["start"])),
              "name": c.get("name", "")} for c in trace.meta.get("other_collectives", [])]
    for r in sorted({row["rank"] for row in rows} | {int(k) for k in windows}):
        mine = sorted((row for row in rows if row["rank"] == r), key=lambda row: row["start"])
        w = windows.get(str(r), [])
        t = np.array([row["issue"] if not math.isnan(row["issue"]) else row["start"] for row in mine])
        steps = step_of(t, w) if mine else []
        for row, s in zip(mine, steps):
            row["step"] = int(s)
        out[r] = mine
    return out


def compare(trace: Trace, model: Model, strategy: str, bucket_bytes: int = 25 << 20, checkpointing: str = "none",
            param_dtype: str = "fp32") -> dict[str, Any]:
    """The report of [Note: what must match] for a measured trace of ``model`` under ``strategy``."""
    nranks = trace.program.nranks
    prog, sim = simulated(model, nranks, strategy, bucket_bytes, checkpointing, param_dtype)
    first_prog = prog
    if strategy == "ddp":
        first_prog, _ = simulated(model, nranks, strategy, sys.maxsize, checkpointing, param_dtype)
    seqs = measured_sequences(trace)
    n_steps = max((len(w) for w in trace.meta.get("steps", {}).values()), default=0)
    steps, mapping, setup, ok = [], [], {}, True
    for r, rows in seqs.items():
        setup[r] = [(row["kind"], row["nbytes"]) for row in rows if row["step"] < 0]
    for k in range(n_steps):
        expect_prog = first_prog if k == 0 else prog
        for r, rows in seqs.items():
            got = [(row["kind"], row["nbytes"]) for row in rows if row["step"] == k]
            if strategy == "ddp" and k == 1:
                skipped = [g for g in got if g[0] == "broadcast"]
                if skipped:
                    mapping.append({"rank": r, "step": k, "left_out": skipped,
                                    "why": "DDP's bucket rebuild broadcasts the new bucket order"})
                got = [g for g in got if g[0] != "broadcast"]
            want = program_sequence(expect_prog, r)
            match = got == want
            ok &= match
            entry = {"rank": r, "step": k, "match": match, "measured": len(got), "simulated": len(want)}
            if not match:
                entry["first_difference"] = _first_difference(got, want)
            steps.append(entry)
    if strategy == "ddp" and n_steps:
        mapping.insert(0, {"step": 0, "why": "DDP's first iteration uses one bucket: compared with "
                                               "bucket_bytes = the whole model"})
    mt = memory_timeline(prog, sim.start, sim.end)
    last = n_steps - 1
    peaks = measured_peaks(trace, last) if n_steps else {}
    mem_rows = []
    for r in sorted(peaks):
        simp = mt.peak(r)[0]
        ratio = simp / peaks[r] if peaks[r] else math.nan
        mem_rows.append({"rank": r, "measured_peak": peaks[r], "simulated_peak": int(simp),
                         "ratio": ratio, "within_tolerance": abs(ratio - 1) <= MEMORY_TOLERANCE})
    return {
        "model": model.name, "strategy": strategy, "nranks": nranks, "micro_batch": model.micro_batch,
        "train_config": {"strategy": prog.meta["strategy"], "precision": param_dtype,
                         "bucket_bytes": bucket_bytes, "fsdp_version": 2, "checkpointing": checkpointing,
                         "master_weights": prog.meta["master_weights"]},
        "collectives": {"match": bool(ok and steps), "steps": steps, "mapping": mapping,
                        "setup": {str(r): s for r, s in setup.items()},
                        "per_step_simulated": len(program_sequence(prog, 0))},
        "memory": {"step": last, "tolerance": MEMORY_TOLERANCE, "ranks": mem_rows,
                   "within_tolerance": bool(mem_rows) and all(m["within_tolerance"] for m in mem_rows),
                   "note": None if n_steps >= (3 if strategy == "ddp" else 2) else
                   "not a steady-state step: run --steps 2 or more (3 for DDP, whose second step "
                   "rebuilds its buckets)"},
    }


def _first_difference(got: list, want: list) -> dict[str, Any]:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return {"index": i, "measured": list(g), "simulated": list(w)}
    i = min(len(got), len(want))
    return {"index": i, "measured": list(got[i]) if i < len(got) else None,
            "simulated": list(want[i]) if i < len(want) else None}
