"""``rankscope real``: run programs on real ranks, check them, gather on rank 0, write traces.

One launch runs a list of programs (the CLI passes one; tests pass many, which amortises the
launch). For each program, every rank:
  1. loads its encoded input (:mod:`real.encoding`) and waits at a barrier;
  2. runs its waves (:mod:`real.executor`), with ``check_steps`` comparing its decoded buffers with
     the simulator's layout after every step it took part in, and always after the last;
  3. runs the native collective on the same input and compares its result with the program's;
  4. publishes its mismatches (JSON, in the store) and sends its timestamps to rank 0 with one
     tensor ``dist.gather``; rank 0 puts them on its clock, writes the trace atomically
     (:func:`simulator.trace.write_trace`) and returns a summary.
Before the first program the ranks estimate clock offsets (:mod:`real.clock`).

If a rank fails, each survivor publishes the timestamps it has; the coordinator (the local
launcher, or rank 0 under torchrun if it is alive) writes the failing program's trace from them
with ``complete: false`` and the error in meta, and :class:`RankFailed` names the culprit.
Programs after the failing one write nothing.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.costs import algbw, busbw
from rankscope.simulator.engine import LANE_COMM, LANES
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.program import Program
from rankscope.simulator.trace import Trace, write_trace

from .clock import ClockSync, estimate_offsets
from .encoding import Encoding
from .executor import Executor
from .faults import Fault
from .launch import Launched, launch
from .native import Native
from .rank import RankContext
from .verify import Checker, compare_native, describe, first


class RankFailed(RankscopeError):
    """A rank raised or died; ``launched`` holds every rank's outcome, ``trace`` the partial trace."""

    def __init__(self, message: str, launched: Launched, trace: str | None):
        super().__init__(message)
        self.launched, self.trace = launched, trace


def clock_name(backend: str) -> str:
    return "cuda-events" if backend == "nccl" else "monotonic"


def compose_trace(prog: Program, rows: np.ndarray, offsets: Sequence[float], meta: dict[str, Any],
                  complete: bool = True) -> Trace:
    """A trace from every rank's records ``rows`` (N, 2, n_ops; host ns, NaN unknown): start from
    the sender's row 0, end from the receiver's row 1 (a collective macro op's own rank for both),
    both moved onto rank 0's clock by ``offsets`` and counted in seconds from the earliest start.
    An op missing either stamp did not run."""
    m = prog.n_ops
    adj = rows - np.asarray(offsets, dtype=np.float64)[:, None, None]
    ids = np.arange(m)
    receiver = np.where(prog.peer >= 0, prog.peer, prog.rank)  # a collective op ends on its rank
    start, end = adj[prog.rank, 0, ids], adj[receiver, 1, ids]
    ran = np.isfinite(start) & np.isfinite(end)
    origin = float(start[ran].min()) if ran.any() else 0.0
    start = np.where(ran, (start - origin) / 1e9, np.nan)
    end = np.where(ran, (end - origin) / 1e9, np.nan)
    lane = np.where(ran, LANE_COMM, -1)
    return Trace(prog, start, end, lane, meta={**meta, "lanes": list(LANES), "clock_origin_ns": origin,
                                                "complete": bool(complete and ran.all())})


def _records_json(rec: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in rec]


def _records_from_json(doc: Any, n_ops: int) -> np.ndarray:
    out = np.full((2, n_ops), np.nan)
    if doc is not None:
        out[:] = np.array([[np.nan if v is None else v for v in row] for row in doc], dtype=np.float64)
    return out


@dataclass(frozen=True)
class RunJob:
    """The job every rank runs (picklable, for spawned ranks)."""

    programs: tuple[Program, ...]
    outs: tuple[str | None, ...]
    check_steps: bool = False
    native: bool = True
    fault: Fault | None = None

    def __call__(self, ctx: RankContext) -> list[dict[str, Any]] | None:
        sync = estimate_offsets(ctx.rank, ctx.world)
        ctx.publish("clock", {"offsets": sync.offsets, "measured": sync.measured, "rtt": sync.rtt})
        ctx.publish("host", platform.node())
        summaries = [self._one(ctx, i, prog, sync) for i, prog in enumerate(self.programs)]
        return summaries if ctx.rank == 0 else None

    def _one(self, ctx: RankContext, i: int, prog: Program, sync: ClockSync) -> dict | None:
        enc = Encoding(prog.nranks)
        ex = Executor(ctx, prog, enc, fault=self.fault)
        checker = Checker(prog, enc, ctx.rank)
        found: list[dict[str, Any]] = []

        def after_step(step: int) -> None:
            if not found and (m := checker.check(step, ex.host_buffers())) is not None:
                found.append(m)

        dist.barrier()
        try:  # a failure from here to the gather leaves this rank's timestamps for the partial trace
            ex.run(after_step if self.check_steps else None)
            if not found:
                after_step(prog.n_steps - 1)
            native = "skipped"
            collective = prog.meta.get("collective")
            if self.native and collective:
                nat = Native(collective, ex.buffers[0].numel(), ctx.rank, ctx.world,
                             int(prog.buffers[0].root), dtype=ex.buffers[0].dtype, device=ctx.device)
                nat.load(ex.initial[0])
                nat.run()
                lo, hi = nat.span
                m = compare_native(prog, enc, ctx.rank, ex.host_buffers()[0], nat.result.cpu().numpy(), lo, hi)
                native = "equal" if m is None else "differs"
                if m is not None:
                    found.append(m)
            ctx.publish(f"check{i}", {"mismatches": found, "native": native})
            rec = torch.from_numpy(ex.records())
            rows = [torch.empty_like(rec) for _ in range(ctx.world)] if ctx.rank == 0 else None
            dist.gather(rec, rows, dst=0)
        except BaseException:
            ctx.publish("records", {"program": i, "records": _records_json(ex.records(after_error=True))})
            raise
        ctx.progressed()
        if ctx.rank != 0:
            return None
        checks = [ctx.fetch(f"check{i}", r, wait=ctx.timeout) or {} for r in range(ctx.world)]
        mismatches = [m for c in checks for m in c.get("mismatches", [])]
        natives = {c.get("native", "skipped") for c in checks}
        bad = first(mismatches)
        meta = {"executor": ctx.backend, "clock": clock_name(ctx.backend), "clock_offsets_ns": sync.offsets,
                "clock_offsets_measured_ns": sync.measured, "clock_rtt_ns": sync.rtt,
                "hosts": [ctx.fetch("host", r, wait=ctx.timeout) for r in range(ctx.world)],
                "real": {"encoding": f"int64 x {enc.words} words per element (rank r adds 2^r)",
                         "requested_nbytes": prog.meta.get("requested_nbytes"),
                         "check_steps": self.check_steps,
                         "provenance": "differs" if any(m["kind"] == "provenance" for m in mismatches)
                         else "equal", "native": "differs" if "differs" in natives else natives.pop(),
                         "mismatch": describe(bad, prog) if bad else None}}
        trace = compose_trace(prog, torch.stack(rows).numpy(), sync.offsets, meta)
        if self.outs[i]:
            write_trace(self.outs[i], trace)
        return summarize(prog, trace, self.outs[i])


