"""What-if from a measured training run: the same step, re-simulated on other ranks, links or speeds.

[Note: what-if]
Input: a trace of real training steps (``rankscope real train``, or a Kineto import of one) whose
compute spans are labelled as the simulator labels its ops (``fwd layer0``, ``bwd layer0``,
``optimizer step``; real/train.py records them). From it, :func:`measure` takes
- per-unit compute seconds: per rank, the median over steady steps (every step after the first,
  which warms up caches and allocates Adam's state) of each label's span. On N' = N ranks each
  rank keeps its own; on N' != N every rank takes the slowest measured rank's (a synchronous step
  waits for its slowest rank at every collective, and which new rank would be slow is unknown);
- the ring's α and β, by least squares over the measured collectives of those steps, each one's
  duration taken from the moment its last rank entered it to the end of its last rank (waiting for
  a late rank is not network time): a ring collective costs k·α + c·β with k steps and c bytes
  per rank on its critical path (:mod:`simulator.costs`, exact chunks), linear in (α, β). When
  the collectives are all of one kind and size (one-bucket DDP) the system has rank 1 and any
  split fits: α is then the default ``switch:N`` route latency and only β is fitted (the output
  says so);
- the host's time per compute op: in each steady step and rank, the part of the step window that
  no compute span and no collective covers (Python, FSDP's hooks, the loss, launching kernels),
  divided by the compute ops of the step; per rank the median over steps (taken as the compute
  times are, per rank or the slowest). The simulator has no
  host lane, so it is added to every compute op (its mechanism: dispatch time per op, independent
  of N'). Without it a CPU run's replay misses a third of its step;
- the measured step time (per steady step, the slowest rank's window; the median and the spread),
  exposed communication and peak memory of the last step, as ``real train`` compares them.
:func:`predict` compiles the step again (:func:`simulator.training.compile_step`) for ``--ranks
N'`` and ``--strategy``, replaces every compute op's seconds with the measured ones of its label
(the optimizer step scaled by the elements it updates, new / measured: a sharded optimizer on N'
ranks updates 1/N' of the model), applies ``--slow-rank R=F`` (rank R's compute x F,
simulator/rank_speed.py) and ``--slow-link LINK=F`` (that link's, or rank's links', bandwidth / F)
and simulates it on ``--topology`` (default ``switch:N'`` with the calibrated α and β: route
latency α, two hops of α/2). Per-unit compute is independent of N' in data parallelism (each rank
keeps its micro-batch); what changes is the collectives' bytes and ring length, the optimizer's
shard, and memory (shards).

Local CPU runs: N' gloo ranks on C cores time-share them once N' > C, so ``host_cores=C`` scales
every compute op, the host time and the calibrated ring (its α and β: gloo's transfers are CPU
copies) by max(1, N'/C) / max(1, N/C). Without it each rank is taken to have its own cores, as on
a cluster. Not modelled: communication that is not a ring (gloo's algorithms differ by size),
cache and memory-bandwidth contention between ranks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import costs
from .engine import simulate
from .errors import UsageError
from .interop.measured import step_of
from .memory import exposed_comm, memory_timeline, merge_intervals
from .models import parse_device, parse_model
from .program import CollKind, OpKind, Program
from .rank_speed import time_factors
from .topology import DEFAULT_LAT, Topology, parse_topology
from .trace import Trace
from .training import TrainConfig, compile_step

_RING = {CollKind.ALL_REDUCE: costs.ring_all_reduce, CollKind.REDUCE_SCATTER: costs.ring_reduce_scatter,
         CollKind.ALL_GATHER: costs.ring_all_gather}


@dataclass(frozen=True)
class Measured:
    """What :func:`measure` takes from a measured trace (see [Note: what-if])."""

    model: str
    strategy: str
    nranks: int
    micro_batch: int
    bucket_bytes: int
    checkpointing: str
    param_dtype: str
    compute: dict[str, list[float]]      # label -> per rank, median seconds
    step_times: list[float]              # per steady step: the slowest rank's window
    exposed_comm: float                  # last step, the largest over ranks
    peak: int                            # last step, the largest over ranks
    alpha: float | None
    beta: float | None
    n_collectives: int = 0
    fit: str = "fit"                     # fit: α and β fitted; beta: α the default latency (calibrate_ring)
    host_overhead: list[float] = field(default_factory=list)  # per rank, seconds per compute op
    steps: list[int] = field(default_factory=list)

    @property
    def step_time(self) -> float:
        return float(np.median(self.step_times)) if self.step_times else math.nan

    def config(self, strategy: str | None = None) -> TrainConfig:
        """The simulator's configuration of the run (as real/train_compare.py: FSDP2 defaults)."""
        s = strategy or self.strategy
        s = "zero3" if s in ("fsdp", "zero3") else s
        bf16 = self.param_dtype == "bf16"
        return TrainConfig(strategy=s, precision=self.param_dtype, bucket_bytes=self.bucket_bytes, fsdp_version=2,
                           reshard_after_forward=True, forward_prefetch=False, backward_prefetch=True,
                           checkpointing=self.checkpointing,
                           master_weights="param" if bf16 and s in ("ddp", "zero3") else "optimizer")


