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
  simulator's FSDP2 defaults. fp32 throughout, on CPUs and GPUs alike, so compare with
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
Ranks start with the real backend's one launcher (:func:`real.launch.launch`, its [Note: launch
modes]): locally N processes on this host, forked for CPU/gloo and spawned for CUDA/NCCL (one GPU
each, so N <= ``torch.cuda.device_count()``); under ``torchrun`` (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` in the environment) this process is one rank, and rank 0 converts after the run.
``--device auto`` is CPU/gloo for a local run (the parent asks CUDA nothing before it forks:
``torch.cuda.is_available()`` in the parent breaks CUDA in forked children) and CUDA/NCCL under
torchrun when CUDA is there; ``--device cuda`` runs local ranks on GPUs. ``--timeout`` is both
the process group's timeout and the limit on the whole run, counted from the command's start: the
launcher kills what still runs then, and after a failure it gives the others a few seconds, so no
process outlives the command. Under torchrun the profile folder must be one all ranks can write.

[Note: what each rank writes]
``rank{r}.stderr`` (what a local rank wrote to stderr: the profiler's log lines),
``rank{r}.json`` (the profiler's Kineto trace, ``profile_memory=True``, ``record_shapes=True``),
``rank{r}.stats.json`` (device, backend, seconds per step, and on CUDA the caching allocator's
``max_memory_allocated`` per step and the cuBLAS workspaces it holds, see [Note: cuBLAS
workspaces]), ``flight_recorder/rank{r}.json`` (the flight recorder's dump, see
:func:`dump_flight_recorder`), and ``rank{r}.error`` with the traceback if the rank failed.

[Note: cuBLAS workspaces]
On a GPU, cuBLAS and cuBLASLt take their workspaces (one per handle and stream, sized by
``CUBLAS_WORKSPACE_CONFIG`` or torch's default) from PyTorch's caching allocator, so
``max_memory_allocated`` counts them (pytorch/pytorch#95668), while the simulator models tensors
only. After the last step each rank measures them: ``memory_allocated`` before and after
``torch._C._cuda_clearCublasWorkspaces()`` (the call torch's own test utilities free them with);
the comparison subtracts that from the measured peak and prints it (real/profile_convert.py).

Why this module passes 400 lines (by a little): what one rank does in a training run (build the
model, wrap it, profile the steps, dump the flight recorder, measure workspaces) is one job; the
launcher and the conversion already live apart (real/launch.py, real/profile_convert.py).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
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
    start_method: str | None = None  # None: real.launch.start_method (fork for CPU, spawn for CUDA)
    device: str = "auto"             # auto (local: CPU; under torchrun: CUDA when there), cpu, cuda
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
        if self.start_method == "fork" and self.device == "cuda":
            raise UsageError("--device cuda cannot fork its ranks (CUDA does not survive fork): use spawn")
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
FR_ENV = {"TORCH_FR_BUFFER_SIZE": "2000", "TORCH_NCCL_TRACE_BUFFER_SIZE": "2000"}  # the flight recorder on


def backend_for(device: str, torchrun: bool) -> str | None:
    """The launcher's backend for ``--device`` (see [Note: launching]); None: let the launcher
    choose (under torchrun: NCCL when CUDA is there)."""
    if device == "cpu":
        return "gloo"
    if device == "cuda":
        return "nccl"
    return None if torchrun else "gloo"


@dataclass(frozen=True)
class TrainJob:
    """What every rank runs (picklable, for spawned ranks): ``cfg``'s steps, files into ``outdir``.
    ``to_files``: a local rank's stderr goes to ``rank<r>.stderr`` (the profiler's chatter)."""

    cfg: TrainRunConfig
    outdir: str
    to_files: bool = True
    env: tuple = tuple(FR_ENV.items())

    def __call__(self, ctx) -> None:
        if self.to_files:
            err = os.open(os.path.join(self.outdir, f"rank{ctx.rank}.stderr"),
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(err, 2)
            os.close(err)
        try:
            run_rank(self.cfg, ctx, self.outdir)
        except BaseException as e:
            with open(os.path.join(self.outdir, f"rank{ctx.rank}.error"), "w") as f:
                f.write(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            raise


def run_rank(cfg: TrainRunConfig, ctx, outdir: str) -> None:
    """Run ``cfg.steps`` profiled steps on the rank of ``ctx`` (a real.rank.RankContext, its
    process group up) and write its files (see [Note: what each rank writes])."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    rank, nranks, device = ctx.rank, ctx.world, ctx.device
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
    dump_flight_recorder(outdir, rank, ctx.backend)
    stats = {"rank": rank, "nranks": nranks, "device": str(device), "backend": ctx.backend,
             "torch": torch.__version__, "step_seconds": step_seconds, "config": asdict(cfg)}
    if cuda:
        stats["cuda_max_memory_allocated"] = step_peaks
        stats["cuda_cublas_workspace_bytes"] = cublas_workspace_bytes(torch, device)
    with open(os.path.join(outdir, f"rank{rank}.stats.json"), "w") as f:
        json.dump(stats, f)


def cublas_workspace_bytes(torch, device) -> int | None:
    """Bytes of the caching allocator that cuBLAS workspaces hold (see [Note: cuBLAS
    workspaces]); None where this torch cannot free them."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is None:
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    clear()
    return max(int(before - torch.cuda.memory_allocated(device)), 0)


def _adam(torch, params):
    """Fused Adam where this torch has it (see [Note: the real step]), else the default."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=1e-3)


def flight_recorder_dumps(backend: str) -> tuple[str, ...]:
    """The dump functions of ``torch._C._distributed_c10d`` to try, best first. NCCL's work is in
    its own recorder, which ``_dump_nccl_trace_json`` (NCCL builds of torch >= 2.5) and the
    pickle ``_dump_nccl_trace`` (torch 2.4) dump; the generic ``_dump_fr_trace_json`` (torch
    >= 2.8, every build) holds what the other backends (gloo) record
    (torch/csrc/distributed/c10d/init.cpp). JSON first: the pickle goes through the importer's
    restricted unpickler."""
    if backend == "nccl":
        return ("_dump_nccl_trace_json", "_dump_nccl_trace", "_dump_fr_trace_json", "_dump_fr_trace")
    return ("_dump_fr_trace_json", "_dump_fr_trace")


def dump_flight_recorder(outdir: str, rank: int, backend: str, c10d=None) -> str | None:
    """Write this rank's flight-recorder dump to ``outdir/flight_recorder/rank<r>.json`` (or
    ``.pkl``); the function used, or None when this torch has none that works."""
    if c10d is None:
        try:
            import torch._C._distributed_c10d as c10d
        except ImportError:
            return None
    for name in flight_recorder_dumps(backend):
        fn = getattr(c10d, name, None)
        if fn is None:
            continue
        try:
            data = fn(True, False) if name.endswith("_json") else fn(True, True, False)
        except (RuntimeError, TypeError):
            continue
        folder = os.path.join(outdir, "flight_recorder")
        os.makedirs(folder, exist_ok=True)
        ext = "json" if name.endswith("_json") else "pkl"
        with open(os.path.join(folder, f"rank{rank}.{ext}"), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return name
    return None


# -- launching -------------------------------------------------------------------------------------
def launch(cfg: TrainRunConfig, outdir: str, started: float | None = None) -> float:
    """Run ``cfg`` on ``cfg.nranks`` local processes (see [Note: launching]); their files land in
    ``outdir``. Returns the wall seconds. Raises :class:`TrainRunError` on any failure."""
    from .launch import launch as launch_ranks

    t0 = time.perf_counter()
    started = time.monotonic() if started is None else started
    if cfg.device == "cuda":  # spawned ranks: asking CUDA in this process harms none of them
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda, but this torch sees no CUDA device (a CPU build, or no GPU)")
    got = launch_ranks(TrainJob(cfg, outdir), nranks=cfg.nranks, backend=backend_for(cfg.device, False),
                       timeout=cfg.timeout, started=started, run_seconds=cfg.timeout, method=cfg.start_method)
    if not got.ok:
        raise TrainRunError(_failure_message(got, cfg, outdir))
    return time.perf_counter() - t0


def _failure_message(got, cfg: TrainRunConfig, outdir: str) -> str:
    if got.late and len(got.late) == len(got.failures):
        return (f"the run did not finish within --timeout {cfg.timeout:g} s: ranks "
                f"{', '.join(map(str, got.late))} were still running and were killed")
    c = got.culprit
    where = os.path.join(outdir, f"rank{c.rank}.error")
    return got.failure_message() + (f" (traceback in {where})" if os.path.exists(where) else "")


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process was started by torchrun, else None."""
    from .launch import in_torchrun

    if in_torchrun() and "MASTER_ADDR" in os.environ:
        env = os.environ
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    return None


def run_torchrun_rank(cfg: TrainRunConfig, outdir: str, started: float | None = None) -> bool:
    """Run this torchrun-started process as its rank; True on rank 0 (which converts)."""
    from .launch import launch as launch_ranks

    rank, world, _ = torchrun_env()  # type: ignore[misc]
    if world != cfg.nranks:
        raise UsageError(f"--ranks {cfg.nranks} but torchrun started {world} processes")
    os.makedirs(outdir, exist_ok=True)
    got = launch_ranks(TrainJob(cfg, outdir, to_files=False), nranks=world, backend=backend_for(cfg.device, True),
                       timeout=cfg.timeout, started=started)
    if not got.ok:
        raise TrainRunError(_failure_message(got, cfg, outdir))
    return rank == 0
