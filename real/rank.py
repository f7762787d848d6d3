"""One rank of a launch: its context, its process group, its published values, its error record.

What every launcher (:mod:`real.launch`: local processes or one torchrun rank) runs in each rank
process: :func:`run_rank` initialises the process group, runs the job with a :class:`RankContext`
and publishes its result, or its error, in the store under ``name/rank`` (small JSON values, no
pickle; the store outlives a broken process group).

[Note: wait budgets]
``--timeout`` is how long a rank may wait for any one thing, and the clock starts with the
command: until a rank's first wave of transfers has completed, its waits share one budget that
runs from the command's start (``RankContext.started``), so a rank that hangs from the start
is noticed ``--timeout`` s after the command started, not after start-up plus ``--timeout``.
Each completed wait (:meth:`RankContext.progressed`) starts a fresh ``--timeout``, and so does the
start of each later run of waits (:meth:`RankContext.fresh_budget`: a sweep's native rounds in
between are no waiting). On CUDA no
wait takes a timeout at all (real/executor.py): the process group's timeout, which NCCL's watchdog
enforces, is the limit there.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

PREFIX = "rankscope"
_COMM = re.compile(r"gloo|nccl|connection (closed|reset)|read error|write error|broken pipe|"
                   r"timed out|timeout|socket", re.I)


@dataclass
class RankContext:
    """What a job sees on its rank."""

    rank: int
    world: int
    local_rank: int
    backend: str             # "gloo" | "nccl"
    device: torch.device
    timeout: float           # seconds, for every wait
    store: Any               # a PrefixStore: publish/fetch small JSON values
    started: float = field(default_factory=time.monotonic)  # the command's start (host monotonic s)

    def __post_init__(self) -> None:
        self.last_progress = self.started
        self.any_progress = False

    @property
    def wait_timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout)

    def wait_budget(self) -> timedelta:
        """What is left of ``timeout`` since the last progress (see [Note: wait budgets])."""
        return timedelta(seconds=max(self.last_progress + self.timeout - time.monotonic(), 1e-3))

    def progressed(self) -> None:
        self.last_progress = time.monotonic()
        self.any_progress = True

    def fresh_budget(self) -> None:
        """A new run of waits starts a full ``timeout``, once the rank has made progress at all
        (before that, the budget runs from the command's start)."""
        if self.any_progress:
            self.progressed()

    def publish(self, name: str, obj: Any) -> None:
        publish(self.store, name, self.rank, obj)

    def fetch(self, name: str, rank: int, wait: float = 0.0) -> Any:
        return fetch(self.store, name, rank, wait)


def publish(store: Any, name: str, rank: int, obj: Any) -> None:
    store.set(f"{name}/{rank}", json.dumps(obj))


def fetch(store: Any, name: str, rank: int, wait: float = 0.0) -> Any:
    """Rank ``rank``'s value of ``name``, waiting up to ``wait`` s for it; None if there is none."""
    key, deadline = f"{name}/{rank}", time.monotonic() + wait
    while True:
        if store.check([key]):
            return json.loads(store.get(key))
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def error_record(exc: BaseException) -> dict[str, Any]:
    """What a failed rank publishes: type, first line, whether it is a communication error (a
    reaction to another rank's failure), when, and the traceback."""
    msg = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ""
    comm = isinstance(exc, RuntimeError) and (isinstance(exc, getattr(dist, "DistError", ()))
                                              or bool(_COMM.search(msg)))
    return {"type": type(exc).__name__, "message": msg, "comm": comm, "t_ns": time.monotonic_ns(),
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def run_rank(rank: int, world: int, local_rank: int, backend: str, timeout: float,
             job: Callable[[RankContext], Any], base_store: Any = None, started: float | None = None
             ) -> tuple[Any, dict | None, Any]:
    """Init the process group, run the job, publish its result or error: (result, error, store).
    ``job.env`` ((name, value) pairs, optional) is set in the environment first, where not already set (e.g.
    the flight recorder's buffer size, read when the process group is created)."""
    store = None
    try:
        for k, v in dict(getattr(job, "env", None) or ()).items():
            os.environ.setdefault(k, v)
        device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        kw: dict[str, Any] = {"rank": rank, "world_size": world, "timeout": timedelta(seconds=timeout),
                              "backend": "cpu:gloo,cuda:nccl" if backend == "nccl" else "gloo"}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            kw["device_id"] = device
        if base_store is not None:
            store = dist.PrefixStore(PREFIX, base_store)
            dist.init_process_group(store=dist.PrefixStore("pg", base_store), **kw)
        else:
            dist.init_process_group(init_method="env://", **kw)
            store = dist.PrefixStore(PREFIX, dist.distributed_c10d._get_default_store())
        ctx = RankContext(rank, world, local_rank, backend, device, timeout, store,
                          started if started is not None else time.monotonic())
        result = job(ctx)
        publish(store, "result", rank, result)
        dist.barrier()
        dist.destroy_process_group()
        return result, None, store
    except BaseException as exc:  # everything, KeyboardInterrupt included, is reported
        err = error_record(exc)
        try:
            if store is None:
                raise RuntimeError("no store")
            publish(store, "error", rank, err)
        except Exception:
            print(f"rankscope rank {rank}: {err['type']}: {err['message']}", file=sys.stderr)
        if os.environ.get("RANKSCOPE_DEBUG"):
            print(f"--- rank {rank} ---\n{err['traceback']}", file=sys.stderr)
        return None, err, store
