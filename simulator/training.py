"""One data-parallel training step as a program: DDP, ZeRO-1, ZeRO-2 and FSDP (ZeRO-3).

[Note: templates]
Every rank of a data-parallel step runs the same ops, so a strategy is compiled once, for one rank,
into a *template* (a list of ops whose deps point to earlier template ops), then replicated on N
ranks with numpy: template op i on rank r is op i·N + r, at step i. Llama-2-70B under ZeRO-3 on
1024 ranks is ~1,100 template ops, ~1.1M program ops. Collectives are COLLECTIVE macro ops (see
[Note: program]); all ranks' copies of template op i form one collective.

[Note: buffers and categories]
Each buffer is allocated by an ALLOC op and, if transient, freed by a FREE op; its ``category``
says what it holds (the names of ``simulator.memory.CATEGORIES``, the one vocabulary):
  param           persistent parameters (full for DDP/ZeRO-1/2, the rank's shard for ZeRO-3)
  param_unsharded a unit's all-gathered parameters (ZeRO-3), alive from its all-gather to its reshard
  grad            persistent gradients (full for DDP/ZeRO-1, the shard for ZeRO-2/3)
  grad_unsharded  transient full-size gradients: ZeRO-2's buckets, ZeRO-3's unit gradients
  optim           optimizer states: fp32 master weights and Adam's two moments (12 B/param in
                  bf16 mixed precision; Adam's 8 B/param in fp32, whose parameters are the master)
  activation      what a unit's forward keeps for its backward
*Model state* = param + grad + optim: the ZeRO paper's (2 + 2 + K)Ψ accounting (Rajbhandari et
al., SC'20, section 3), which this module reproduces from the timeline, not from the formula.

Modelling choices: DDP's gradients are its buckets' views (``gradient_as_bucket_view=True``), and
its buckets are filled in reverse layer order, all-reduced when full (25 MiB default,
``bucket_cap_mb=25``). ZeRO-1/2 reduce-scatter the same buckets and all-gather the updated bf16
parameters after the optimizer step, bucketed the same way; their partitions are one flat buffer
padded to a multiple of N (as DeepSpeed). FSDP1 pads each unit's flat parameter to a multiple of N;
FSDP2 pads dim 0 of every parameter to a multiple of N; the padding bytes are reported. Streams:
see [Note: collective streams]. At most two gradient buffers are in flight:
ZeRO-2's bucket k and FSDP's unit gradient k wait for k-2 to be reduced and freed (DeepSpeed's
double-buffered reduction; FSDP2 keeps one reduce-scatter input alive), else a slow network would
let backward run ahead and hold every gradient at once.

[Note: collective streams]
Each collective records the CUDA stream its framework issues it on (``meta["streams"]``,
``meta["coll_stream"]``) and its communicator (``meta["coll_comm"]``); the engine turns them into
comm lanes (simulator/engine_share.py). FSDP2 (torch/distributed/fsdp/_fully_shard/
_fsdp_param_group.py, ``FSDPCommContext.lazy_init``) all-gathers on ``all_gather_stream`` (the
implicit prefetches of forward and pre-backward, ``get_all_gather_streams``; its copy-in stream
only copies) and reduce-scatters on ``reduce_scatter_stream`` (``post_backward`` ->
``foreach_reduce``); ``all_reduce_stream`` is HSDP's, not modelled. FSDP1 alike. DDP's reducer
all-reduces its buckets asynchronously on the process group's NCCL stream: one stream. ZeRO-1/2
as DeepSpeed (deepspeed/runtime/zero/stage_1_and_2.py): reduce-scatters on its
``reduction_stream`` (``overlap_comm``), and (our decision, as its ``step`` does) all-gathers the
updated partitions after the optimizer step on the compute stream. Every strategy issues all its
collectives on one data-parallel process group, one NCCL communicator, and NCCL serialises a
communicator's collectives across streams (NVIDIA/nccl#574): by default (``communicators="one"``)
the streams are recorded but the collectives still run one at a time, in the order they become
ready, as the single comm lane always had them. ``communicators="per-stream"`` gives each stream
its own process group (e.g. FSDP2 with a custom all-gather on a second group): then an all-gather
and a reduce-scatter run at once and share the links (processor sharing, [Note: sharing links
between concurrent collectives] in simulator/engine_share.py).

Length: this module is the strategies' template compiler, one op list written by one set of
helpers for all four strategies (about 400 lines); the model shapes, memory timeline, rank
speeds and NCCL timing live in their own modules, and splitting the strategies apart would repeat
the buffer and stream bookkeeping they share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .memory import MODEL_STATE
from .models import Device, Model
from .program import Buffer, CollKind, Init, OpKind, Phase, Program
from .train_comm import nccl_collective_seconds as nccl_collective_seconds
from .train_comm import nccl_collective_times as nccl_collective_times

STRATEGIES = ("ddp", "zero1", "zero2", "zero3")
ALIASES = {"fsdp": "zero3", "zero-1": "zero1", "zero-2": "zero2", "zero-3": "zero3"}


CHECKPOINTING = ("none", "selective", "full")
COMMUNICATORS = ("one", "per-stream")
STREAMS = ("all_gather", "reduce_scatter", "all_reduce", "compute")  # names in meta["streams"]
DTYPE_BYTES = {"bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class TrainConfig:
    """How one step is run. ``bucket_bytes`` is DDP's bucket_cap_mb (25 MiB by default).

    Precision (see [Note: mixed precision]): ``precision`` is the parameters' compute dtype (FSDP2's
    ``param_dtype``); ``reduce_dtype`` the gradient collectives' (None: the gradients' own dtype);
    ``master_weights`` where the fp32 master copy lives; ``fp32_grad_accum`` an fp32 gradient
    accumulator beside the 16-bit gradients. ``grad_accum`` micro-batches per step, reduced once
    on the last (``grad_sync="last"``) or after each (``"every"``); see [Note: gradient accumulation].
    ``checkpointing`` and ``attention``: what a layer keeps for backward (simulator/models.py)."""

    strategy: str = "zero3"
    precision: str = "bf16"                 # bf16 mixed precision, or fp32
    bucket_bytes: int = 25 << 20
    fsdp_version: int = 2                   # 1: flat parameter per unit; 2: per-parameter dim-0
    reshard_after_forward: bool = True
    forward_prefetch: bool = False
    backward_prefetch: bool = True
    checkpointing: str = "none"             # none | selective | full (Korthikanti et al. 2022)
    attention: str = "flash"                # flash (no s² tensor kept) | eager
    reduce_dtype: str | None = None
    master_weights: str = "optimizer"       # optimizer (DeepSpeed/Megatron) | param (FSDP2, autocast)
    fp32_grad_accum: bool = False
    grad_accum: int = 1
    grad_sync: str | None = None            # last | every; None: last, but every for ZeRO-2
    communicators: str = "one"              # one | per-stream: see [Note: collective streams]

    def __post_init__(self) -> None:
        s = ALIASES.get(self.strategy.lower(), self.strategy.lower())
        if s not in STRATEGIES:
            raise UsageError(f"unknown strategy {self.strategy!r}: choose from {', '.join(STRATEGIES)} (or fsdp)")
        object.__setattr__(self, "strategy", s)
        if self.precision not in ("bf16", "fp32"):
            raise UsageError(f"precision must be bf16 or fp32, got {self.precision!r}")
        if self.fsdp_version not in (1, 2):
            raise UsageError(f"FSDP version must be 1 or 2, got {self.fsdp_version}")
        if self.bucket_bytes < 1:
            raise UsageError(f"bucket size must be >= 1 byte, got {self.bucket_bytes}")
        if self.checkpointing not in CHECKPOINTING:
            raise UsageError(f"checkpointing must be one of {', '.join(CHECKPOINTING)}, got {self.checkpointing!r}")
        if self.attention not in ("flash", "eager"):
            raise UsageError(f"attention must be flash or eager, got {self.attention!r}")
        if self.reduce_dtype not in (None, "bf16", "fp32"):
            raise UsageError(f"reduce dtype must be bf16 or fp32, got {self.reduce_dtype!r}")
        if self.master_weights not in ("optimizer", "param"):
            raise UsageError(f"master weights must be 'optimizer' or 'param', got {self.master_weights!r}")
        if self.master_weights == "param" and s in ("zero1", "zero2"):
            raise UsageError(f"{s} keeps its fp32 master weights in the optimizer's shard: "
                             "--master-weights param is for ddp (autocast) and zero3 (FSDP2)")
        if self.fp32_grad_accum and (self.precision == "fp32" or self.master_weights == "param"):
            raise UsageError("--fp32-grad-accum: the gradients are fp32 already (fp32 or master weights in the param)")
        if self.grad_accum < 1:
            raise UsageError(f"--grad-accum must be >= 1 micro-batch, got {self.grad_accum}")
        sync = self.grad_sync or ("every" if s == "zero2" else "last")
        if sync not in ("last", "every"):
            raise UsageError(f"gradient sync must be 'last' or 'every', got {self.grad_sync!r}")
        if s == "zero2" and sync == "last":
            raise UsageError("zero2 keeps only its gradient shard: it reduces every micro-batch (--grad-sync every)")
        object.__setattr__(self, "grad_sync", sync)
        if self.communicators not in COMMUNICATORS:
            raise UsageError(f"communicators must be one of {', '.join(COMMUNICATORS)}, got {self.communicators!r}")

    @property
    def bytes_per(self) -> dict[str, int]:
        """Bytes per parameter element (see [Note: mixed precision]): the persistent ``param``,
        ``grad`` and ``optim``; ``gather``, the compute copy all-gathered and kept unsharded;
        ``unsharded_grad``, a gradient as backward writes it; ``reduce``, a reduced element."""
        if self.precision == "fp32":
            b = {"param": 4, "grad": 4, "optim": 8, "gather": 4, "unsharded_grad": 4}
        elif self.master_weights == "param":  # DDP under autocast: its gradients are the fp32 params'
            ug = 4 if self.strategy == "ddp" else 2
            b = {"param": 4, "grad": 4, "optim": 8, "gather": 2, "unsharded_grad": ug}
        else:
            b = {"param": 2, "grad": 2 + 4 * self.fp32_grad_accum, "optim": 12, "gather": 2,
                 "unsharded_grad": 2}
        default = 4 if self.fp32_grad_accum else b["unsharded_grad"]
        b["reduce"] = DTYPE_BYTES[self.reduce_dtype] if self.reduce_dtype else default
        return b


def padded_unit_params(model: Model, nranks: int, cfg: TrainConfig) -> list[int]:
    """Elements of each unit once padded for sharding (== unpadded for DDP, ZeRO-1/2)."""
    out = []
    for u in model.units:
        if cfg.strategy != "zero3":
            out.append(u.params)
        elif cfg.fsdp_version == 1:
            out.append(math.ceil(u.params / nranks) * nranks)
        else:
            out.append(sum(math.ceil(s[0] / nranks) * nranks * math.prod(s[1:]) for s in u.shapes))
    return out


@dataclass
class _Template:
    """Ops of one rank; ``deps`` index earlier template ops."""

    kind: list[int] = field(default_factory=list)
    arg: list[int] = field(default_factory=list)
    deps: list[list[int]] = field(default_factory=list)
    buffers: list[Buffer] = field(default_factory=list)
    compute: list[tuple[float, str]] = field(default_factory=list)   # flops, label
    colls: list[tuple[int, int, int]] = field(default_factory=list)  # kind, bytes, buffer
    coll_stream: list[int] = field(default_factory=list)  # index into STREAMS
    phases: list[Phase] = field(default_factory=list)

    def op(self, kind: OpKind, arg: int, deps) -> int:
        self.kind.append(int(kind))
        self.arg.append(arg)
        self.deps.append(sorted({d for d in deps if d is not None}))
        return len(self.kind) - 1

    def buffer(self, name: str, nbytes: int, category: str) -> int:
        self.buffers.append(Buffer(name, int(nbytes), Init.EMPTY, alive=False, category=category))
        return len(self.buffers) - 1

    def alloc(self, buf: int, *deps) -> int:
        return self.op(OpKind.ALLOC, buf, deps)

    def free(self, buf: int, *deps) -> int:
        return self.op(OpKind.FREE, buf, deps)

    def run(self, flops: float, label: str, *deps) -> int:
        self.compute.append((flops, label))
        return self.op(OpKind.COMPUTE, len(self.compute) - 1, deps)

    def coll(self, kind: CollKind, nbytes: int, buf: int, *deps, stream: str | None = None) -> int:
        self.colls.append((int(kind), int(nbytes), buf))
        self.coll_stream.append(STREAMS.index(stream or kind.name.lower()))
        return self.op(OpKind.COLLECTIVE, len(self.colls) - 1, deps)

    def phase(self, name: str, first: int) -> None:
        self.phases.append(Phase(name, first, len(self.kind) - first))


def _buckets(sizes_rev: list[int], cap: int) -> list[list[int]]:
    """Group units (given in backward order) into buckets of >= ``cap`` bytes, as DDP's reducer."""
    out, cur, total = [], [], 0
    for i, s in enumerate(sizes_rev):
        cur.append(i)
        total += s
        if total >= cap:
            out.append(cur)
            cur, total = [], 0
    if cur:
        out.append(cur)
    return out


