"""The :class:`Trace` dataclass: a program, when each op ran and on which lane, and what each link
carried (see :mod:`rankscope.simulator.trace`'s [Note: trace])."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TraceFormatError
from ..program import Program
from .meta import TraceMeta, complete_meta, trace_meta
from .schema import jsonable


def _frozen(a: Any, dtype: Any) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


_EMPTY_I = np.zeros(0, np.int32)
_EMPTY_F = np.zeros(0, np.float64)


@dataclass(frozen=True, eq=False)
class Trace:
    """An immutable trace (see the module's [Note: trace]).

    ``meta`` is JSON-able; missing keys get defaults: executor and clock ``"unknown"``, topology
    None, lanes [], the rankscope version, this machine, complete True.
    """

    program: Program
    start: np.ndarray                  # (M,) float64 seconds; NaN = never ran
    end: np.ndarray                    # (M,) float64
    lane: np.ndarray                   # (M,) int32 index into meta["lanes"]; -1 unknown
    link_id: np.ndarray = field(default_factory=lambda: _EMPTY_I)     # (K,) int32
    link_t0: np.ndarray = field(default_factory=lambda: _EMPTY_F)     # (K,) float64
    link_t1: np.ndarray = field(default_factory=lambda: _EMPTY_F)     # (K,) float64
    link_bytes: np.ndarray = field(default_factory=lambda: _EMPTY_F)  # (K,) float64
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, k = self.program.n_ops, np.shape(self.link_id)[0]
        for name, dtype, n in (("start", np.float64, m), ("end", np.float64, m),
                               ("lane", np.int32, m), ("link_id", np.int32, k),
                               ("link_t0", np.float64, k), ("link_t1", np.float64, k),
                               ("link_bytes", np.float64, k)):
            a = _frozen(getattr(self, name), dtype)
            if a.shape != (n,):
                raise TraceFormatError(f"trace column {name} has shape {a.shape}, expected ({n},)")
            object.__setattr__(self, name, a)
        object.__setattr__(self, "meta", complete_meta(self.meta))

    @property
    def n_ops(self) -> int:
        return self.program.n_ops

    @property
    def n_links(self) -> int:
        return int(self.link_id.shape[0])

    @property
    def info(self) -> TraceMeta:
        """The typed keys of ``meta`` (:func:`~.meta.trace_meta`, read once)."""
        cached = self.__dict__.get("_info")
        if cached is None:
            cached = trace_meta(self.meta, self.program.meta, self.program.nranks)
            object.__setattr__(self, "_info", cached)
        return cached

    @property
    def ran(self) -> np.ndarray:
        """Mask of the ops that ran (have a start time)."""
        return ~np.isnan(self.start)

    def span(self, ops: np.ndarray | None = None) -> float:
        """Seconds from the first start to the last end of ``ops`` (every op when None): starts of
        the ops that ran, ends of those that finished; 0.0 when none did. The one makespan rule."""
        start, end = (self.start, self.end) if ops is None else (self.start[ops], self.end[ops])
        s, e = start[~np.isnan(start)], end[~np.isnan(end)]
        return float(e.max() - s.min()) if s.size and e.size else 0.0

    @property
    def makespan(self) -> float:
        """:meth:`span` of the whole trace."""
        return self.span()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (program_equal(self.program, other.program)
                and all(np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
                        for n in ("start", "end", "link_t0", "link_t1", "link_bytes"))
                and np.array_equal(self.lane, other.lane)
                and np.array_equal(self.link_id, other.link_id)
                and self.meta == other.meta)

    __hash__ = None  # type: ignore[assignment]


def program_equal(a: Program, b: Program, *, meta: bool = True) -> bool:
    """True iff two programs agree column for column, table for table, and (with ``meta``) in meta,
    compared as JSON. ``meta=False`` is "the same schedule": what joining two traces on op id needs
    (a measured run's program notes the size it was asked for, a simulated one does not)."""
    if a.nranks != b.nranks:
        return False
    for name in ("kind", "rank", "peer", "arg", "step", "dep_ptr", "dep_idx", "chunk_buf",
                 "chunk_off", "chunk_len", "coll_kind", "coll_bytes", "coll_buf"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            return False
    for name in ("compute_seconds", "compute_flops"):
        if not np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True):
            return False
    return (a.buffers == b.buffers and a.compute_label == b.compute_label and a.phases == b.phases
            and (not meta or jsonable(a.meta) == jsonable(b.meta)))
