"""Real data-parallel training steps, DDP or FSDP2, under torch.profiler: gloo on CPU, NCCL on GPUs.

[Note: the real model]
``mlp:LxW`` is what :func:`simulator.models.parse_model` describes: L units, each one
``Linear(W, W)`` with bias (its weight (W, W) and bias (W,) are the unit's two parameter tensors),
with a ReLU after every unit but the last (no parameters, so it changes neither the collectives
nor the parameter memory; each unit keeps one (B, W) tensor for backward either way). Unit i is
the attribute ``layer{i}``, so FSDP's labels read ``FSDP::pre_forward (layer0)`` and the spans
match the simulator's ``fwd layer0``. Micro-batch B: the simulator's default (32 for an MLP) unless
given. Input: ``randn(B, W)`` seeded by rank and step; loss: ``mean(y**2)``.

[Note: the real step]
- DDP: ``DistributedDataParallel(bucket_cap_mb=25 explicitly, gradient_as_bucket_view=True)``.
  Explicit, because torch gives the *default* a 1 MiB first bucket when it rebuilds buckets after
  the first iteration; the simulator's gradients are bucket views (``simulator/training.py``).
- FSDP2: ``fully_shard`` on every unit, then on the root (which holds no parameters, so it issues
  no collective of its own); ``reshard_after_forward=True``, backward prefetch of one unit: the
  simulator's FSDP2 defaults. fp32 throughout (a plain CPU run), so compare with
  ``TrainConfig(precision="fp32")``; or, with ``param_dtype="bf16"``, FSDP2's
  ``MixedPrecisionPolicy(param_dtype=torch.bfloat16)`` on every unit and the root (fp32 shards,
  gradients and Adam state; bf16 all-gathers, compute and reduce-scatters, which gloo supports),
  compared with ``TrainConfig(precision="bf16", master_weights="param")``.
- ``checkpointing="full"``: each unit's computation runs under ``torch.utils.checkpoint.checkpoint
  (use_reentrant=False)`` inside FSDP's hooks (so its recomputation issues no collective); the
  forward span is not recorded again while backward recomputes it, so ``rankscope::bwd layerI``
  includes the recomputation, as the simulator's ``bwd layerI`` does.
- Adam (lr 1e-3), ``fused=True`` where the device supports it: the fused kernel updates in place,
  while the for-loop Adam makes two parameter-sized temporaries per tensor (``sqrt`` then the
  division), 8 MiB for a 1024x1024 weight, which the simulator does not model.
  ``zero_grad(set_to_none=False)``: gradients stay allocated between steps, as the simulator's
  persistent ``grad`` buffers do.
- Each step is a ``ProfilerStep#k`` annotation (HTA's iteration marker); inside it the ranks record
  ``rankscope::fwd layerI`` around each unit's own computation (inside FSDP's hooks, so the
  all-gather wait is not counted as compute), ``rankscope::bwd layerI`` from when autograd reaches
  the unit's output to when the unit's first op (its Linear) has its gradients, and
  ``rankscope::optimizer step``. :mod:`simulator.interop.kineto_import` reads these.

[Note: launching]
The parent starts N processes (real.launch.start_ranks: forked ones before the store exists), then
creates a ``TCPStore`` on port 0 (the OS picks a free port: no race between runs) and sends them
its port; each sets ``torch.set_num_threads(1)`` first (N ranks share the cores; fork is
also unsafe without it), connects to the store and calls ``init_process_group`` with the run's
timeout, so a rank that stops makes the others fail within that time instead of 30 minutes. The
start method is ``fork`` on Linux (each rank would otherwise spend 3-4 s importing torch again),
``spawn`` elsewhere. The parent waits until the deadline; after the first failure it gives the
others a few seconds, then kills what is left: no process outlives :func:`launch`.
Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) this process is one
rank: NCCL on ``cuda:LOCAL_RANK`` when CUDA is there, gloo otherwise; the profile folder must then be
one all ranks can write (a path on the node), and rank 0 converts after a barrier.

[Note: what each rank writes]
``rank{r}.stderr`` (what a local rank wrote to stderr: the profiler's log lines),
``rank{r}.json`` (the profiler's Kineto trace, ``profile_memory=True``, ``record_shapes=True``),
``rank{r}.stats.json`` (device, backend, seconds per step, and on CUDA the caching allocator's
``max_memory_allocated`` per step), ``flight_recorder/rank{r}.json`` (the flight recorder's JSON
dump, when this torch has one), and ``rank{r}.error`` with the traceback if the rank failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from rankscope.simulator.errors import RankscopeError, UsageError
from rankscope.simulator.models import Model, parse_model

STRATEGIES = ("ddp", "fsdp")


class TrainRunError(RankscopeError):
    """A real training run that failed: a rank raised, timed out, or could not start."""


@dataclass(frozen=True)
class TrainRunConfig:
    """One real run (see [Note: the real step])."""

    model: str = "mlp:4x1024"
    strategy: str = "ddp"            # ddp | fsdp (FSDP2)
    nranks: int = 2
    steps: int = 3
    micro_batch: int | None = None   # None: the simulator's default for the model
    bucket_mb: float = 25.0          # DDP bucket_cap_mb, passed explicitly
    timeout: float = 120.0           # seconds for the whole run, and init_process_group's timeout
    seed: int = 0
    start_method: str | None = None  # None: fork on Linux, spawn elsewhere
    device: str = "auto"             # auto (CUDA when there, else CPU), cpu, cuda
    checkpointing: str = "none"      # none | full (torch.utils.checkpoint on every unit)
    param_dtype: str = "fp32"        # fp32 | bf16 (FSDP2's MixedPrecisionPolicy)

    def __post_init__(self) -> None:
        s = self.strategy.lower()
        if s not in STRATEGIES:
            raise UsageError(f"unknown strategy {self.strategy!r} for a real run: choose ddp or fsdp")
        object.__setattr__(self, "strategy", s)
        if self.nranks < 1:
            raise UsageError(f"--ranks must be >= 1, got {self.nranks}")
        if self.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {self.steps}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.bucket_mb <= 0:
            raise UsageError(f"--bucket-mb must be > 0, got {self.bucket_mb}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"unknown device {self.device!r}: auto, cpu or cuda")
        if self.checkpointing not in ("none", "full"):
            raise UsageError(f"checkpointing for a real run is none or full, got {self.checkpointing!r} "
                             "(an MLP has no attention core to recompute selectively)")
        if self.param_dtype not in ("fp32", "bf16"):
            raise UsageError(f"unknown parameter dtype {self.param_dtype!r}: fp32 or bf16")
        if self.param_dtype == "bf16" and s != "fsdp":
            raise UsageError("--param-dtype bf16 is FSDP2's MixedPrecisionPolicy: use --strategy fsdp")
        if self.start_method not in (None, "fork", "forkserver", "spawn"):
            raise UsageError(f"unknown start method {self.start_method!r}: fork, forkserver or spawn")
        mlp_model(self.model, self.micro_batch)

    @property
    def sim_model(self) -> Model:
        return mlp_model(self.model, self.micro_batch)


def mlp_model(spec: str, micro_batch: int | None = None) -> Model:
    """The simulator's description of the model; only ``mlp:LxW`` can be built for real."""
    m = parse_model(spec, micro_batch)
    if not m.name.startswith("mlp:"):
        raise UsageError(f"real runs build mlp:LxW models only, got {spec!r}")
    return m