def summarize(prog: Program, trace: Trace, path: str | None) -> dict[str, Any]:
    """What the CLI prints for one run (JSON-able)."""
    ran = trace.ran
    seconds = trace.makespan if ran.any() else float("nan")
    size, coll, real = prog.message_bytes, prog.meta.get("collective", ""), trace.meta["real"]
    ok = np.isfinite(seconds) and seconds > 0
    return {"collective": coll, "algo": prog.meta.get("algo"), "nranks": prog.nranks, "nbytes": size,
            "requested_nbytes": real.get("requested_nbytes"), "steps": prog.n_steps,
            "transfers": prog.n_ops, "seconds": seconds,
            "algbw": algbw(size, seconds) if ok else None,
            "busbw": busbw(coll, prog.nranks, size, seconds) if ok and coll else None,
            "executor": trace.meta["executor"], "clock": trace.meta["clock"],
            "check_steps": real["check_steps"], "provenance": real["provenance"], "native": real["native"],
            "mismatch": real["mismatch"], "offsets_ns": trace.meta["clock_offsets_ns"],
            "rtt_ns": trace.meta["clock_rtt_ns"], "trace": path}


def run_programs(programs: Sequence[Program], outs: Sequence[str | None] | None = None, *,
                 nranks: int | None = None, backend: str | None = None, timeout: float = 60.0,
                 check_steps: bool = False, native: bool = True, fault: Fault | None = None,
                 started: float | None = None) -> list[dict[str, Any]]:
    """Run ``programs`` one after another in one launch; rank 0's summaries (``[]`` on the other
    ranks of a torchrun job). Raises :class:`RankFailed` if a rank failed. ``started``: when the
    command started (host monotonic s; default now), from which the ranks' wait budgets run."""
    programs = tuple(programs)
    outs = tuple(outs) if outs is not None else (None,) * len(programs)
    sizes = {p.nranks for p in programs}
    if len(sizes) != 1:
        raise RankscopeError(f"one launch runs programs of one rank count, got {sorted(sizes)}")
    job = RunJob(programs, outs, check_steps, native, fault)
    launched = launch(job, nranks=nranks if nranks is not None else programs[0].nranks, backend=backend,
                      timeout=timeout, collect=("records", "clock", "host"), started=started)
    if launched.nranks != programs[0].nranks:
        raise RankscopeError(f"the job has {launched.nranks} ranks, the program {programs[0].nranks}")
    if launched.ok:
        return (launched.results.get(0) or []) if launched.rank in (None, 0) else []
    path = _write_partial(launched, programs, outs) if launched.rank in (None, 0) else None
    raise RankFailed(launched.failure_message(), launched, path)


def _write_partial(launched: Launched, programs: tuple[Program, ...], outs: tuple[str | None, ...]
                   ) -> str | None:
    recs = launched.published.get("records", {})
    if not recs:
        return None
    i = min(int(v["program"]) for v in recs.values())
    prog, path = programs[i], outs[i]
    if not path:
        return None
    rows = np.stack([_records_from_json(recs[r]["records"] if r in recs and recs[r]["program"] == i
                                        else None, prog.n_ops) for r in range(prog.nranks)])
    clock = launched.published.get("clock", {}).get(0)
    offsets = clock["offsets"] if clock else [0.0] * prog.nranks
    hosts = launched.published.get("host", {})
    meta = {"executor": launched.backend, "clock": clock_name(launched.backend), "clock_offsets_ns": offsets,
            "clock_offsets_measured_ns": clock["measured"] if clock else None,
            "clock_rtt_ns": clock["rtt"] if clock else None,
            "hosts": [hosts.get(r) for r in range(prog.nranks)], "error": launched.failure_message(),
            "real": {"requested_nbytes": prog.meta.get("requested_nbytes"), "provenance": "unchecked",
                     "native": "skipped", "mismatch": None, "check_steps": None}}
    write_trace(path, compose_trace(prog, rows, offsets, meta, complete=False))
    return path
