"""Local rank processes: start them, hand them the store's port, watch them, kill what is left.

[Note: starting local ranks]
This process creates a TCPStore on port 0 (the OS picks a free port, so there is no race
between choosing and binding it; creation is retried if it fails) and starts N rank processes
that connect to it. Ranks are forked (0.1-0.7 s for N = 2..8 against 5-20 s for spawn); each
calls ``torch.set_num_threads(1)`` first, which keeps a fork of a process that already ran a
threaded torch op from hanging, and gives each rank one compute thread. All ranks are forked
*before* the store is created and receive its port through a pipe: forking while the store's
server thread accepts the first ranks' connections left a later rank, now and then, deadlocked
inside its own ``TCPStore`` constructor (seen here: 2 launches in 40 of 4 ranks, the last rank,
stuck until the timeout killed it). Ranks on CUDA are spawned instead: CUDA does not survive a
fork ("Cannot re-initialize CUDA in forked subprocess"), see :func:`real.launch.start_method`.

[Note: watching]
The launcher waits for every rank. Once one has failed, any still running ``min(timeout, 5 s)``
later is killed (SIGKILL by pid) and reaped: its peers have failed within a second by then (their
sockets closed) or at their wait budget (they waited for a rank that hangs), so what still runs
is that rank. The kill comes no later than ``--timeout`` + 4 s after the command's start when the
failure came early (see [Note: wait budgets] in real/rank.py: a rank that hangs from the start
ends the run within ``--timeout`` + 5 s), and at least 1 s after the failure. A whole-run
``deadline`` (``real train``) kills every rank still running at it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from .rank import RankContext, run_rank

GRACE = 5.0  # seconds the other ranks get, after one failed, to fail on their own and report


@dataclass
class Watched:
    """Per rank: (exit code, host ns when seen); the ranks killed after a failure (``hung``) and
    those killed at the whole-run deadline (``late``)."""

    exits: dict[int, tuple[int, float]] = field(default_factory=dict)
    hung: set[int] = field(default_factory=set)
    late: set[int] = field(default_factory=set)
    waited: float = 0.0      # seconds a killed rank had after the first failure


def server_store(timeout: float, tries: int = 3) -> Any:
    for attempt in range(tries):
        try:
            return dist.TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=timeout),
                                 wait_for_workers=False)
        except (RuntimeError, OSError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def start_ranks(mp: Any, procs: list[Any], nranks: int, timeout: float,
                args_of: Callable[[int, Any], tuple], target: Callable[..., None]) -> Any:
    """Start ``target(*args_of(rank, port))`` in ``nranks`` processes of the multiprocessing
    context ``mp`` (appended to ``procs`` as they start) and return the server TCPStore they
    connect to. Forked ranks are all started before the store exists and get ``port`` as the read
    end of a pipe that delivers the port number (see [Note: starting local ranks]); ``target``
    resolves it with :func:`store_port`."""
    pipes = [mp.Pipe(duplex=False) for _ in range(nranks)] if mp.get_start_method() == "fork" else None
    base = None if pipes else server_store(timeout)
    for r in range(nranks):
        port = pipes[r][0] if pipes else base.port
        p = mp.Process(target=target, args=args_of(r, port), name=f"rankscope-rank{r}", daemon=True)
        p.start()
        procs.append(p)
    if pipes:
        base = server_store(timeout)
        for rd, w in pipes:
            w.send(base.port)
            w.close()
            rd.close()
    return base


def store_port(port: Any, timeout: float) -> int:
    """The port itself, or what the pipe of :func:`start_ranks` delivers within ``timeout``."""
    if isinstance(port, int):
        return port
    if not port.poll(timeout):
        raise RuntimeError(f"the launcher sent no store port within {timeout:g} s")
    return int(port.recv())


def child_main(rank: int, world: int, port: Any, backend: str, timeout: float,
               job: Callable[[RankContext], Any], started: float) -> None:
    """A local rank. ``port``: the store's port, or the end of a pipe it arrives on."""
    code = 1
    try:
        torch.set_num_threads(1)  # first: see [Note: starting local ranks]
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the launcher handles ^C and kills us
        base = dist.TCPStore("127.0.0.1", store_port(port, timeout), None, False, timedelta(seconds=timeout))
        code = 0 if run_rank(rank, world, rank, backend, timeout, job, base, started)[1] is None else 1
    except BaseException as exc:
        print(f"rankscope rank {rank}: cannot start: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no destructors: the forked copy of the launcher's store must not run


def watch(procs: list[Any], timeout: float, started: float, deadline: float | None = None) -> Watched:
    """Wait for every rank; see [Note: watching]. ``deadline``: host monotonic seconds."""
    pending = dict(enumerate(procs))
    out = Watched()
    first_failure: float | None = None
    while pending:
        now = time.monotonic()
        kill_at, late = None, False
        if first_failure is not None:
            kill_at = min(first_failure + min(timeout, GRACE),
                          max(first_failure + 1.0, started + timeout + GRACE - 1.0))
        if deadline is not None and (kill_at is None or deadline < kill_at):
            kill_at, late = deadline, True
        if kill_at is not None and now >= kill_at:
            for r, p in pending.items():
                p.kill()
                p.join()
                (out.late if late else out.hung).add(r)
                out.exits[r] = (p.exitcode, time.monotonic_ns())
            out.waited = now - first_failure if first_failure is not None else 0.0
            break
        wait = 0.5 if kill_at is None else max(min(0.5, kill_at - now), 0.0)
        multiprocessing.connection.wait([p.sentinel for p in pending.values()], timeout=wait)
        for r, p in list(pending.items()):
            if p.exitcode is not None:
                p.join()
                del pending[r]
                out.exits[r] = (p.exitcode, time.monotonic_ns())
                if p.exitcode != 0 and first_failure is None:
                    first_failure = time.monotonic()
    return out
