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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import RankscopeError, UsageError
from rankscope.simulator.progress import Progress
from rankscope.simulator.topology import Topology
from rankscope.simulator.trace import write_text_atomic, write_trace
from rankscope.simulator.units import format_bytes, format_seconds

from .calibrate import calibrate, fit, topology, write_topology
from .encoding import Encoding, aligned_program
from .launch import RankContext, launch
from .runner import RankFailed, run_programs

DEFAULT_RANKS = (2, 4)
DEFAULT_SIZES = tuple((64 << 10) << (2 * i) for i in range(6))      # 64 KiB .. 64 MiB by x4
CALIBRATION_SIZES = (1 << 20, 4 << 20, 16 << 20)   # ring-step: bandwidth and reduction
OVERHEAD_SIZE = 8 << 10                               # executor run: per-step overhead (α)
TARGET_FROM = 1 << 20                                                # the target: sizes >= 1 MiB
_TAG = (1 << 30) + 2


@dataclass(frozen=True)
class RingStepJob:
    """The ring-step calibration of [Note: the model and its calibration], on every rank."""

    sizes: tuple[int, ...]
    rounds: int = 20
    elem_bytes: int = 8

    def __call__(self, ctx: RankContext) -> list[dict[str, Any]] | None:
        nxt, prv = (ctx.rank + 1) % ctx.world, (ctx.rank - 1) % ctx.world
        mine = {}
        for n in self.sizes:
            k = max(n // self.elem_bytes, 1)
            buf = torch.ones(k, dtype=torch.int64, device=ctx.device)
            out, land = torch.ones_like(buf), torch.zeros_like(buf)  # sent, received; added into buf
            self._round(out, buf, land, nxt, prv, ctx)  # warm-up: connections, pages
            dist.barrier()
            rounds, adds = [], []
            t0 = time.monotonic_ns()
            for i in range(self.rounds):  # as an all-reduce: reduce-scatter rounds, then all-gather's
                add = self._round(out, buf, land, nxt, prv, ctx, reduce=i < self.rounds // 2)
                t1 = time.monotonic_ns()
                rounds.append((t1 - t0 - add) / 1e9)
                if i < self.rounds // 2:
                    adds.append(add / 1e9)
                t0 = t1
            mine[str(n)] = [float(np.mean(rounds)), float(np.mean(adds))]
        ctx.publish("ringstep", mine)
        dist.barrier()
        if ctx.rank != 0:
            return None
        return [ctx.fetch("ringstep", r, wait=ctx.timeout) for r in range(ctx.world)]

    @staticmethod
    def _round(out: torch.Tensor, buf: torch.Tensor, land: torch.Tensor, nxt: int, prv: int,
               ctx: RankContext, reduce: bool = True) -> int:
        """One round (sending ``out``, which nothing writes); the nanoseconds its add took."""
        r = dist.irecv(land, src=prv, tag=_TAG)
        s = dist.isend(out, dst=nxt, tag=_TAG)
        r.wait(ctx.wait_timeout)
        t = time.monotonic_ns()
        if reduce:
            buf.add_(land)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
        t = time.monotonic_ns() - t
        s.wait(ctx.wait_timeout)
        return t


@dataclass(frozen=True)
class RingStepFit:
    nranks: int
    alpha: float                    # s per message
    bw: float                       # B/s per flow with every rank busy
    gamma: float                    # s per reduced byte
    sizes: tuple[int, ...]
    step_seconds: tuple[float, ...]  # median over ranks, adds excluded
    residuals: tuple[float, ...]


def ring_step_calibration(nranks: int, sizes: Sequence[int] = CALIBRATION_SIZES, *, rounds: int = 20,
                          backend: str | None = None, timeout: float = 60.0) -> RingStepFit:
    launched = launch(RingStepJob(tuple(sizes), rounds), nranks=nranks, backend=backend, timeout=timeout)
    if not launched.ok:
        raise RankFailed(launched.failure_message(), launched, None)
    per_rank = launched.results.get(0)
    if per_rank is None:
        raise RankscopeError("validate runs on local ranks; start it without torchrun")
    step = [float(np.median([r[str(n)][0] for r in per_rank])) for n in sizes]
    add = [float(np.median([r[str(n)][1] for r in per_rank])) for n in sizes]
    alpha, bw, res = relative_fit(sizes, step)
    gamma = float(np.polyfit(np.asarray(sizes, float), np.asarray(add), 1)[0])
    return RingStepFit(nranks, alpha, bw, max(gamma, 0.0), tuple(sizes), tuple(step), tuple(res.tolist()))


def relative_fit(sizes: Sequence[int], times: Sequence[float]) -> tuple[float, float, np.ndarray]:
    """α, bw and residuals of t = α + n / bw fitted by least squares on *relative* residuals (weights
    1/t): validation judges relative error, and the sizes span three decades, so a plain fit would
    be all large sizes (and α whatever noise leaves). Falls back to :func:`real.calibrate.fit` rules
    (α >= 0, bw > 0)."""
    n, t = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
    beta, alpha = np.polyfit(n, t, 1, w=1.0 / t)
    if alpha < 0 or not beta > 0:
        return fit(sizes, times)
    return float(alpha), 1.0 / float(beta), t - (alpha + beta * n)


def step_overhead(nranks: int, *, runs: int = 11, timeout: float = 60.0) -> tuple[float, list[float]]:
    """α of [Note: the model and its calibration]: the median seconds per step of ``runs`` executor
    runs of an OVERHEAD_SIZE ring all-reduce, after a warm-up; and the runs' seconds."""
    prog = aligned_program("all-reduce", "ring", nranks, OVERHEAD_SIZE, Encoding(nranks).elem_bytes)
    got = run_programs([prog] * (runs + 1), nranks=nranks, native=False, timeout=timeout)[1:]
    secs = [g["seconds"] for g in got]
    return float(np.median(secs)) / prog.n_steps, secs


def loaded_topology(f: RingStepFit, alpha: float, meta: dict[str, Any]) -> Topology:
    """A full mesh whose every link has the ring-step figures (every pair can be simulated; on a
    ring only successor links carry traffic)."""
    n = f.nranks
    links = [[i, j, f.bw, alpha] for i in range(n) for j in range(n) if i != j]
    return Topology.from_dict({"name": f"ring-step-calibrated:{n}", "nranks": n, "ring": list(range(n)),
                               "links": links, "meta": meta})


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


def matmul_flops_per_s(width: int = 1024, batch: int = 32, reps: int = 20) -> float:
    """FLOP/s of the MLP's matmuls (forward and both backward shapes) on one thread, as each
    rank runs them (real/train.py sets one thread per rank)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, w, g = torch.randn(batch, width), torch.randn(width, width), torch.randn(batch, width)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                x @ w.T
                g @ w
                g.T @ x
            best = min(best, time.perf_counter() - t)
        return 3 * 2 * batch * width * width * reps / best
    finally:
        torch.set_num_threads(threads)


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
    from .launch import in_torchrun

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
                m, t, tn = float(np.median(measured)), float(np.nanmax(sim.end) - np.nanmin(sim.start)), \
                    float(np.nanmax(naive.end) - np.nanmin(naive.start))
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
    plot = os.path.join(out_dir, "validate.png")
    try:
        from rankscope.simulator.plot import plot_sweep

        plot_sweep(rows, plot, "ring all-reduce on this machine: measured vs simulated (ring-step calibrated)")
        report["plot"] = plot
    except RankscopeError as e:  # matplotlib missing: the table still stands
        report["plot"] = None
        report["plot_error"] = str(e)
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
    t = float(np.nanmax(sim.end) - np.nanmin(sim.start))
    return {"model": "mlp:4x1024", "strategy": "fsdp", "nranks": n, "matmul_flops_per_s": flops,
            "measured_step": m, "simulated_step": t, "error": _err(t, m),
            "collectives_match": bool(measured_trace.meta["comparison"]["collectives"]["match"]),
            "collective_classes": classes,
            "real_trace": real_path, "sim_trace": sim_path}


def format_report(r: dict[str, Any]) -> str:
    lines = [f"rankscope validate: ring all-reduce, measured (median of {r['repeats']} runs; fastest beside it) "
             f"vs simulated on the ring-step calibrated topology; {r['cores']} cores"]
    for n, c in r["calibration"].items():
        pp = f"; ping-pong bw {np.median([p['bw'] for p in c['pingpong']]) / 1e9:.2f} GB/s" if c["pingpong"] else ""
        lines.append(f"  N={n}: per-step α {c['alpha'] * 1e6:.1f} us, ring-step bw {c['bw'] / 1e9:.2f} GB/s per flow, "
                     f"γ {c['gamma'] * 1e9:.3f} ns/B{pp}")
    lines.append(f"  {'N':>2} {'size':>9} {'measured':>10} {'(fastest)':>10} {'simulated':>10} {'error':>8} "
                 f"{'ping-pong sim':>14} {'error':>8}")
    for row in r["rows"]:
        lines.append(f"  {row['nranks']:>2} {format_bytes(row['requested']):>9} {format_seconds(row['measured']):>10} "
                     f"{format_seconds(row['measured_fastest']):>10} "
                     f"{format_seconds(row['model']):>10} {row['error']:>+8.1%} "
                     f"{format_seconds(row['pingpong_model']):>14} {row['pingpong_error']:>+8.1%}")
    for n, s in r["summary"].items():
        if s["median_abs_error"] is not None:
            lines.append(f"  N={n}: median |error| for sizes >= 1 MiB: {s['median_abs_error']:.1%} "
                         f"(ping-pong calibration: {s['pingpong_median_abs_error']:.1%}); the runs themselves "
                         f"lie a median {s['measurement_spread']:.1%} from their median")
    if r["median_abs_error_from_1MiB"] is not None:
        lines.append(f"median |error|, sizes >= 1 MiB, all N: {r['median_abs_error_from_1MiB']:.1%} (target <= 15%)")
    f = r.get("fsdp")
    if f:
        lines.append(f"FSDP step of {f['model']} on {f['nranks']} ranks: measured {format_seconds(f['measured_step'])}, "
                     f"simulated {format_seconds(f['simulated_step'])} ({f['error']:+.1%}; compute at "
                     f"{f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s measured); collectives "
                     f"{'match' if f['collectives_match'] else 'DIFFER'}")
        for c in f.get("collective_classes", []):
            lines.append(f"  {c['class']:<15} x{c['ops']:<3} simulated {format_seconds(c['model']):>9}  measured "
                         f"{format_seconds(c['measured']):>9}  {c['error']:+.1%}  (last step, both ranks)")
    lines.append(f"traces, topologies and validate.json in {r['out_dir']}" +
                 (f"; plot {r['plot']}" if r.get("plot") else ""))
    return "\n".join(lines)