# -- the model (torch imported inside functions: the CLI imports this module cheaply) ------------
_OPEN_SPANS: dict[str, Any] = {}


def build_model(model: Model, checkpointing: str = "none"):
    """The torch module of ``model`` (see [Note: the real model]); ``checkpointing="full"`` runs
    each unit under ``torch.utils.checkpoint`` (see [Note: the real step])."""
    import torch
    from torch import nn
    from torch.profiler import record_function
    from torch.utils.checkpoint import checkpoint

    def _open(label: str) -> None:
        span = record_function(label)
        span.__enter__()
        _OPEN_SPANS[label] = span

    def _close(label: str) -> None:
        span = _OPEN_SPANS.pop(label, None)
        if span is not None:
            span.__exit__(None, None, None)

    class Unit(nn.Module):
        def __init__(self, name: str, width: int, relu: bool):
            super().__init__()
            self.unit_name, self.relu = name, relu
            self.linear = nn.Linear(width, width)

        def compute(self, x):
            if torch._C._current_graph_task_id() != -1:  # backward recomputing a checkpoint
                h = self.linear(x)
                return (torch.relu(h) if self.relu else h), h
            with record_function(f"rankscope::fwd {self.unit_name}"):
                h = self.linear(x)                       # (B, W)
                y = torch.relu(h) if self.relu else h
            return y, h

        def forward(self, x):
            if checkpointing == "full" and torch.is_grad_enabled():
                y, h = checkpoint(self.compute, x, use_reentrant=False)
            else:
                y, h = self.compute(x)
            if torch.is_grad_enabled() and h.grad_fn is not None:
                # the span opens before autograd runs the unit's last node and closes after its
                # first (the Linear's) has run; node hooks, so the output is no view of anything
                label = f"rankscope::bwd {self.unit_name}"
                y.grad_fn.register_prehook(lambda grad_out, label=label: _open(label))
                h.grad_fn.register_hook(lambda grad_in, grad_out, label=label: _close(label))
            return y

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.names = []
            for i, u in enumerate(model.units):
                w = u.shapes[0][0]
                self.add_module(u.name, Unit(u.name, w, relu=i < len(model.units) - 1))
                self.names.append(u.name)

        def forward(self, x):
            for name in self.names:
                x = getattr(self, name)(x)
            return x

    return MLP()


