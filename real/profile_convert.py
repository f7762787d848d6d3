"""A real training run's per-rank profiler files -> one rankscope trace, checked against the simulator.

No torch here. :func:`convert_run` reads what :mod:`real.train` wrote in a folder (the ``rank{r}.json``
Kineto traces through :func:`simulator.interop.kineto_import.import_kineto`, and the
``rank{r}.stats.json`` side files), adds the run's description and the comparison of
:mod:`real.train_compare` to the trace's metadata (``meta["run"]``, ``meta["comparison"]``), and
returns the trace. On a GPU the measured peak memory is the CUDA caching allocator's
``max_memory_allocated`` of the last step when the stats have it (the profiler's memory events on
the device agree with it up to events the profiler misses), less the cuBLAS workspaces the
allocator holds, which the simulator does not model and the comparison prints ([Note: cuBLAS
workspaces] in real/train.py); on a CPU it is the profiler's.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rankscope.simulator.interop.errors import ImportFormatError
from rankscope.simulator.interop.kineto_import import import_kineto
from rankscope.simulator.trace import Trace

from .train_compare import compare


def run_files(folder: str, nranks: int) -> list[str]:
    files = [os.path.join(folder, f"rank{r}.json") for r in range(nranks)]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise ImportFormatError(f"the run wrote no profiler trace {missing[0]}")
    return files


def read_stats(folder: str, nranks: int) -> dict[int, dict[str, Any]]:
    out = {}
    for r in range(nranks):
        path = os.path.join(folder, f"rank{r}.stats.json")
        if os.path.exists(path):
            with open(path) as f:
                out[r] = json.load(f)
    return out


def convert_run(folder: str, cfg) -> Trace:
    """The trace of the run ``cfg`` (a :class:`real.train.TrainRunConfig`) whose files are in
    ``folder``, with ``meta["run"]`` and ``meta["comparison"]``."""
    stats = read_stats(folder, cfg.nranks)
    s0 = stats.get(0, {})
    run = {"model": cfg.model, "strategy": cfg.strategy, "nranks": cfg.nranks, "steps": cfg.steps,
           "micro_batch": cfg.sim_model.micro_batch, "bucket_mb": cfg.bucket_mb,
           "checkpointing": getattr(cfg, "checkpointing", "none"), "param_dtype": getattr(cfg, "param_dtype", "fp32"),
           "device": s0.get("device"), "backend": s0.get("backend"), "torch": s0.get("torch"),
           "step_seconds": {str(r): s.get("step_seconds") for r, s in stats.items()}}
    trace = import_kineto(run_files(folder, cfg.nranks), meta={
        "run": run, "program_meta": {"model": cfg.model, "strategy": cfg.strategy,
                                     "micro_batch": cfg.sim_model.micro_batch}})
    comparison = compare(trace, cfg.sim_model, cfg.strategy, int(cfg.bucket_mb * 2**20),
                         getattr(cfg, "checkpointing", "none"), getattr(cfg, "param_dtype", "fp32"))
    cuda = {r: s["cuda_max_memory_allocated"] for r, s in stats.items() if s.get("cuda_max_memory_allocated")}
    if cuda:
        workspaces = set()
        for row in comparison["memory"]["ranks"]:
            peaks = cuda.get(row["rank"])
            if peaks:
                ws = int(stats[row["rank"]].get("cuda_cublas_workspace_bytes") or 0)
                workspaces.add(ws)
                row["profiler_peak"] = row["measured_peak"]
                row["allocator_peak"] = int(peaks[-1])
                row["cublas_workspace"] = ws
                row["measured_peak"] = int(peaks[-1]) - ws
                row["ratio"] = row["simulated_peak"] / row["measured_peak"]
                row["within_tolerance"] = abs(row["ratio"] - 1) <= comparison["memory"]["tolerance"]
        comparison["memory"]["source"] = "torch.cuda.max_memory_allocated less cuBLAS workspaces"
        if any(workspaces):
            comparison["memory"]["note"] = (
                (comparison["memory"].get("note", "") + "; " if comparison["memory"].get("note") else "")
                + "the measured peak leaves out the cuBLAS workspaces the caching allocator holds ("
                + ", ".join(f"{w:,} B" for w in sorted(workspaces)) + " per rank), which the simulator does not model")
        rows = comparison["memory"]["ranks"]
        comparison["memory"]["within_tolerance"] = bool(rows) and all(r["within_tolerance"] for r in rows)
    else:
        comparison["memory"]["source"] = "profiler memory events (CPU allocator)"
    meta = dict(trace.meta)
    meta["comparison"] = comparison
    meta["executor"] = run["backend"] or meta.get("executor")
    return Trace(trace.program, trace.start, trace.end, trace.lane, trace.link_id, trace.link_t0,
                 trace.link_t1, trace.link_bytes, meta)
