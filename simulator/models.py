"""Model descriptions by shape: parameter tensors, FLOPs and activation bytes per unit.

A *unit* is what FSDP wraps (one per layer, plus the embedding and the head of a transformer): a
list of parameter shapes, the forward FLOPs per token, and the activation bytes it keeps for
backward per token. Cost rules (pure functions of the shapes, sources inline):
- forward FLOPs = 2 · params · tokens (Kaplan et al. 2020, "Scaling laws", section 2.1), plus, for
  a transformer layer, the attention core's 4·b·s²·h (QKᵀ and attention over V: Narayanan et al.,
  SC'21, "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
  section 5.1, whose per-layer forward is 24·B·s·h² + 4·B·s²·h for a 4h GELU MLP; with SwiGLU and
  grouped-query attention the 24·B·s·h² part is 2·params·tokens, which is what is used for every
  preset). Causal masking is not subtracted, as in that rule. Backward = 2 x forward.
- activations of a transformer layer (Korthikanti et al. 2022, "Reducing Activation Recomputation in
  Large Transformer Models", section 4.1, eq. 1-2), bytes in 16-bit: s·b·h·(34 + 5·a·s/h) without
  recomputation; the 5·a·s²·b part is the attention core (QKᵀ, softmax, its dropout), which
  selective recomputation and flash attention do not keep, leaving 34·s·b·h; full recomputation
  keeps only the layer's input, 2·s·b·h, and rebuilds the rest in backward. An MLP unit keeps its
  input, b·w elements (and so does its checkpoint, whose recomputation rebuilds the ReLU's output,
  b·w more, in backward); the head keeps the fp32 logits, b·s·V·4 bytes.

``seq_len`` changes a transformer's sequence length (activations and FLOPs follow; GPT-2's learned
position table stays at its 1024 rows, the longest sequence it accepts).

Presets (parameter counts as published): GPT-2 small 124M and medium 355M (Radford et al. 2019;
tied embeddings, learned positions); Llama-2 7B (6.74B), 13B (13.0B), 70B (69.0B, grouped-query
attention with 8 KV heads) (Touvron et al. 2023, table 1 and the released configs).
Specs: ``mlp:4x1024`` (four 1024x1024 Linear layers with bias), ``params:7.5e9`` or
``params:7.5e9x32`` (a synthetic model of that many parameters in equal units, default 32, for
the ZeRO paper's arithmetic), and the preset names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Unit:
    name: str
    shapes: tuple[tuple[int, ...], ...]   # parameter tensors, dim 0 first (FSDP2 shards dim 0)
    act_elems_per_sample: float            # activation elements kept for backward, per sample
    act_bytes_per_elem: int = 2            # in a 16-bit (bf16) run; an fp32 run keeps twice the bytes
    attn_core_elems_per_sample: float = 0  # of which the attention core (5·a·s² bytes / 2 per sample)
    ckpt_elems_per_sample: float | None = None  # kept under full recomputation (the unit's input);
    #                                            None: not checkpointed (embedding, head)
    attn_flops_per_sample: float = 0       # forward FLOPs of the attention core, 4·s²·h per sample
    recompute_elems_per_sample: float | None = None  # rebuilt in backward under full recomputation
    #                                            (None: what it does not keep, act - ckpt)

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


@dataclass(frozen=True)
class Model:
    name: str
    units: tuple[Unit, ...]
    tokens_per_sample: int          # sequence length (1 for an MLP)
    micro_batch: int                # samples per rank per step

    @property
    def params(self) -> int:
        return sum(u.params for u in self.units)

    @property
    def tokens(self) -> int:
        return self.tokens_per_sample * self.micro_batch

    def fwd_flops(self, unit: Unit) -> float:
        return 2.0 * unit.params * self.tokens + unit.attn_flops_per_sample * self.micro_batch

    def act_bytes(self, unit: Unit, precision: str = "bf16", checkpointing: str = "none",
                  attention: str = "flash") -> int:
        """Bytes ``unit`` keeps from its forward to its backward: its elements at the 16-bit size,
        doubled in fp32 (see the module docstring for what each checkpointing mode keeps)."""
        elems = unit.act_elems_per_sample
        if checkpointing == "full" and unit.ckpt_elems_per_sample is not None:
            elems = unit.ckpt_elems_per_sample
        elif checkpointing == "selective" or attention == "flash":
            elems -= unit.attn_core_elems_per_sample
        return self._bytes(unit, elems, precision)

    def recompute_bytes(self, unit: Unit, precision: str = "bf16", checkpointing: str = "none",
                        attention: str = "flash") -> int:
        """Bytes a fully recomputed unit rebuilds in its backward (alive during it; 0 otherwise)."""
        if checkpointing != "full" or unit.ckpt_elems_per_sample is None:
            return 0
        if unit.recompute_elems_per_sample is not None:
            return self._bytes(unit, unit.recompute_elems_per_sample, precision)
        return self.act_bytes(unit, precision, "none", attention) - self._bytes(unit, unit.ckpt_elems_per_sample,
                                                                               precision)

    def recompute_flops(self, unit: Unit, checkpointing: str = "none", attention: str = "flash") -> float:
        """Forward FLOPs redone in ``unit``'s backward: full recomputation, one more forward (and,
        with flash attention, the QKᵀ its backward recomputes as well);
        selective, the attention core's 4·b·s²·h (Korthikanti et al. 2022, section 5); flash attention
        without either recomputes QKᵀ, 2·b·s²·h (Dao et al. 2022, "FlashAttention", algorithm 4)."""
        core = unit.attn_flops_per_sample * self.micro_batch
        if checkpointing == "full" and unit.ckpt_elems_per_sample is not None:  # flash's QKᵀ on top
            return self.fwd_flops(unit) + (core / 2 if attention == "flash" else 0.0)
        if checkpointing == "selective":
            return core
        return core / 2 if attention == "flash" else 0.0

    def _bytes(self, unit: Unit, elems: float, precision: str) -> int:
        per = unit.act_bytes_per_elem * (2 if precision == "fp32" else 1)
        return int(elems * self.micro_batch * per)


@dataclass(frozen=True)
class TransformerShape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    seq: int
    gated: bool         # SwiGLU (3 FFN matrices, no biases) or GELU (2, with biases)
    learned_pos: bool
    tied: bool


PRESETS = {
    "gpt2": TransformerShape(12, 768, 3072, 12, 12, 50257, 1024, False, True, True),
    "gpt2-medium": TransformerShape(24, 1024, 4096, 16, 16, 50257, 1024, False, True, True),
    "llama2-7b": TransformerShape(32, 4096, 11008, 32, 32, 32000, 4096, True, False, False),
    "llama2-13b": TransformerShape(40, 5120, 13824, 40, 40, 32000, 4096, True, False, False),
    "llama2-70b": TransformerShape(80, 8192, 28672, 64, 8, 32000, 4096, True, False, False),
}


def transformer(name: str, t: TransformerShape, micro_batch: int, seq_len: int | None = None) -> Model:
    h, kv = t.hidden, t.hidden // t.heads * t.kv_heads
    s = seq_len or t.seq
    if t.learned_pos and s > t.seq:
        raise UsageError(f"{name} has {t.seq} learned positions: --seq-len {s} is longer")
    if t.gated:  # Llama: RMSNorm weights, no biases, SwiGLU
        layer = ((h, h), (kv, h), (kv, h), (h, h), (t.ffn, h), (t.ffn, h), (h, t.ffn), (h,), (h,))
    else:  # GPT-2: fused qkv, biases, LayerNorm weight + bias
        layer = ((3 * h, h), (3 * h,), (h, h), (h,), (t.ffn, h), (t.ffn,), (h, t.ffn), (h,),
                 (h,), (h,), (h,), (h,))
    embed = ((t.vocab, h),) + (((t.seq, h),) if t.learned_pos else ())
    final_norm = ((h,), (h,)) if not t.gated else ((h,),)
    head = final_norm + (() if t.tied else ((t.vocab, h),))
    # Korthikanti et al. 2022, eq. 1: s·b·h·(34 + 5·a·s/h) bytes, in 2-byte elements per sample
    core = 5 * t.heads * s * s / 2
    units = [Unit("embed", embed, s * h)]
    units += [Unit(f"layer{i}", layer, 34 * s * h / 2 + core, attn_core_elems_per_sample=core,
                   ckpt_elems_per_sample=s * h, attn_flops_per_sample=4 * s * s * h) for i in range(t.layers)]
    units.append(Unit("head", head, s * t.vocab * 2))  # fp32 logits: 2 bf16-sized elements each
    return Model(name, tuple(units), s, micro_batch)


def mlp(layers: int, width: int, micro_batch: int) -> Model:
    units = tuple(Unit(f"layer{i}", ((width, width), (width,)), width, ckpt_elems_per_sample=width,
                       recompute_elems_per_sample=width) for i in range(layers))
    return Model(f"mlp:{layers}x{width}", units, 1, micro_batch)


def synthetic(params: int, units: int, micro_batch: int) -> Model:
    base, extra = divmod(params, units)
    us = tuple(Unit(f"unit{i}", ((base + (i < extra),),), 0) for i in range(units))
    return Model(f"params:{params}x{units}", us, 1, micro_batch)


_MLP = re.compile(r"^mlp:(\d+)x(\d+)$")
_SYN = re.compile(r"^params:([0-9.eE+]+)(?:x(\d+))?$")


def parse_model(spec: str, micro_batch: int | None = None, seq_len: int | None = None) -> Model:
    """A model from its spec (see the module docstring); ``micro_batch`` samples per rank;
    ``seq_len`` tokens per sample (transformer presets only)."""
    s = spec.strip().lower()
    if seq_len is not None and s not in PRESETS:
        raise UsageError(f"--seq-len applies to the transformer presets ({', '.join(PRESETS)}), not {spec!r}")
    if seq_len is not None and seq_len < 1:
        raise UsageError(f"--seq-len must be >= 1, got {seq_len}")
    if m := _MLP.match(s):
        layers, width = int(m.group(1)), int(m.group(2))
        if layers < 1 or width < 1:
            raise UsageError(f"model {spec!r}: layers and width must be >= 1")
        return mlp(layers, width, micro_batch or 32)
    if m := _SYN.match(s):
        try:
            p = float(m.group(1))
        except ValueError:
            raise UsageError(f"model {spec!r}: cannot read a parameter count") from None
        units = int(m.group(2) or 32)
        if p < units or units < 1:
            raise UsageError(f"model {spec!r}: needs at least one parameter per unit")
        return synthetic(int(round(p)), units, micro_batch or 1)
    if s in PRESETS:
        return transformer(s, PRESETS[s], micro_batch or 1, seq_len)
    raise UsageError(f"unknown model {spec!r}: use mlp:LxW, params:P[xUNITS] or one of {', '.join(PRESETS)}")


@dataclass(frozen=True)
class Device:
    """Peak dense throughput (FLOP/s) by precision, the fraction a training step reaches, and the
    device memory in bytes (None: no limit checked)."""

    name: str
    peak_bf16: float
    peak_fp32: float
    efficiency: float = 0.5
    memory: int | None = None

    def flops_per_s(self, precision: str) -> float:
        return (self.peak_bf16 if precision == "bf16" else self.peak_fp32) * self.efficiency


# NVIDIA A100 and H100 SXM datasheets: dense BF16 312 / 989 TFLOP/s; "fp32" here is TF32 tensor
# cores, 156 / 494 TFLOP/s, which PyTorch uses for fp32 matmuls when allowed. A laptop-class CPU
# core manages ~50 GFLOP/s of fp32 matmul (a round figure, for the gloo runs of real/).
# Memory: 80 GB of HBM2e (A100 80GB SXM) and of HBM3 (H100 SXM5), as the datasheets write it, taken
# as 80e9 bytes; the CUDA context, NCCL's buffers and the allocator's fragmentation come out of it
# and are not modelled, so a peak close to the limit is optimistic.
DEVICES = {
    "a100": Device("a100", 312e12, 156e12, memory=80 * 10**9),
    "h100": Device("h100", 989e12, 494e12, memory=80 * 10**9),
    "cpu": Device("cpu", 50e9, 50e9),
}


def parse_device(name: str, efficiency: float | None = None) -> Device:
    d = DEVICES.get(name.strip().lower())
    if d is None:
        raise UsageError(f"unknown device {name!r}: choose from {', '.join(DEVICES)}")
    if efficiency is not None:
        if not 0 < efficiency <= 1:
            raise UsageError(f"efficiency must be in (0, 1], got {efficiency}")
        d = Device(d.name, d.peak_bf16, d.peak_fp32, efficiency, d.memory)
    return d