def compile_step(model: Model, nranks: int, cfg: TrainConfig, device: Device) -> Program:
    """The program of one training step of ``model`` on ``nranks`` ranks (see [Note: templates])."""
    if nranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {nranks}")
    t = _Template()
    n, L, b, K = nranks, len(model.units), cfg.bytes_per, cfg.grad_accum
    padded = padded_unit_params(model, n, cfg)
    psi = model.params
    z3 = cfg.strategy == "zero3"
    # a flat partition padded to a multiple of N (ZeRO-1/2), or per-unit padded shards (ZeRO-3)
    flat_shard = math.ceil(psi / n)
    shard_elems = sum(p // n for p in padded) if z3 else flat_shard
    persist = {
        "param": shard_elems if z3 else psi,
        "grad": shard_elems if cfg.strategy in ("zero2", "zero3") else psi,
        "optim": shard_elems if cfg.strategy != "ddp" else psi,
    }
    first = [t.alloc(t.buffer(name, persist[name] * b[name], name)) for name in MODEL_STATE]
    ck = (cfg.precision, cfg.checkpointing, cfg.attention)
    act_bytes = [model.act_bytes(u, *ck) for u in model.units]
    rec_bytes = [model.recompute_bytes(u, *ck) for u in model.units]
    fwd_flops = [model.fwd_flops(u) for u in model.units]
    rec_flops = [model.recompute_flops(u, cfg.checkpointing, cfg.attention) for u in model.units]
    def activations(sfx: str) -> list[int]:
        return [t.buffer(f"{u.name}.activations{sfx}", act_bytes[i], "activation") for i, u in enumerate(model.units)]

    acts0 = activations("" if K == 1 else " mb0")   # buffer order: state, activations, unsharded, grads
    unsh = [t.buffer(f"{u.name}.unsharded", padded[i] * b["gather"], "param_unsharded")
            for i, u in enumerate(model.units)] if z3 else []
    gbuf = [t.buffer(f"{u.name}.grad_unsharded", padded[i] * b["unsharded_grad"], "grad_unsharded")
            for i, u in enumerate(model.units)] if z3 else []
    grad_colls: list[int] = []
    grad_freed: list[int] = []
    prev = None
    for k in range(K):
        sfx = "" if K == 1 else f" mb{k}"
        reduce_now = k == K - 1 or cfg.grad_sync == "every"
        act = acts0 if k == 0 else activations(sfx)
        fwd, bwd = [None] * L, [None] * L

        # -- forward --------------------------------------------------------------------------
        start = len(t.kind)
        gathered: dict[int, tuple[int, int]] = {}   # unit -> (alloc op, all-gather op), current pass
        freed: dict[int, int] = {}                  # unit -> free op of its unsharded params

        def gather(i: int, *after, gathered=gathered) -> tuple[int, int]:
            a = t.alloc(unsh[i], *after)
            g = t.coll(CollKind.ALL_GATHER, padded[i] * b["gather"], unsh[i], a)
            gathered[i] = (a, g)
            return gathered[i]

        for i in range(L):
            if z3:
                if i not in gathered:
                    gather(i, prev if prev is not None else first[-1])
                if cfg.forward_prefetch and i + 1 < L:
                    # at most two units unsharded at once: the next one waits for the one before
                    gather(i + 1, freed.get(i - 1, gathered[i][1]) if cfg.reshard_after_forward else gathered[i][1])
            al = t.alloc(act[i], prev)
            fwd[i] = t.run(fwd_flops[i], f"fwd {model.units[i].name}{sfx}", al, prev,
                           gathered[i][1] if z3 else first[-1])
            if z3 and cfg.reshard_after_forward:
                freed[i] = t.free(unsh[i], fwd[i])
            prev = fwd[i]
        t.phase(f"forward{sfx}", start)

        # -- backward -------------------------------------------------------------------------
        start = len(t.kind)

        def backward(i: int, *deps, sfx=sfx, act=act) -> int:
            """Unit i's backward (with its recomputation, if any) and the frees it allows."""
            rb = t.buffer(f"{model.units[i].name}.recomputed{sfx}", rec_bytes[i], "activation") if rec_bytes[i] else None
            ra = t.alloc(rb, *deps) if rb is not None else None
            op = t.run(2 * fwd_flops[i] + rec_flops[i], f"bwd {model.units[i].name}{sfx}", *deps, ra)
            t.free(act[i], op)
            if rb is not None:
                t.free(rb, op)
            return op

        if z3:
            gathered.clear()
            freed_b: dict[int, int] = {}
            for i in reversed(range(L)):
                if cfg.reshard_after_forward:
                    if i not in gathered:
                        gather(i, prev)
                    if cfg.backward_prefetch and i - 1 >= 0:
                        gather(i - 1, freed_b.get(i + 1, gathered[i][1]))
                    ready = gathered[i][1]
                else:
                    ready = fwd[i]
                # two unit gradients in flight at most (FSDP2 keeps one reduce-scatter input alive);
                # without a sync the unsharded gradients stay until the last micro-batch reduces them
                ga = t.alloc(gbuf[i], prev, grad_freed[-2] if len(grad_freed) >= 2 else None) \
                    if k == 0 or cfg.grad_sync == "every" else None
                bwd[i] = backward(i, ready, ga, prev, fwd[i])
                freed_b[i] = t.free(unsh[i], bwd[i])
                if reduce_now:
                    rs = t.coll(CollKind.REDUCE_SCATTER, padded[i] * b["reduce"], gbuf[i], bwd[i])
                    grad_freed.append(t.free(gbuf[i], rs))
                    grad_colls.append(rs)
                prev = bwd[i]
        else:
            buckets = _buckets([model.units[i].params * b["unsharded_grad"] for i in reversed(range(L))],
                               cfg.bucket_bytes)
            order = list(reversed(range(L)))
            bucket_freed: list[int] = []
            for j, bucket in enumerate(buckets):
                units = [order[x] for x in bucket]
                elems = sum(model.units[i].params for i in units)
                gb = None
                if cfg.strategy == "zero2":
                    gb = t.buffer(f"bucket{j}.grad{sfx}", elems * b["unsharded_grad"], "grad_unsharded")
                    # double buffering: bucket j waits until bucket j-2 is reduced and freed
                    ga = t.alloc(gb, prev, bucket_freed[-2] if len(bucket_freed) >= 2 else None)
                for i in units:
                    bwd[i] = backward(i, prev, fwd[i], ga if gb is not None else None)
                    prev = bwd[i]
                if not reduce_now:
                    continue
                kind = CollKind.ALL_REDUCE if cfg.strategy == "ddp" else CollKind.REDUCE_SCATTER
                c = t.coll(kind, elems * b["reduce"], gb if gb is not None else -1, prev)
                grad_colls.append(c)
                if gb is not None:
                    bucket_freed.append(t.free(gb, c))
        t.phase(f"backward{sfx}", start)

    # -- optimizer ----------------------------------------------------------------------------
    start = len(t.kind)
    opt = t.run(12.0 * persist["optim"], "optimizer step", prev, *grad_colls)
    if cfg.strategy in ("zero1", "zero2"):
        for bucket in _buckets([model.units[i].params * b["gather"] for i in range(L)], cfg.bucket_bytes):
            nbytes = sum(model.units[i].params for i in bucket) * b["gather"]
            t.coll(CollKind.ALL_GATHER, nbytes, -1, opt, stream="compute")
    t.phase("optimizer", start)
    meta = {"kind": "train", "model": model.name, "params": psi, "strategy": cfg.strategy,
            "precision": cfg.precision, "nranks": n, "micro_batch": model.micro_batch,
            "seq_len": model.tokens_per_sample, "grad_accum": K, "grad_sync": cfg.grad_sync,
            "checkpointing": cfg.checkpointing, "attention": cfg.attention,
            "master_weights": cfg.master_weights, "reduce_dtype": cfg.reduce_dtype,
            "fp32_grad_accum": cfg.fp32_grad_accum, "bytes_per_param": dict(b),
            "fsdp_version": cfg.fsdp_version, "reshard_after_forward": cfg.reshard_after_forward,
            "forward_prefetch": cfg.forward_prefetch, "backward_prefetch": cfg.backward_prefetch,
            "bucket_bytes": cfg.bucket_bytes, "device": device.name, "device_memory": device.memory,
            "flops_per_s": device.flops_per_s(cfg.precision),
            "padding_bytes": (sum(padded) - psi) * b["param"] if z3 else (flat_shard * n - psi) * b["optim"],
            "communicators": cfg.communicators, **stream_meta(t.coll_stream, cfg.communicators)}
    return replicate(t, n, device.flops_per_s(cfg.precision), meta)


def stream_meta(coll_stream: list[int], communicators: str = "one") -> dict:
    """``streams`` (the names used), ``coll_stream`` and ``coll_comm`` per collective (see [Note:
    collective streams]): one communicator, or one per stream."""
    used = sorted(set(coll_stream))
    idx = {s: i for i, s in enumerate(used)}
    cs = [idx[s] for s in coll_stream]
    return {"streams": [STREAMS[s] for s in used], "coll_stream": cs,
            "coll_comm": list(cs) if communicators == "per-stream" else [0] * len(cs)}


def replicate(t: _Template, n: int, flops_per_s: float, meta: dict) -> Program:
    """Template op i on rank r becomes op i·N + r at step i (see [Note: templates])."""
    T = len(t.kind)
    ranks = np.arange(n, dtype=np.int64)
    counts = np.array([len(d) for d in t.deps], dtype=np.int64)
    dep_ptr = np.zeros(T * n + 1, dtype=np.int64)
    np.cumsum(np.repeat(counts, n), out=dep_ptr[1:])
    blocks = [(np.asarray(d, dtype=np.int64)[None, :] * n + ranks[:, None]).ravel() for d in t.deps if d]
    dep_idx = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
    flops = np.array([c[0] for c in t.compute], dtype=np.float64)
    colls = np.array(t.colls, dtype=np.int64).reshape(-1, 3)
    return Program(
        n, np.repeat(np.array(t.kind, dtype=np.uint8), n), np.tile(ranks, T), np.full(T * n, -1),
        np.repeat(np.array(t.arg, dtype=np.int64), n), np.repeat(np.arange(T), n), dep_ptr, dep_idx,
        tuple(t.buffers), np.zeros(0), np.zeros(0), np.zeros(0),
        flops / flops_per_s, np.zeros(len(t.compute)), tuple(c[1] for c in t.compute),
        tuple(t.phases), meta, colls[:, 0], colls[:, 1], colls[:, 2]).validate()