def _windows(trace: Trace) -> dict[int, list[list[float]]]:
    w = {int(r): v for r, v in (trace.meta.get("steps") or {}).items()}
    if not w or not any(w.values()):
        raise UsageError("the trace has no training-step windows (meta 'steps'): whatif needs a measured "
                         "training run, from `rankscope real train` or a Kineto import of one")
    return w


def _op_steps(trace: Trace, windows) -> np.ndarray:
    """Training step of every op (-1: setup, or a rank without windows)."""
    p = trace.program
    out = np.full(p.n_ops, -1, dtype=np.int64)
    for r, w in windows.items():
        mine = np.flatnonzero(p.rank == r)
        t = np.where(np.isnan(trace.start[mine]), -np.inf, trace.start[mine])
        out[mine] = step_of(t, w)
    return out


def measured_peaks(trace: Trace, step: int) -> dict[int, int]:
    """Per rank, the largest bytes alive at any moment of training step ``step`` (its window)."""
    p = trace.program
    mt = memory_timeline(p, trace.start, trace.end)
    out = {}
    for rk, w in trace.meta.get("steps", {}).items():
        r = int(rk)
        if step >= len(w):
            continue
        a, b = w[step]
        t, tot = mt.times[r], mt.total[r]
        if tot.size == 0:
            continue
        inside = (t >= a) & (t <= b)
        before = np.flatnonzero(t < a)
        level = tot[before[-1]] if before.size else 0
        out[r] = int(max(level, tot[inside].max() if inside.any() else level))
    return out


def calibrate_ring(trace: Trace, op_step: np.ndarray, steps: list[int]) -> tuple[float | None, float | None, int, str]:
    """(α, β, collectives used, how) of the ring that best explains the measured collectives of
    ``steps`` (see [Note: what-if]); (None, None, 0, "none") if there are none. ``how`` is "fit"
    (both by least squares), or "beta" when the collectives cannot separate α from β (one kind and
    size, as a one-bucket DDP step: every row of the system is the same, and any split of their
    duration between α and β fits): α is then the default ``switch:N`` route latency
    (2 x ``simulator.topology.DEFAULT_LAT``) and β the least-squares fit given it."""
    p = trace.program
    n = p.nranks
    ops = np.flatnonzero((p.kind == OpKind.COLLECTIVE) & np.isin(op_step, steps) & ~np.isnan(trace.end))
    per_rank = [ops[p.rank[ops] == r] for r in range(n)]
    per_rank = [o[np.argsort(trace.start[o], kind="stable")] for o in per_rank]
    count = min((len(o) for o in per_rank), default=0)
    if n < 2 or count == 0:
        return None, None, 0, "none"
    rows, durs = [], []
    for j in range(count):
        inst = np.array([o[j] for o in per_rank])
        c = p.arg[inst[0]]
        kind, nbytes = CollKind(int(p.coll_kind[c])), int(p.coll_bytes[c])
        if kind not in _RING:
            continue
        f = _RING[kind]
        rows.append((f(n, nbytes, 1.0, 0.0), f(n, nbytes, 0.0, 1.0)))
        durs.append(float(trace.end[inst].max() - trace.start[inst].max()))
    if not rows:
        return None, None, 0, "none"
    A, d = np.array(rows), np.maximum(np.array(durs), 0.0)
    scale = np.maximum(np.abs(A).max(axis=0), 1e-300)  # columns of steps and of bytes: compare their shapes
    if np.linalg.matrix_rank(A / scale) < 2:
        alpha = 2 * DEFAULT_LAT
        bw_part = np.maximum(d - alpha * A[:, 0], 0.0)
        beta = float(A[:, 1] @ bw_part / (A[:, 1] @ A[:, 1])) if (A[:, 1] > 0).any() else 0.0
        return alpha, max(beta, 1e-12), len(rows), "beta"
    (alpha, beta), *_ = np.linalg.lstsq(A, d, rcond=None)
    if alpha < 0 or beta <= 0:  # a fit through the origin in β alone (or α alone) when one term is noise
        beta = float(A[:, 1] @ d / (A[:, 1] @ A[:, 1])) if (A[:, 1] > 0).any() else 0.0
        alpha = 0.0
        if beta <= 0:
            alpha, beta = float(d.mean() / max(A[:, 0].mean(), 1.0)), 1e-12
    return float(alpha), float(beta), len(rows), "fit"


