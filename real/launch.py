"""Start N local ranks, or join the torchrun job this process is part of; say who failed and why.

The one launcher of the real backend: ``rankscope real``, ``real sweep``, ``calibrate``,
``validate`` and ``real train`` all start their ranks with :func:`launch`.

[Note: launch modes]
*Local* (the default): this process starts N rank processes on this host (real/procs.py, [Note:
starting local ranks]): forked, or spawned on CUDA (:func:`start_method`), one GPU each, so N <=
the GPUs here. ``RANKSCOPE_START_METHOD=spawn|forkserver|fork`` overrides the choice (fork is
refused on CUDA). A local run is on CPUs unless NCCL is asked for: the parent never asks CUDA
anything before it forks (``torch.cuda.is_available()`` before a fork breaks CUDA in every child).

*torchrun*: when RANK, WORLD_SIZE and LOCAL_RANK are set, this process is one rank of that job
(one or many nodes): ``init_process_group`` from the environment, device ``cuda:LOCAL_RANK`` and
NCCL when CUDA is available (``cpu:gloo,cuda:nccl``, so CPU tensors still go over gloo).

A job is a callable run on every rank with a :class:`~real.rank.RankContext`; what it returns must
be JSON (it travels through the store: no pickle). Ranks also *publish* small JSON values (errors,
partial records) in the store under ``name/rank``, which outlives a broken process group.

[Note: failures]
A rank that raises publishes its error and exits 1; on gloo its peers see their sockets close and
fail within about a second ("Connection closed by peer"); a rank that hangs is caught by its
peers' wait budget (real/rank.py, [Note: wait budgets]) and then killed by the launcher
(real/procs.py, [Note: watching]), so nothing is left behind. The *culprit* is the earliest
failure that is not a reaction to another one: a rank killed by a signal, or one whose error is
not a communication error; failing that, a rank that hung (its peers timed out waiting for it,
and the launcher killed it); peers' "connection closed" and timeouts come last.

On NCCL there is no "connection closed": the peers of a failed rank block inside NCCL until the
process group's timeout, when NCCL's watchdog aborts them (SIGABRT, counted as a reaction, not a
cause), or until the launcher kills them as hung; either way their own stamps die with them, and
the partial trace holds what the failing rank (if it raised) published.

Under torchrun the agent, not this module, stops the job: as soon as one rank exits it sends
SIGTERM to the others (SIGKILL 30 s later). Rank 0 ignores SIGTERM so that it can still gather
what the others published and write the partial trace: it is bound to fail on its own within
about a second (its peers' sockets close) or at ``timeout``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.distributed as dist

from rankscope.simulator.errors import UsageError

from .procs import GRACE, child_main, start_ranks, watch
from .rank import PREFIX, RankContext, fetch, run_rank

__all__ = ["GRACE", "Launched", "RankContext", "RankFailure", "choose_backend", "in_torchrun", "launch",
           "start_method"]


@dataclass(frozen=True)
class RankFailure:
    rank: int
    reason: str
    primary: bool            # its own cause, not a reaction to another rank's failure
    t_ns: float              # host monotonic time it failed (ordering on one host)
    hung: bool = False       # still running after the others failed: killed by the launcher


@dataclass
class Launched:
    """The outcome of a launch. ``results[r]`` is rank r's job return value; ``published[name][r]``
    the value rank r published under ``name`` (only the names asked for)."""

    mode: str                # "local" | "torchrun"
    nranks: int
    backend: str
    rank: int | None         # this process's rank under torchrun, None in the local launcher
    results: dict[int, Any] = field(default_factory=dict)
    failures: list[RankFailure] = field(default_factory=list)
    published: dict[str, dict[int, Any]] = field(default_factory=dict)
    late: list[int] = field(default_factory=list)  # ranks killed at the end of the run's time

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def culprit(self) -> RankFailure | None:
        if not self.failures:
            return None
        pool = ([f for f in self.failures if f.primary] or [f for f in self.failures if f.hung]
                or self.failures)
        return min(pool, key=lambda f: (f.t_ns, f.rank))

    def failure_message(self) -> str:
        c = self.culprit
        if c is None:
            return ""
        others = sorted(f.rank for f in self.failures if f.rank != c.rank)
        tail = f"; rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} stopped after it" \
            if others else ""
        return f"rank {c.rank} failed: {c.reason}{tail}"


def in_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def choose_backend(requested: str | None, torchrun: bool) -> str:
    """gloo locally, NCCL under torchrun when CUDA is available; ``requested`` overrides. Locally
    nothing asks CUDA anything unless NCCL is requested (see [Note: launch modes])."""
    if requested not in (None, "gloo", "nccl"):
        raise UsageError(f"unknown backend {requested!r}; choose gloo or nccl")
    backend = requested or ("nccl" if torchrun and torch.cuda.is_available() else "gloo")
    if backend == "nccl" and not torch.cuda.is_available():
        raise UsageError("--backend nccl needs CUDA, which this torch build or machine lacks; use gloo")
    return backend


def start_method(backend: str, requested: str | None = None) -> str:
    """How local ranks start: ``requested``, else ``RANKSCOPE_START_METHOD``, else fork on Linux
    for gloo and spawn for NCCL (CUDA does not survive fork) or off Linux."""
    method = requested or os.environ.get("RANKSCOPE_START_METHOD") or \
        ("fork" if backend != "nccl" and sys.platform.startswith("linux") else "spawn")
    if method not in ("fork", "forkserver", "spawn"):
        raise UsageError(f"unknown start method {method!r}: fork, forkserver or spawn")
    if method == "fork" and backend == "nccl":
        raise UsageError("NCCL ranks cannot be forked (CUDA does not survive fork): use spawn or forkserver")
    return method


def launch(job: Callable[[RankContext], Any], *, nranks: int | None, backend: str | None = None,
           timeout: float = 60.0, collect: tuple[str, ...] = (), started: float | None = None,
           run_seconds: float | None = None, method: str | None = None) -> Launched:
    """Run ``job`` on every rank: N local processes, or this process as one torchrun rank.

    ``started``: host monotonic seconds the command started (default: now), from which the wait
    budgets run ([Note: wait budgets] in real/rank.py); ``run_seconds``: a limit on the whole
    local run, counted from ``started`` (ranks still running then are killed); ``method``: the
    start method (default :func:`start_method`)."""
    if not timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
    started = time.monotonic() if started is None else started
    if in_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if nranks not in (None, world):
            raise UsageError(f"--ranks {nranks} disagrees with torchrun's WORLD_SIZE={world}; drop --ranks")
        return _join(job, choose_backend(backend, True), timeout, collect, started)
    if nranks is None or nranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {nranks}")
    backend = choose_backend(backend, False)
    method = start_method(backend, method)
    if backend == "nccl" and nranks > torch.cuda.device_count():
        raise UsageError(f"NCCL needs one GPU per rank: {nranks} ranks, {torch.cuda.device_count()} GPUs here")
    deadline = started + run_seconds if run_seconds is not None else None
    return _launch_local(job, nranks, backend, timeout, collect, started, deadline, method)


def signal_failure(rank: int, code: int, t_ns: float, backend: str) -> RankFailure:
    """A rank that exited by signal ``-code``. Its own cause, except SIGABRT on NCCL: NCCL's
    watchdog aborts a rank whose collective timed out, which is a reaction to another rank that
    failed or hung (see [Note: failures])."""
    sig = -code
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    if backend == "nccl" and sig == signal.SIGABRT:
        return RankFailure(rank, "aborted (SIGABRT: NCCL's watchdog ends a rank whose collective timed out)",
                           False, t_ns)
    return RankFailure(rank, f"killed by signal {name}", True, t_ns)


def _failure(r: int, err: dict[str, Any]) -> RankFailure:
    return RankFailure(r, f"{err['type']}: {err['message']}", not err["comm"], err["t_ns"])


def _join(job: Callable[[RankContext], Any], backend: str, timeout: float,
          collect: tuple[str, ...], started: float) -> Launched:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if rank == 0:  # see [Note: failures]: rank 0 outlives torchrun's SIGTERM to report
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result, err, store = run_rank(rank, world, int(os.environ["LOCAL_RANK"]), backend, timeout, job,
                                  started=started)
    out = Launched("torchrun", world, backend, rank, results={rank: result})
    if err is not None:
        out.failures.append(_failure(rank, err))
        if rank == 0 and store is not None:  # best effort: what the others managed to publish
            deadline = time.monotonic() + min(timeout, 5.0)
            for r in range(1, world):
                e = fetch(store, "error", r, max(0.0, deadline - time.monotonic()))
                if e is not None:
                    out.failures.append(_failure(r, e))
            out.published = {n: {r: v for r in range(world) if (v := fetch(store, n, r)) is not None}
                             for n in collect}
    return out


def _launch_local(job: Callable[[RankContext], Any], nranks: int, backend: str, timeout: float,
                  collect: tuple[str, ...], started: float, deadline: float | None, method: str) -> Launched:
    mp = multiprocessing.get_context(method)
    procs: list[Any] = []
    base = pub = None
    try:
        base = start_ranks(mp, procs, nranks, timeout,
                           lambda r, port: (r, nranks, port, backend, timeout, job, started), child_main)
        pub = dist.PrefixStore(PREFIX, base)
        w = watch(procs, timeout, started, deadline)
        out = Launched("local", nranks, backend, None)
        for r in range(nranks):
            code, t_ns = w.exits[r]
            err = fetch(pub, "error", r)
            if r in w.late:
                out.late.append(r)
                out.failures.append(RankFailure(r, "still running at the end of the run's time "
                                                   f"({deadline - started:g} s), killed by the launcher",
                                                False, t_ns, True))
            elif r in w.hung:
                out.failures.append(RankFailure(r, f"hung: still running {w.waited:.1f} s after "
                                                   f"the first failure, killed by the launcher", False, t_ns, True))
            elif code < 0:
                out.failures.append(signal_failure(r, code, t_ns, backend))
            elif err is not None:
                out.failures.append(_failure(r, err))
            elif code != 0:
                out.failures.append(RankFailure(r, f"exited with code {code}", True, t_ns))
            else:
                out.results[r] = fetch(pub, "result", r)
        out.published = {n: {r: v for r in range(nranks)
                             if (v := fetch(pub, n, r)) is not None} for n in collect}
        return out
    finally:
        for p in procs:  # only on an exception (^C) is any still alive here
            if p.exitcode is None:
                p.kill()
            p.join()
        del pub, base
