"""``rankscope validate``: calibrate, simulate on the calibrated topology, run for real, compare.

[Note: the model and its calibration]
A ring all-reduce on N ranks is 2(N-1) steps; in each, every rank sends one chunk (S/N bytes) to
its successor while it receives one from its predecessor, and in the first N-1 steps it adds the
received chunk into its buffer. The simulator prices a step as

    t_step(n) = α + n / bw + γ·n      (n = chunk bytes; γ only when the step reduces)

(Hockney's α-β model with a reduction term: Thakur, Rabenseifner & Gropp 2005; the engine adds the
max-min sharing of links, which a ring does not exercise). What the three figures must include on
a machine whose ranks are processes that share a few cores:

- α, per-message latency: not the wire's, but posting, waking and completing a gloo send and
  receive, and the scheduler letting the rank run again: when N ranks share fewer cores, a woken
  rank waits for a core;
- bw, the bandwidth of the path: loopback TCP is memory copies on the same cores, so with every
  rank sending and receiving at once each flow gets less than a lone ping-pong sees;
- γ, the reduction: a torch ``add_`` of int64 words (the provenance encoding), run by each rank
  while the others may be copying.

So validation calibrates the three with the pattern and the code the ring runs:

- bw and γ, "ring-step" calibration: every rank, at once, ``rounds`` times in a row without
  barriers, receives n bytes from its predecessor and sends n to its successor; in the first half
  of the rounds it also adds what it received (as a reduce-scatter does; the all-gather after it
  does not). The mean time per round (a sum of steps is what a collective costs, stalls
  included) minus the adds, over n = 1, 4, 16 MiB, fitted by least
  squares on relative residuals, gives bw; the adds give γ (median over ranks). Both are figures
  under load: on loopback a byte moved is memory copies on the cores the other ranks also use;
- α, per-step overhead: the executor itself runs a ring all-reduce of 8 KiB (below the validated
  sizes), ``overhead_runs`` times after a warm-up; the median run over its 2(N-1) steps is α. This
  is where the host's per-step costs (Python between waves, posting, waking, waiting for a core)
  enter the model: they, not the wire, set a step's floor here.

The pairwise ping-pong of ``rankscope calibrate`` (one flow at a time, idle peers, fastest round)
is run and reported too, with the error the simulator makes on it: it is the right figure for an
idle link and the wrong one for a ring whose ranks share cores.

Measured and calibrated figures are typical ones, not best cases: with N ranks on fewer cores,
waiting for a core is part of every step, not noise. The measurement is the median of ``repeats``
runs (the fastest is shown beside it); each run is one size of a launch that first runs an untimed
warm-up, and the executor touches its buffers before the timed region (real/executor.py). A
measured time is first send to last receive, on clocks aligned by real/clock.py. The kernel's
4 ms scheduler tick shows in the spread: a 1.4 ms all-reduce takes 5 or 8 ms in some runs.

[Note: what the model leaves out]
Per-step host overheads that are not a message's (the executor's Python between waves, the
provenance encoding's word count), page faults and cache misses that grow with the working set
(a 64 MiB buffer plus its chunk does not fit in cache), CPU frequency changes, and the other
processes on the machine. The FSDP step is compared as a whole (step time), with compute priced
at a matmul rate measured here on one thread; its hooks, allocator and optimizer overheads are not
modelled, so its error is reported, not targeted.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np

from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import UsageError
from rankscope.simulator.progress import Progress
from rankscope.simulator.topology import Topology
from rankscope.simulator.trace import write_text_atomic, write_trace
from rankscope.simulator.units import format_bytes

from .calibrate import calibrate, topology, write_topology
from .encoding import Encoding, aligned_program
from .launch import in_torchrun
from .ringstep import CALIBRATION_SIZES, matmul_flops_per_s, ring_step_calibration, step_overhead
from .runner import run_programs
from .validate_fit import loaded_topology
from .validate_report import plot

DEFAULT_RANKS = (2, 4)
DEFAULT_SIZES = tuple((64 << 10) << (2 * i) for i in range(6))      # 64 KiB .. 64 MiB by x4
TARGET_FROM = 1 << 20                                                # the target: sizes >= 1 MiB


def calibrate_loaded(n: int, out_dir: str, timeout: float) -> tuple[Topology, dict[str, Any], dict[str, Any]]:
    """Ring-step bw and γ and the executor's per-step α on ``n`` ranks (see [Note: the model and
    its calibration]), written to ``out_dir/calibrated-{n}.toml``: the topology as loaded back, the
    figures for the report, and what the simulated traces note as their calibration."""
    f = ring_step_calibration(n, timeout=timeout)
    alpha, runs = step_overhead(n, timeout=timeout)
    meta = {"calibrated_by": "rankscope validate (ring-step bw and gamma, executor per-step alpha)",
            "gamma_s_per_byte": f.gamma, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    topo = write_topology(os.path.join(out_dir, f"calibrated-{n}.toml"), loaded_topology(f, alpha, meta))
    return topo, {"alpha": alpha, "overhead_runs": runs, "ring_step_alpha": f.alpha, "bw": f.bw, "gamma": f.gamma,
                  "fit_sizes": list(f.sizes), "fit_residuals": list(f.residuals)}, meta


def _err(model: float, measured: float) -> float:
    return (model - measured) / measured if measured > 0 else float("nan")


def validate(ranks: Sequence[int] = DEFAULT_RANKS, sizes: Sequence[int] = DEFAULT_SIZES, *, repeats: int = 5,
             out_dir: str = "validate-out", fsdp: bool = True, timeout: float = 120.0,
             progress: bool | None = None) -> dict[str, Any]:
    """The whole loop of [Note: the model and its calibration]; the report (JSON-able)."""
    if any(n < 2 for n in ranks):
        raise UsageError(f"validate needs >= 2 ranks, got {list(ranks)}")
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    os.makedirs(out_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    calib: dict[str, Any] = {}
    if in_torchrun():
        raise UsageError("validate launches its own local ranks; run it without torchrun")
    total = len(ranks) * (2 + repeats + len(sizes)) + (2 if fsdp else 0)
    with Progress(total, "validate", force=bool(progress)) as bar:
        for n in ranks:
            bar.step(f"N={n}: ping-pong calibration")
            fits, _ = calibrate(n, CALIBRATION_SIZES, rounds=5, timeout=timeout)
            meta = {"calibrated_by": "rankscope validate (pairwise ping-pong)", "at": time.strftime("%Y-%m-%d %H:%M:%S")}
            pair_topo = write_topology(os.path.join(out_dir, f"pingpong-{n}.toml"), topology(fits, n, f"pingpong:{n}", meta))
            bar.step(f"N={n}: ring-step calibration and per-step overhead")
            topo, calib[str(n)], meta = calibrate_loaded(n, out_dir, timeout)
            calib[str(n)]["pingpong"] = [{"src": p.src, "dst": p.dst, "alpha": p.alpha, "bw": p.bw} for p in fits]
            elem = Encoding(n).elem_bytes
            progs = [aligned_program("all-reduce", "ring", n, s, elem) for s in sizes]
            outs = [os.path.join(out_dir, f"real-ring-allreduce-n{n}-{format_bytes(s)}-{k}.trace")
                    for k in range(repeats) for s in sizes]
            summaries = []
            for k in range(repeats):  # one launch per repeat: each size once per launch, after a
                bar.step(f"N={n}: real runs {k + 1}/{repeats}")  # warm-up run (connections, pages)
                summaries += run_programs([progs[0]] + progs, [None] + outs[k * len(sizes):(k + 1) * len(sizes)],
                                          nranks=n, native=False, timeout=timeout)[1:]
            for i, (s, prog) in enumerate(zip(sizes, progs)):
                bar.step(f"N={n}: {format_bytes(s)}")
                measured = [summaries[k * len(sizes) + i]["seconds"] for k in range(repeats)]
                sim = simulate(prog, topo, gamma=calib[str(n)]["gamma"])
                sim_path = os.path.join(out_dir, f"sim-ring-allreduce-n{n}-{format_bytes(s)}.trace")
                write_trace(sim_path, sim.to_trace(prog, topo, {"calibration": meta}))
                naive = simulate(prog, pair_topo)
                m, t, tn = float(np.median(measured)), sim.makespan, naive.makespan
                rows.append({"series": f"ring all-reduce N={n}", "nranks": n, "size": int(prog.buffers[0].nbytes),
                             "requested": int(s), "measured": m, "measured_fastest": float(np.min(measured)),
                             "measured_runs": measured, "model": t,
                             "error": _err(t, m), "pingpong_model": tn, "pingpong_error": _err(tn, m),
                             "sim_trace": sim_path,
                             "real_trace": outs[int(np.argsort(measured)[len(measured) // 2]) * len(sizes) + i]})
        fsdp_row = _fsdp(out_dir, calib, timeout, bar) if fsdp else None
    summary = {}
    for n in ranks:
        e = [abs(r["error"]) for r in rows if r["nranks"] == n and r["requested"] >= TARGET_FROM]
        ep = [abs(r["pingpong_error"]) for r in rows if r["nranks"] == n and r["requested"] >= TARGET_FROM]
        spread = [float(np.median(np.abs(np.asarray(r["measured_runs"]) / r["measured"] - 1)))
                  for r in rows if r["nranks"] == n and r["requested"] >= TARGET_FROM]
        summary[str(n)] = {"median_abs_error": float(np.median(e)) if e else None,
                           "measurement_spread": float(np.median(spread)) if spread else None,
                           "pingpong_median_abs_error": float(np.median(ep)) if ep else None}
    e_all = [abs(r["error"]) for r in rows if r["requested"] >= TARGET_FROM]
    report = {"rows": rows, "calibration": calib, "summary": summary, "repeats": repeats,
              "median_abs_error_from_1MiB": float(np.median(e_all)) if e_all else None,
              "fsdp": fsdp_row, "out_dir": out_dir, "cores": len(os.sched_getaffinity(0))
              if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    png = os.path.join(out_dir, "validate.png")
    failed = plot(rows, png)
    report["plot"] = None if failed else png
    if failed:
        report["plot_error"] = failed
    write_text_atomic(os.path.join(out_dir, "validate.json"), lambda fh: json.dump(report, fh, indent=1))
    return report


def _fsdp(out_dir: str, calib: dict[str, Any], timeout: float, bar: Progress) -> dict[str, Any]:
    """One FSDP2 run of mlp:4x1024 on 2 ranks against the simulated step on calibrated-2."""
    import shutil
    import tempfile

    from rankscope.simulator.models import Device
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.training import compile_step

    from .profile_convert import convert_run
    from .train import TrainRunConfig
    from .train import launch as train_launch
    from .train_compare import train_config

    n = 2
    bar.step("FSDP: compute calibration")
    flops = matmul_flops_per_s()
    cfg = TrainRunConfig(model="mlp:4x1024", strategy="fsdp", nranks=n, steps=3, timeout=timeout)
    folder = tempfile.mkdtemp(prefix="rankscope-validate-")
    try:
        bar.step("FSDP: real run")
        train_launch(cfg, folder)
        measured_trace = convert_run(folder, cfg)
        secs = [s[-1] for s in measured_trace.meta["run"]["step_seconds"].values() if s]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    real_path = os.path.join(out_dir, "real-fsdp-mlp4x1024-n2.trace")
    write_trace(real_path, measured_trace)
    if str(n) not in calib:  # --ranks without 2: calibrate 2 ranks for the step
        calib[str(n)] = calibrate_loaded(n, out_dir, timeout)[1]
        calib[str(n)]["pingpong"] = []
    topo = parse_topology(os.path.join(out_dir, f"calibrated-{n}.toml"), n)  # this run's
    gamma = calib[str(n)]["gamma"]
    dev = Device("calibrated-cpu", flops, flops, 1.0)
    prog = compile_step(cfg.sim_model, n, train_config("fsdp", 25 << 20), dev)
    sim = simulate(prog, topo, gamma=gamma)
    sim_path = os.path.join(out_dir, "sim-fsdp-mlp4x1024-n2.trace")
    sim_trace = sim.to_trace(prog, topo, {"calibration": {"matmul_flops_per_s": flops}})
    write_trace(sim_path, sim_trace)
    from rankscope.simulator.compare import compare

    classes = compare(sim_trace, measured_trace, names=("simulated", "measured")).by_class()
    m = float(max(secs)) if secs else float("nan")
    t = sim.makespan
    return {"model": "mlp:4x1024", "strategy": "fsdp", "nranks": n, "matmul_flops_per_s": flops,
            "measured_step": m, "simulated_step": t, "error": _err(t, m),
            "collectives_match": bool(measured_trace.meta["comparison"]["collectives"]["match"]),
            "collective_classes": classes,
            "real_trace": real_path, "sim_trace": sim_path}