def _recorded(trace: Trace, key: str):
    """What the trace itself says of ``key`` (the run's metadata, then the program's), or None."""
    run = dict(trace.meta.get("run") or {})
    pm = dict(trace.meta.get("program_meta") or {})
    return run.get(key) or pm.get(key)


def _same_strategy(a: str, b: str) -> bool:
    canon = {"fsdp": "zero3", "zero-3": "zero3", "zero-1": "zero1", "zero-2": "zero2"}
    return canon.get(a.lower(), a.lower()) == canon.get(b.lower(), b.lower())


def measure(trace: Trace, model: str | None = None, strategy: str | None = None) -> Measured:
    """The measured run's compute, network and totals (see [Note: what-if])."""
    windows = _windows(trace)
    run = dict(trace.meta.get("run") or {})
    pm = dict(trace.meta.get("program_meta") or {})
    # what the trace records wins; --model / --measured-strategy fill what it lacks, and must agree
    for flag, given, key in (("--model", model, "model"), ("--measured-strategy", strategy, "strategy")):
        rec = _recorded(trace, key)
        if given and rec and not (_same_strategy(given, rec) if key == "strategy" else given == rec):
            raise UsageError(f"{flag} {given}: the trace records {key} {rec}; leave {flag} out (it only "
                             "fills what a trace does not say)")
    model = _recorded(trace, "model") or model
    strategy = _recorded(trace, "strategy") or strategy
    if not model or not strategy:
        raise UsageError("the trace does not say which model and strategy it ran: give --model and "
                         "--measured-strategy")
    n_steps = max(len(w) for w in windows.values())
    steady = list(range(1, n_steps)) if n_steps > 1 else [0]
    p = trace.program
    op_step = _op_steps(trace, windows)
    comp = np.flatnonzero((p.kind == OpKind.COMPUTE) & np.isin(op_step, steady) & ~np.isnan(trace.end))
    by_label: dict[str, list[list[float]]] = {}
    for o, dur in zip(comp.tolist(), (trace.end[comp] - trace.start[comp]).tolist()):
        by_label.setdefault(p.compute_label[p.arg[o]], [[] for _ in range(p.nranks)])[int(p.rank[o])].append(dur)
    compute = {k: [float(np.median(d)) if d else math.nan for d in v] for k, v in by_label.items()}
    for k, v in compute.items():  # a rank without the span: the others' median
        if any(math.isnan(x) for x in v):
            fill = float(np.nanmedian(v))
            compute[k] = [fill if math.isnan(x) else x for x in v]
    step_times = []
    for k in steady:
        spans = [w[k][1] - w[k][0] for w in windows.values() if k < len(w)]
        if spans:
            step_times.append(float(max(spans)))
    overhead: list[list[float]] = [[] for _ in range(p.nranks)]
    busy_ops = (p.kind == OpKind.COMPUTE) | (p.kind == OpKind.COLLECTIVE) | p.is_transfer
    for r, w in windows.items():
        for k in steady:
            if k >= len(w):
                continue
            mine = np.flatnonzero((p.rank == r) & (op_step == k) & busy_ops)
            s0, e0 = merge_intervals(np.clip(trace.start[mine], w[k][0], w[k][1]),
                                     np.clip(trace.end[mine], w[k][0], w[k][1]))
            n_comp = int((p.kind[mine] == OpKind.COMPUTE).sum())
            if n_comp:
                overhead[r].append(max(0.0, (w[k][1] - w[k][0]) - float((e0 - s0).sum())) / n_comp)
    last = n_steps - 1
    start, end = trace.start.copy(), trace.end.copy()
    start[op_step != last] = np.nan
    end[op_step != last] = np.nan
    exposed = float(exposed_comm(p, start, end).max()) if p.n_ops else 0.0
    peaks = measured_peaks(trace, last)
    alpha, beta, used, how = calibrate_ring(trace, op_step, steady)
    mb = int(run.get("micro_batch") or pm.get("micro_batch") or parse_model(model).micro_batch)
    return Measured(model=model, strategy=strategy, nranks=p.nranks, micro_batch=mb,
                    bucket_bytes=int(float(run.get("bucket_mb", 25.0)) * 2**20),
                    checkpointing=run.get("checkpointing", "none"), param_dtype=run.get("param_dtype", "fp32"),
                    compute=compute, step_times=step_times, exposed_comm=exposed,
                    peak=max(peaks.values()) if peaks else 0, alpha=alpha, beta=beta, n_collectives=used,
                    fit=how,
                    steps=steady, host_overhead=[float(np.median(o)) if o else 0.0 for o in overhead])


