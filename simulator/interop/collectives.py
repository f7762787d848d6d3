"""What a measured collective is, whatever tool saw it: kind, whole-buffer bytes, times, group.

[Note: collective names]
Every tool spells a collective its own way: ``c10d::_allgather_base_`` (the op PyTorch's profiler
records when the call is issued), ``gloo:all_gather`` (gloo's worker thread running it),
``record_param_comms`` with ``Collective name`` ``_allgather_base`` (NCCL builds),
``ncclDevKernel_AllGather_RING_LL`` (the GPU kernel), ``nccl:all_gather`` (the flight recorder).
:func:`collective_kind` maps all of them to one *kind*: the three the simulator models
(``all-reduce``, ``reduce-scatter``, ``all-gather``: :class:`~simulator.program.CollKind` labels)
and ``broadcast``, ``all-to-all``, ``barrier``, ``p2p``, ``reduce``, ``gather``, ``scatter``,
which a program cannot hold as COLLECTIVE ops (see :mod:`.measured`).

[Note: collective bytes]
``nbytes`` is the size S of the whole buffer, as nccl-tests and the Program's collective table
count it: the all-reduce buffer, the reduce-scatter *input*, the all-gather *output*, the
broadcast buffer. So a reduce-scatter and an all-gather of one FSDP unit have the same S.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..program import CollKind
from .errors import ImportFormatError

MODELLED = {k.label: k for k in CollKind}  # kinds a Program's collective table holds

# element sizes by the names the profiler (C++ type names), the flight recorder and
# record_param_comms (ScalarType names) use
DTYPE_BYTES = {
    "float": 4, "float32": 4, "Float": 4, "double": 8, "float64": 8, "Double": 8,
    "c10::Half": 2, "Half": 2, "float16": 2, "c10::BFloat16": 2, "BFloat16": 2, "bfloat16": 2,
    "long int": 8, "long": 8, "int64": 8, "Long": 8, "int": 4, "int32": 4, "Int": 4,
    "short int": 2, "short": 2, "int16": 2, "Short": 2, "signed char": 1, "int8": 1, "Char": 1,
    "unsigned char": 1, "uint8": 1, "Byte": 1, "bool": 1, "Bool": 1,
    "c10::Float8_e4m3fn": 1, "Float8_e4m3fn": 1, "c10::Float8_e5m2": 1, "Float8_e5m2": 1,
    "c10::complex<float>": 8, "ComplexFloat": 8, "c10::complex<double>": 16, "ComplexDouble": 16,
}

_RULES = (("reducescatter", "reduce-scatter"), ("allgather", "all-gather"),
          ("allreduce", "all-reduce"), ("alltoall", "all-to-all"), ("broadcast", "broadcast"),
          ("barrier", "barrier"), ("sendrecv", "p2p"), ("send", "p2p"), ("recv", "p2p"),
          ("reduce", "reduce"), ("gather", "gather"), ("scatter", "scatter"))
_PREFIX = re.compile(r"^(c10d::|gloo:|nccl:|mpi:|ucc:|xccl:)")


def collective_kind(name: str) -> str | None:
    """The kind of a collective from any tool's name of it (see [Note: collective names]), or
    None if the name is no collective's."""
    s = _PREFIX.sub("", name.strip())
    s = re.sub(r"^nccl(dev)?kernel_?", "", s, flags=re.I)
    s = re.sub(r"[^a-z]", "", s.lower())
    for key, kind in _RULES:
        if key in s:
            return kind
    return None


def dtype_bytes(dtype: str | None, where: str) -> int:
    """Bytes per element of a dtype name; ``where`` names the event for the error message."""
    if dtype in DTYPE_BYTES:
        return DTYPE_BYTES[dtype]
    raise ImportFormatError(f"{where}: unknown dtype {dtype!r}; rankscope knows "
                            f"{', '.join(sorted({k for k in DTYPE_BYTES if '::' not in k}))}")


def numel(dims) -> int:
    """Elements in a shape ``[a, b]``, or in a (nested) list of shapes ``[[a], [b, c]]``."""
    if isinstance(dims, (list, tuple)):
        if all(isinstance(d, (int, float)) for d in dims):
            return int(math.prod(dims)) if dims else 1
        return sum(numel(d) for d in dims)
    if isinstance(dims, (int, float)):
        return int(dims)
    raise TypeError(f"not a shape: {dims!r}")


@dataclass(frozen=True)
class MeasuredCollective:
    """One rank's part in one collective, as a trace saw it. Times are seconds on the imported
    trace's clock (NaN where the tool did not say). ``group`` names the process group (ranks
    agree on a collective's position only within one group); ``seq`` is the flight recorder's
    collective_seq_id, where there is one."""

    rank: int
    kind: str
    nbytes: int
    start: float
    end: float
    name: str = ""
    impl: str = ""
    group: str = "0"
    group_ranks: tuple[int, ...] | None = None
    dtype: str = ""
    seq: int | None = None
    issue: float = math.nan          # when the rank issued it (CPU side), if known
    extra: dict = field(default_factory=dict)

    @property
    def modelled(self) -> bool:
        return self.kind in MODELLED

    def describe(self) -> str:
        return f"{self.kind} of {self.nbytes} B" + (f" ({self.name})" if self.name else "")