# -- one rank --------------------------------------------------------------------------------------
def _device_and_backend(local_rank: int, want: str):
    import torch

    if want == "cuda" and not torch.cuda.is_available():
        raise TrainRunError("--device cuda, but this torch sees no CUDA device")
    if want != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank), "cpu:gloo,cuda:nccl"
    return torch.device("cpu"), "gloo"


def run_rank(cfg: TrainRunConfig, rank: int, nranks: int, outdir: str, *, store=None,
             local_rank: int | None = None) -> None:
    """Run ``cfg.steps`` profiled steps as ``rank`` and write its files (see [Note: what each rank
    writes]). ``store``: a connected TCPStore, or None to initialise from the environment."""
    import torch
    import torch.distributed as dist
    from torch.profiler import ProfilerActivity, profile, record_function

    local_rank = rank if local_rank is None else local_rank
    device, backend = _device_and_backend(local_rank, cfg.device)
    timeout = timedelta(seconds=cfg.timeout)
    kw = {"store": store} if store is not None else {"init_method": "env://"}
    if device.type == "cuda":
        kw["device_id"] = device
    dist.init_process_group(backend, rank=rank, world_size=nranks, timeout=timeout, **kw)
    model = cfg.sim_model
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step_seconds, step_peaks = [], []
    # the profiler starts before the model exists, so parameters count in its memory timeline
    with profile(activities=activities, profile_memory=True, record_shapes=True) as prof:
        torch.manual_seed(cfg.seed)
        net = build_model(model, cfg.checkpointing).to(device)
        if cfg.strategy == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mesh = init_device_mesh(device.type, (nranks,))
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16) if cfg.param_dtype == "bf16" else MixedPrecisionPolicy()
            for name in net.names:
                fully_shard(getattr(net, name), mesh=mesh, mp_policy=mp)
            fully_shard(net, mesh=mesh, mp_policy=mp)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(net, device_ids=[device.index] if cuda else None, bucket_cap_mb=cfg.bucket_mb,
                      gradient_as_bucket_view=True)
        opt = _adam(torch, net.parameters())
        width = model.units[0].shapes[0][0]
        gen = torch.Generator(device=device)
        for k in range(cfg.steps):
            gen.manual_seed(cfg.seed * 1_000_003 + rank * 1009 + k)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            with record_function(f"ProfilerStep#{k}"):
                x = torch.randn(model.micro_batch, width, generator=gen, device=device)  # (B, W)
                loss = net(x).square().mean()
                loss.backward()
                with record_function("rankscope::optimizer step"):
                    opt.step()
                opt.zero_grad(set_to_none=False)
            if cuda:
                torch.cuda.synchronize(device)
                step_peaks.append(int(torch.cuda.max_memory_allocated(device)))
            step_seconds.append(time.perf_counter() - t)
    prof.export_chrome_trace(os.path.join(outdir, f"rank{rank}.json"))
    _dump_flight_recorder(outdir, rank)
    stats = {"rank": rank, "nranks": nranks, "device": str(device), "backend": backend,
             "torch": torch.__version__, "step_seconds": step_seconds, "config": asdict(cfg)}
    if cuda:
        stats["cuda_max_memory_allocated"] = step_peaks
    with open(os.path.join(outdir, f"rank{rank}.stats.json"), "w") as f:
        json.dump(stats, f)
    dist.barrier()
    dist.destroy_process_group()