def parse_factor(spec: str, what: str) -> tuple[str, float]:
    """``KEY=F`` with F > 0."""
    key, sep, val = spec.partition("=")
    try:
        f = float(val)
    except ValueError:
        f = math.nan
    if not sep or not key.strip() or not (f > 0 and math.isfinite(f)):
        raise UsageError(f"{what} {spec!r}: write KEY=FACTOR with a factor > 0, e.g. 3=1.3")
    return key.strip(), f


def slow_links(topo: Topology, specs: list[tuple[str, float]]) -> Topology:
    """``topo`` with each named link's bandwidth divided by its factor. A key is a link name as
    ``Topology.link_names`` has it (``0->sw``) or a rank (every link into or out of it: its NIC)."""
    bw = topo.link_bw.copy()
    for key, f in specs:
        if key in topo.link_names:
            hit = [topo.link_names.index(key)]
        elif key.isdigit() and int(key) < topo.nranks:
            r = int(key)
            hit = [i for i, (u, v) in enumerate(topo._ends) if u == r or v == r]
        else:
            raise UsageError(f"--slow-link {key!r}: not a rank 0..{topo.nranks - 1} nor a link of {topo.name!r} "
                             f"(links: {', '.join(topo.link_names[:6])}{', ...' if len(topo.link_names) > 6 else ''})")
        bw[hit] /= f
    d = topo.to_dict()
    d["links"] = [[u, v, float(b), t] for (u, v, _, t), b in zip(d["links"], bw)]
    return Topology.from_dict(d)


