"""Start N local ranks, or join the torchrun job this process is part of; say who failed and why.

[Note: launch modes]
*Local* (the default): this process creates a TCPStore on port 0 (the OS picks a free port, so
there is no race between choosing and binding it; creation is retried if it fails) and starts N
rank processes that connect to ``store.port`` and call ``init_process_group`` with that store.
Ranks are forked (0.1-0.7 s for N = 2..8 against 5-20 s for spawn, TORCH_NOTES.md); each calls
``torch.set_num_threads(1)`` first, which keeps a fork of a process that already ran a threaded
torch op from hanging, and gives each rank one compute thread. All ranks are forked *before* the
store is created and receive its port through a pipe: forking while the store's server thread
accepts the first ranks' connections left a later rank, now and then, deadlocked inside its own
``TCPStore`` constructor (seen here: 2 launches in 40 of 4 ranks, the last rank, stuck until the
timeout killed it). NCCL ranks are spawned instead
(CUDA does not survive fork), one GPU each, so N <= the GPUs here.
``RANKSCOPE_START_METHOD=spawn|forkserver|fork`` overrides the choice.

*torchrun*: when RANK, WORLD_SIZE and LOCAL_RANK are set, this process is one rank of that job
(one or many nodes): ``init_process_group`` from the environment, device ``cuda:LOCAL_RANK`` and
NCCL when CUDA is available (``cpu:gloo,cuda:nccl``, so CPU tensors still go over gloo).

A job is a callable run on every rank with a :class:`RankContext`; what it returns must be JSON
(it travels through the store: no pickle). Ranks also *publish* small JSON values (errors, partial
records) in the store under ``name/rank``, which outlives a broken process group.

[Note: failures]
A rank that raises publishes its error and exits 1; its peers see their sockets close and fail
within about a second (gloo: "Connection closed by peer"); a rank that hangs is caught by the
process group's ``timeout``. The launcher waits for every rank; once one has failed, any still
running ``timeout`` seconds later is killed (SIGKILL by pid) and reaped, so nothing is left behind.
The *culprit* is the earliest failure that is not a reaction to another one: a rank killed by a
signal, or one whose error is not a communication error; failing that, a rank that hung (its
peers timed out waiting for it, and the launcher killed it); peers' "connection closed" and
timeouts come last.

Under torchrun the agent, not this module, stops the job: as soon as one rank exits it sends
SIGTERM to the others (SIGKILL 30 s later). Rank 0 ignores SIGTERM so that it can still gather
what the others published and write the partial trace: it is bound to fail on its own within
about a second (its peers' sockets close) or at ``timeout``.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from rankscope.simulator.errors import UsageError

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

    @property
    def wait_timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout)

    def publish(self, name: str, obj: Any) -> None:
        _publish(self.store, name, self.rank, obj)

    def fetch(self, name: str, rank: int, wait: float = 0.0) -> Any:
        return _fetch(self.store, name, rank, wait)


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
    """gloo locally, NCCL under torchrun when CUDA is available; ``requested`` overrides."""
    if requested not in (None, "gloo", "nccl"):
        raise UsageError(f"unknown backend {requested!r}; choose gloo or nccl")
    backend = requested or ("nccl" if torchrun and torch.cuda.is_available() else "gloo")
    if backend == "nccl" and not torch.cuda.is_available():
        raise UsageError("--backend nccl needs CUDA, which this torch build or machine lacks; use gloo")
    return backend


def launch(job: Callable[[RankContext], Any], *, nranks: int | None, backend: str | None = None,
           timeout: float = 60.0, collect: tuple[str, ...] = ()) -> Launched:
    """Run ``job`` on every rank: N local processes, or this process as one torchrun rank."""
    if timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
    if in_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if nranks not in (None, world):
            raise UsageError(f"--ranks {nranks} disagrees with torchrun's WORLD_SIZE={world}; drop --ranks")
        return _join(job, choose_backend(backend, True), timeout, collect)
    if nranks is None or nranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {nranks}")
    backend = choose_backend(backend, False)
    if backend == "nccl" and nranks > torch.cuda.device_count():
        raise UsageError(f"NCCL needs one GPU per rank: {nranks} ranks, {torch.cuda.device_count()} GPUs here")
    return _launch_local(job, nranks, backend, timeout, collect)


# -- store helpers ----------------------------------------------------------------------------------

def _publish(store: Any, name: str, rank: int, obj: Any) -> None:
    store.set(f"{name}/{rank}", json.dumps(obj))


def _fetch(store: Any, name: str, rank: int, wait: float = 0.0) -> Any:
    key, deadline = f"{name}/{rank}", time.monotonic() + wait
    while True:
        if store.check([key]):
            return json.loads(store.get(key))
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _server_store(timeout: float, tries: int = 3) -> Any:
    for attempt in range(tries):
        try:
            return dist.TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=timeout),
                                 wait_for_workers=False)
        except (RuntimeError, OSError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


# -- one rank ---------------------------------------------------------------------------------------

def _error_record(exc: BaseException) -> dict[str, Any]:
    msg = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ""
    comm = isinstance(exc, RuntimeError) and (isinstance(exc, getattr(dist, "DistError", ()))
                                              or bool(_COMM.search(msg)))
    return {"type": type(exc).__name__, "message": msg, "comm": comm, "t_ns": time.monotonic_ns(),
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def _run_rank(rank: int, world: int, local_rank: int, backend: str, timeout: float,
              job: Callable[[RankContext], Any], base_store: Any = None
              ) -> tuple[Any, dict | None, Any]:
    """Init the process group, run the job, publish its result or error: (result, error, store)."""
    store = None
    try:
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
        ctx = RankContext(rank, world, local_rank, backend, device, timeout, store)
        result = job(ctx)
        _publish(store, "result", rank, result)
        dist.barrier()
        dist.destroy_process_group()
        return result, None, store
    except BaseException as exc:  # everything, KeyboardInterrupt included, is reported
        err = _error_record(exc)
        try:
            if store is None:
                raise RuntimeError("no store")
            _publish(store, "error", rank, err)
        except Exception:
            print(f"rankscope rank {rank}: {err['type']}: {err['message']}", file=sys.stderr)
        if os.environ.get("RANKSCOPE_DEBUG"):
            print(f"--- rank {rank} ---\n{err['traceback']}", file=sys.stderr)
        return None, err, store


def _child_main(rank: int, world: int, port: Any, backend: str, timeout: float,
                job: Callable[[RankContext], Any]) -> None:
    """A local rank. ``port``: the store's port, or the end of a pipe it arrives on (forked ranks
    start before the store exists: see [Note: launch modes])."""
    code = 1
    try:
        torch.set_num_threads(1)  # first: see [Note: launch modes]
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the launcher handles ^C and kills us
        base = dist.TCPStore("127.0.0.1", store_port(port, timeout), None, False, timedelta(seconds=timeout))
        code = 0 if _run_rank(rank, world, rank, backend, timeout, job, base)[1] is None else 1
    except BaseException as exc:
        print(f"rankscope rank {rank}: cannot start: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no destructors: the forked copy of the launcher's store must not run


# -- the launchers ----------------------------------------------------------------------------------

def _join(job: Callable[[RankContext], Any], backend: str, timeout: float,
          collect: tuple[str, ...]) -> Launched:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if rank == 0:  # see [Note: failures]: rank 0 outlives torchrun's SIGTERM to report
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result, err, store = _run_rank(rank, world, int(os.environ["LOCAL_RANK"]), backend, timeout, job)
    out = Launched("torchrun", world, backend, rank, results={rank: result})
    if err is not None:
        out.failures.append(RankFailure(rank, f"{err['type']}: {err['message']}", not err["comm"],
                                        err["t_ns"]))
        if rank == 0 and store is not None:  # best effort: what the others managed to publish
            deadline = time.monotonic() + min(timeout, 5.0)
            for r in range(1, world):
                left = max(0.0, deadline - time.monotonic())
                e = _fetch(store, "error", r, left)
                if e is not None:
                    out.failures.append(RankFailure(r, f"{e['type']}: {e['message']}", not e["comm"],
                                                    e["t_ns"]))
            out.published = {n: {r: v for r in range(world) if (v := _fetch(store, n, r)) is not None}
                             for n in collect}
    return out


def start_ranks(mp: Any, procs: list[Any], nranks: int, timeout: float,
                args_of: Callable[[int, Any], tuple], target: Callable[..., None]) -> Any:
    """Start ``target(*args_of(rank, port))`` in ``nranks`` processes of the multiprocessing
    context ``mp`` (appended to ``procs`` as they start) and return the server TCPStore they
    connect to. Forked ranks are all started before the store exists and get ``port`` as the read
    end of a pipe that delivers the port number (see [Note: launch modes]); ``target`` resolves
    it with :func:`store_port`."""
    pipes = [mp.Pipe(duplex=False) for _ in range(nranks)] if mp.get_start_method() == "fork" else None
    base = None if pipes else _server_store(timeout)
    for r in range(nranks):
        port = pipes[r][0] if pipes else base.port
        p = mp.Process(target=target, args=args_of(r, port), name=f"rankscope-rank{r}", daemon=True)
        p.start()
        procs.append(p)
    if pipes:
        base = _server_store(timeout)
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


def _launch_local(job: Callable[[RankContext], Any], nranks: int, backend: str, timeout: float,
                  collect: tuple[str, ...]) -> Launched:
    method = os.environ.get("RANKSCOPE_START_METHOD") or ("spawn" if backend == "nccl" else "fork")
    mp = multiprocessing.get_context(method)
    procs: list[Any] = []
    base = pub = None
    try:
        base = start_ranks(mp, procs, nranks, timeout,
                           lambda r, port: (r, nranks, port, backend, timeout, job), _child_main)
        pub = dist.PrefixStore(PREFIX, base)
        exits, killed = _watch(procs, timeout)
        out = Launched("local", nranks, backend, None)
        for r in range(nranks):
            code, t_ns = exits[r]
            err = _fetch(pub, "error", r)
            if r in killed:
                out.failures.append(RankFailure(r, f"hung: still running {min(timeout, GRACE):g} s after "
                                                   f"the first failure, killed by the launcher", False, t_ns, True))
            elif code < 0:
                name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
                out.failures.append(RankFailure(r, f"killed by signal {name}", True, t_ns))
            elif err is not None:
                out.failures.append(RankFailure(r, f"{err['type']}: {err['message']}", not err["comm"],
                                                err["t_ns"]))
            elif code != 0:
                out.failures.append(RankFailure(r, f"exited with code {code}", True, t_ns))
            else:
                out.results[r] = _fetch(pub, "result", r)
        out.published = {n: {r: v for r in range(nranks)
                             if (v := _fetch(pub, n, r)) is not None} for n in collect}
        return out
    finally:
        for p in procs:  # only on an exception (^C) is any still alive here
            if p.exitcode is None:
                p.kill()
            p.join()
        del pub, base


GRACE = 5.0  # seconds the other ranks get, after one failed, to fail on their own and report


def _watch(procs: list[Any], timeout: float) -> tuple[dict[int, tuple[int, float]], set[int]]:
    """Wait for every rank; once one failed, kill those still running ``min(timeout, GRACE)`` s
    later: its peers have failed by then within a second (their sockets closed) or at the process
    group's timeout (they waited for a rank that hangs), so what still runs is that rank.
    Returns each rank's (exit code, host ns when seen) and the ranks the launcher killed."""
    pending = dict(enumerate(procs))
    exits: dict[int, tuple[int, float]] = {}
    killed: set[int] = set()
    first_failure: float | None = None
    while pending:
        wait = 0.5
        if first_failure is not None:
            left = first_failure + min(timeout, GRACE) - time.monotonic()
            if left <= 0:
                for r, p in pending.items():
                    p.kill()
                    p.join()
                    killed.add(r)
                    exits[r] = (p.exitcode, time.monotonic_ns())
                break
            wait = min(wait, left)
        multiprocessing.connection.wait([p.sentinel for p in pending.values()], timeout=wait)
        for r, p in list(pending.items()):
            if p.exitcode is not None:
                p.join()
                del pending[r]
                exits[r] = (p.exitcode, time.monotonic_ns())
                if p.exitcode != 0 and first_failure is None:
                    first_failure = time.monotonic()
    return exits, killed