def _adam(torch, params):
    """Fused Adam where this torch has it (see [Note: the real step]), else the default."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=1e-3)


def _dump_flight_recorder(outdir: str, rank: int) -> None:
    try:
        import torch._C._distributed_c10d as c10d

        data = c10d._dump_fr_trace_json(True, False)
    except (ImportError, AttributeError, RuntimeError):
        return
    folder = os.path.join(outdir, "flight_recorder")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"rank{rank}.json"), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _child(cfg: TrainRunConfig, rank: int, port, outdir: str) -> None:
    """A launched rank: one compute thread, connect, run; the traceback to a file on failure.
    ``port``: the store's, or a pipe that delivers it (real.launch.start_ranks)."""
    try:
        # the profiler's own chatter (libkineto's "profiler_start"/"profiler_stop" lines) goes to
        # rank<r>.stderr in the run's folder, not to the user's terminal
        err = os.open(os.path.join(outdir, f"rank{rank}.stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err, 2)
        os.close(err)
        import torch

        torch.set_num_threads(1)
        import torch.distributed as dist

        from .launch import store_port

        store = dist.TCPStore("127.0.0.1", store_port(port, cfg.timeout), world_size=None, is_master=False,
                              timeout=timedelta(seconds=cfg.timeout))
        run_rank(cfg, rank, cfg.nranks, outdir, store=store)
    except BaseException as e:  # noqa: BLE001 - any failure is reported through the file
        with open(os.path.join(outdir, f"rank{rank}.error"), "w") as f:
            f.write(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        sys.stdout.flush()
        os._exit(1)


# -- launching -------------------------------------------------------------------------------------
def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process was started by torchrun, else None."""
    env = os.environ
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")) and "MASTER_ADDR" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    return None


def launch(cfg: TrainRunConfig, outdir: str) -> float:
    """Run ``cfg`` on ``cfg.nranks`` local processes (see [Note: launching]); their files land in
    ``outdir``. Returns the wall seconds. Raises :class:`TrainRunError` on any failure."""
    import multiprocessing as mp

    from .launch import start_ranks

    method = cfg.start_method or ("fork" if sys.platform.startswith("linux") else "spawn")
    t0 = time.perf_counter()
    procs: list = []
    store = None
    try:
        store = start_ranks(mp.get_context(method), procs, cfg.nranks, cfg.timeout,
                            lambda r, port: (cfg, r, port, outdir), _child)
        deadline = time.monotonic() + cfg.timeout
        failed_at = None
        while any(p.is_alive() for p in procs):
            now = time.monotonic()
            if failed_at is None and any(p.exitcode not in (None, 0) for p in procs):
                failed_at = now
            if now > deadline or (failed_at is not None and now - failed_at > 5.0):
                break
            time.sleep(0.05)
        alive = [r for r, p in enumerate(procs) if p.is_alive()]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(timeout=10)
        del store
    errors = {}
    for r in range(cfg.nranks):
        path = os.path.join(outdir, f"rank{r}.error")
        if os.path.exists(path):
            with open(path) as f:
                errors[r] = f.readline().strip()
    if errors:
        r0 = min(errors)
        raise TrainRunError(f"rank {r0} failed: {errors[r0]}" +
                            (f" (ranks {', '.join(map(str, sorted(errors)))} failed; full tracebacks in "
                             f"{outdir}/rank*.error)" if len(errors) > 1 else f" (traceback in {outdir}/rank{r0}.error)"))
    if alive:
        raise TrainRunError(f"the run did not finish within --timeout {cfg.timeout:g} s: ranks "
                            f"{', '.join(map(str, alive))} were still running and were killed")
    bad = [r for r, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        raise TrainRunError(f"rank {bad[0]} exited with code {procs[bad[0]].exitcode} without a "
                            f"Python error (killed, or torch aborted: e.g. mismatched shapes)")
    return time.perf_counter() - t0


def run_torchrun_rank(cfg: TrainRunConfig, outdir: str) -> bool:
    """Run this torchrun-started process as its rank; True on rank 0 (which converts)."""
    rank, world, local = torchrun_env()  # type: ignore[misc]
    if world != cfg.nranks:
        raise UsageError(f"--ranks {cfg.nranks} but torchrun started {world} processes")
    os.makedirs(outdir, exist_ok=True)
    try:
        run_rank(cfg, rank, world, outdir, local_rank=local)
    except Exception as e:  # one line here; the traceback in rank<r>.error, as for local ranks
        with open(os.path.join(outdir, f"rank{rank}.error"), "w") as f:
            f.write(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise TrainRunError(f"rank {rank} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                            f"(traceback in {outdir}/rank{rank}.error)") from None
    return rank == 0