def predict(meas: Measured, nranks: int | None = None, topo: Topology | None = None, strategy: str | None = None,
            slow_ranks: dict[int, float] | None = None, links: list[tuple[str, float]] | None = None,
            host_cores: int | None = None) -> tuple[Program, Any, Topology, dict[str, Any]]:
    """(program, simulation, topology, report) of the measured step on the new configuration."""
    n = nranks or meas.nranks
    if host_cores is not None and host_cores < 1:
        raise UsageError(f"--host-cores must be >= 1, got {host_cores}")
    share = max(1.0, n / host_cores) / max(1.0, meas.nranks / host_cores) if host_cores else 1.0
    if topo is None:
        if meas.beta is None:
            raise UsageError("the trace has no collectives to calibrate the network from: give --topology")
        topo = parse_topology(f"switch:{n}", bw=1.0 / (meas.beta * share), lat=meas.alpha * share / 2)
    elif topo.nranks != n:
        raise UsageError(f"--topology {topo.name!r} has {topo.nranks} ranks, --ranks says {n}")
    if links:
        topo = slow_links(topo, links)
    model = parse_model(meas.model, meas.micro_batch)
    cpu = parse_device("cpu")
    cfg = meas.config(strategy)
    prog = compile_step(model, n, cfg, cpu)
    base = compile_step(model, meas.nranks, meas.config(), cpu)
    opt_ratio = _seconds(prog, "optimizer step") / _seconds(base, "optimizer step")
    missing = sorted(set(prog.compute_label) - set(meas.compute))
    if missing:
        raise UsageError(f"the measured trace has no '{missing[0]}' span ({len(missing)} labels missing): whatif "
                         "needs the compute spans of the same model")
    factor = time_factors(topo, n) * share
    for r, f in (slow_ranks or {}).items():
        if not 0 <= r < n:
            raise UsageError(f"--slow-rank {r}: ranks are 0..{n - 1}")
        factor[r] *= f
    prog = measured_compute(prog, meas, opt_ratio, factor)
    sim = simulate(prog, topo)
    mt = memory_timeline(prog, sim.start, sim.end)
    rep = {"measured": {"model": meas.model, "strategy": meas.strategy, "nranks": meas.nranks,
                        "step_time": meas.step_time, "step_time_min": min(meas.step_times, default=math.nan),
                        "step_time_max": max(meas.step_times, default=math.nan), "steps": meas.steps,
                        "exposed_comm": meas.exposed_comm, "peak": meas.peak, "alpha": meas.alpha,
                        "beta": meas.beta, "collectives_fitted": meas.n_collectives, "fit": meas.fit,
                        "host_overhead_per_op": meas.host_overhead,
                        "compute_per_rank": meas.compute},
           "predicted": {"strategy": cfg.strategy, "nranks": n, "topology": topo.name,
                         "step_time": sim.makespan, "exposed_comm": float(exposed_comm(prog, sim.start, sim.end).max()),
                         "peak": max(mt.peak(r)[0] for r in range(n)),
                         "slow_ranks": {str(k): v for k, v in (slow_ranks or {}).items()},
                         "slow_links": [[k, v] for k, v in (links or [])], "optimizer_scale": opt_ratio,
                         "host_cores": host_cores, "host_share": share}}
    return prog, sim, topo, rep


def measured_compute(prog: Program, meas: Measured, opt_ratio: float, factor: np.ndarray) -> Program:
    """``prog`` with one compute entry per compute op: the measured seconds of its label on its
    rank (the slowest rank's when the rank count differs) plus the host time per op, times the
    rank's ``factor`` (see [Note: what-if])."""
    same = prog.nranks == meas.nranks
    comp = np.flatnonzero(prog.kind == OpKind.COMPUTE)
    labels = [prog.compute_label[a] for a in prog.arg[comp].tolist()]
    table = {lab: np.asarray(v) if same else np.full(prog.nranks, max(v)) for lab, v in meas.compute.items()}
    host = np.asarray(meas.host_overhead) if same else np.full(prog.nranks, max(meas.host_overhead, default=0.0))
    rank = prog.rank[comp]
    secs = np.array([table[lab][r] for lab, r in zip(labels, rank.tolist())])
    secs = np.where(np.array([lab == "optimizer step" for lab in labels]), secs * opt_ratio, secs)
    secs = (secs + host[rank]) * factor[rank]
    arg = prog.arg.copy()
    arg[comp] = np.arange(comp.size)
    return dataclasses.replace(prog, arg=arg, compute_seconds=secs, compute_flops=np.zeros(comp.size),
                               compute_label=tuple(labels), meta={**prog.meta, "whatif": True})


def _seconds(prog: Program, label: str) -> float:
    return float(prog.compute_seconds[list(prog.compute_label).index(label)])
