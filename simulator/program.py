"""The Program IR: ops on N ranks and their dependencies, held in columns.

[Note: program]
A *program* is what every executor runs and every view explains. It is a list of ops; op ``i`` has
the stable integer id ``i`` (its position), a ``rank`` it runs on, dependencies (ids of ops that must
finish first) and a :class:`OpKind`:

- ``REDUCE`` / ``COPY`` — a *transfer*: ``rank`` (the source) sends a chunk to ``peer`` (the
  destination), which reduces it into its own copy of that chunk or copies it over.
- ``COMPUTE`` — work on ``rank``'s compute lane, sized in FLOPs and/or seconds.
- ``ALLOC`` / ``FREE`` — a named buffer on ``rank`` appears or goes.
- ``COLLECTIVE`` — this rank's part in a whole collective (all-reduce, reduce-scatter,
  all-gather of ``nbytes`` over all ranks), one op per rank with the same collective id. Training
  programs use these *macro* ops: a ZeRO-3 step of Llama-2-70B on 1024 ranks is ~1M ops this way
  and ~10^11 as ring transfers. The engine times a collective with the ring's closed form on the
  topology, once every rank's op is ready; ``op_bytes`` is what the ring makes this rank send.

A *chunk* is a byte range of a named buffer: ``(buffer, offset, nbytes)``. Every rank has its own
instance of every buffer, of the same size. Transfers name chunks through a small chunk table, so one
op costs a handful of integers: a ring all-reduce on 4096 ranks (33.5M transfers) fits in about a GB.

Columns, one entry per op (numpy, read-only):
  kind  uint8   OpKind
  rank  int32   the rank that runs the op (the sender of a transfer)
  peer  int32   the receiver of a transfer, -1 otherwise
  arg   int32   chunk id (transfer), buffer id (alloc/free), compute id (compute),
                collective id (collective)
  step  int32   the schedule round the op belongs to (display and batching; -1 if none)
Dependencies are CSR: the deps of op ``i`` are ``dep_idx[dep_ptr[i]:dep_ptr[i+1]]``.

The initial state of each buffer (whose contribution it holds before any op runs) is part of the
program: see :class:`Init`.

Why this module passes 400 lines: the program contract is one concept (the columns, their
validation, the names every layer prints for an op); the CSR helpers at the end are the only part
that could live apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ProgramError


class OpKind(enum.IntEnum):
    """What an op does. Transfers are ``REDUCE`` and ``COPY``; they are the only ops with a peer."""

    REDUCE = 0
    COPY = 1
    COMPUTE = 2
    ALLOC = 3
    FREE = 4
    COLLECTIVE = 5

    @property
    def is_transfer(self) -> bool:
        return self in (OpKind.REDUCE, OpKind.COPY)

    @property
    def label(self) -> str:
        """``reduce``, ``copy``, ``compute``, ``alloc``, ``free``, ``collective``."""
        return self.name.lower()


class CollKind(enum.IntEnum):
    """The collective a COLLECTIVE op takes part in (``nbytes`` is the whole buffer, as nccl-tests)."""

    ALL_REDUCE = 0
    REDUCE_SCATTER = 1
    ALL_GATHER = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Init(enum.Enum):
    """Provenance of a buffer before any op runs.

    OWN    every rank's copy holds that rank's own contribution everywhere (all-reduce input)
    SHARD  rank r holds its own contribution on shard r of ``split(nbytes, N)``, nothing elsewhere
           (all-gather input)
    ROOT   the root rank holds its contribution everywhere, the others nothing (broadcast input)
    EMPTY  nothing anywhere (scratch buffers, training state)
    """

    OWN = "own"
    SHARD = "shard"
    ROOT = "root"
    EMPTY = "empty"


@dataclass(frozen=True)
class Buffer:
    """A named buffer that every rank has one instance of.

    ``alive`` says whether it exists before the first op (a collective's data buffer) or appears
    with an ALLOC op (training buffers). ``category`` groups buffers in memory views.
    """

    name: str
    nbytes: int
    init: Init = Init.OWN
    root: int = 0
    alive: bool = True
    category: str = "data"


@dataclass(frozen=True)
class Phase:
    """A named run of steps, e.g. ``reduce-scatter`` steps 0..6 of a ring all-reduce."""

    name: str
    first_step: int
    nsteps: int


def split(nbytes: int, parts: int) -> np.ndarray:
    """Offsets (length ``parts + 1``) of ``nbytes`` cut into ``parts`` near-equal pieces.

    The first ``nbytes % parts`` pieces get one byte more; when ``nbytes < parts`` the last pieces
    are empty. This is the uneven split the builders use everywhere (NCCL also gives the remainder
    to the leading chunks, in elements rather than bytes).
    """
    if parts < 1:
        raise ProgramError(f"cannot split into {parts} parts")
    q, rem = divmod(int(nbytes), parts)
    sizes = np.full(parts, q, dtype=np.int64)
    sizes[:rem] += 1
    out = np.zeros(parts + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Program:
    """An immutable program (see the module's [Note: program]). Build one with a builder from
    :mod:`simulator.collectives`, or directly from columns and call :meth:`validate`."""

    nranks: int
    kind: np.ndarray
    rank: np.ndarray
    peer: np.ndarray
    arg: np.ndarray
    step: np.ndarray
    dep_ptr: np.ndarray
    dep_idx: np.ndarray
    buffers: tuple[Buffer, ...]
    chunk_buf: np.ndarray
    chunk_off: np.ndarray
    chunk_len: np.ndarray
    compute_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    compute_flops: np.ndarray = field(default_factory=lambda: np.zeros(0))
    compute_label: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    coll_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))   # CollKind
    coll_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # whole buffer
    coll_buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))    # buffer or -1

    def __post_init__(self) -> None:
        for name, dtype in (("kind", np.uint8), ("rank", np.int32), ("peer", np.int32),
                            ("arg", np.int32), ("step", np.int32), ("dep_ptr", np.int64),
                            ("dep_idx", np.int64), ("chunk_buf", np.int32),
                            ("chunk_off", np.int64), ("chunk_len", np.int64),
                            ("compute_seconds", np.float64), ("compute_flops", np.float64),
                            ("coll_kind", np.uint8), ("coll_bytes", np.int64), ("coll_buf", np.int32)):
            object.__setattr__(self, name, _frozen(getattr(self, name), dtype))
        object.__setattr__(self, "buffers", tuple(self.buffers))
        object.__setattr__(self, "phases", tuple(self.phases))
        object.__setattr__(self, "compute_label", tuple(self.compute_label))

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_ops(self) -> int:
        return int(self.kind.shape[0])

    def __len__(self) -> int:
        return self.n_ops

    @property
    def n_steps(self) -> int:
        return int(self.step.max()) + 1 if self.n_ops else 0

    def deps(self, op: int) -> np.ndarray:
        """Ids of the ops that ``op`` waits for."""
        return self.dep_idx[self.dep_ptr[op]:self.dep_ptr[op + 1]]

    @property
    def message_bytes(self) -> int:
        """The collective's message size S (what algbw and busbw divide): ``meta["nbytes"]`` where
        the builder recorded it, else the bytes of the data buffers (alive at the start, category
        ``data``). NCCL's
        programs give each ring / tree channel / NVLS head a buffer of its own, a slice of the
        message, so no single buffer is S."""
        given = self.meta.get("nbytes")
        if isinstance(given, (int, np.integer)) and not isinstance(given, bool) and given >= 0:
            return int(given)
        return int(sum(b.nbytes for b in self.buffers if b.alive and b.category == "data"))

    @property
    def is_transfer(self) -> np.ndarray:
        return self.kind <= OpKind.COPY

    @property
    def op_bytes(self) -> np.ndarray:
        """Bytes each op sends: the chunk's size for transfers, the ring's share of this rank for
        collectives (:func:`ring_bytes_sent`), 0 for every other op."""
        out = np.zeros(self.n_ops, dtype=np.int64)
        t = self.is_transfer
        out[t] = self.chunk_len[self.arg[t]]
        c = np.flatnonzero(self.kind == OpKind.COLLECTIVE)
        if c.size:
            a = self.arg[c]
            out[c] = ring_bytes_sent(self.coll_kind[a], self.coll_bytes[a], self.rank[c], self.nranks)
        return out

    def op_label(self, op: int) -> str:
        """What op ``op`` does, in one word: its kind's label, or its collective's
        (``all-gather``) for a COLLECTIVE op. The names every report, export and view uses."""
        k = OpKind(int(self.kind[op]))
        return CollKind(int(self.coll_kind[self.arg[op]])).label if k == OpKind.COLLECTIVE else k.label

    def describe_op(self, op: int) -> str:
        """A short name for op ``op``: ``fwd layer3``, ``alloc layer3.unsharded``,
        ``all-gather layer3.unsharded``, ``reduce 2->3``; ``step start`` for -1."""
        if op < 0:
            return "step start"
        k = OpKind(int(self.kind[op]))
        a = int(self.arg[op])
        if k == OpKind.COMPUTE:
            return self.compute_label[a] or f"compute {op}"
        if k in (OpKind.ALLOC, OpKind.FREE):
            return f"{k.label} {self.buffers[a].name}"
        if k == OpKind.COLLECTIVE:
            b = int(self.coll_buf[a])
            return self.op_label(op) + (f" {self.buffers[b].name}" if b >= 0 else "")
        return f"{k.label} {int(self.rank[op])}->{int(self.peer[op])}"

    def op_labels(self) -> np.ndarray:
        """:meth:`op_label` of every op, as an object array."""
        out = np.array([k.label for k in OpKind], dtype=object)[self.kind]
        c = np.flatnonzero(self.kind == OpKind.COLLECTIVE)
        if c.size:
            out[c] = np.array([k.label for k in CollKind], dtype=object)[self.coll_kind[self.arg[c]]]
        return out

    def phase_of(self, step: int) -> tuple[Phase, int] | None:
        """The phase containing ``step`` and the step's 1-based position in it."""
        for ph in self.phases:
            if ph.first_step <= step < ph.first_step + ph.nsteps:
                return ph, step - ph.first_step + 1
        return None

    def step_bounds(self) -> np.ndarray:
        """Op-id offsets of each step, for programs whose ops are sorted by step (all builders'):
        step ``s`` is ``range(b[s], b[s+1])``. Raises if the ops are not sorted by step."""
        if self.n_ops and np.any(np.diff(self.step) < 0):
            raise ProgramError("ops are not sorted by step")
        return np.searchsorted(self.step, np.arange(self.n_steps + 1), side="left").astype(np.int64)

    def describe(self) -> str:
        name = self.meta.get("collective", "program")
        algo = self.meta.get("algo")
        return f"{name}" + (f" ({algo})" if algo else "") + f" on {self.nranks} ranks"

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> "Program":
        """Check the contract; raise :class:`ProgramError` naming the first offending op.

        Checks: column lengths, op kinds, ranks and peers in range, chunk/buffer/compute ids in
        range, chunks inside their buffers, dependencies on existing ops, and no cycle.
        Vectorised: ~0.1 s per million ops.
        """
        n, m = self.nranks, self.n_ops
        if n < 1:
            raise ProgramError(f"a program needs >= 1 rank, got nranks={n}")
        for name in ("rank", "peer", "arg", "step"):
            if getattr(self, name).shape != (m,):
                raise ProgramError(f"column {name} has {getattr(self, name).shape[0]} entries, "
                                   f"kind has {m}")
        if self.dep_ptr.shape != (m + 1,) or (m + 1 and self.dep_ptr[0] != 0) \
                or self.dep_ptr[-1] != self.dep_idx.shape[0] or np.any(np.diff(self.dep_ptr) < 0):
            raise ProgramError("dependency offsets (dep_ptr) are not a valid CSR index")
        _first_bad(self.kind > OpKind.COLLECTIVE, "has an unknown kind", self.kind)
        _first_bad((self.rank < 0) | (self.rank >= n), f"runs on a rank out of range 0..{n - 1}",
                   self.rank)
        tr = self.is_transfer
        nb, nc, nk = len(self.buffers), len(self.chunk_len), len(self.compute_seconds)
        peer_bad = tr & ((self.peer < 0) | (self.peer >= n) | (self.peer == self.rank))
        _first_bad(peer_bad, f"sends to a peer out of range 0..{n - 1} (or to itself)", self.peer)
        _first_bad(tr & ((self.arg < 0) | (self.arg >= nc)), f"names a chunk out of range 0..{nc - 1}",
                   self.arg)
        mem = (self.kind == OpKind.ALLOC) | (self.kind == OpKind.FREE)
        _first_bad(mem & ((self.arg < 0) | (self.arg >= nb)), f"names a buffer out of range 0..{nb - 1}",
                   self.arg)
        comp = self.kind == OpKind.COMPUTE
        _first_bad(comp & ((self.arg < 0) | (self.arg >= nk)),
                   f"names a compute entry out of range 0..{nk - 1}", self.arg)
        ncl = len(self.coll_kind)
        if not (self.coll_bytes.shape == self.coll_buf.shape == (ncl,)):
            raise ProgramError("collective table columns differ in length")
        coll = self.kind == OpKind.COLLECTIVE
        _first_bad(coll & ((self.arg < 0) | (self.arg >= ncl)),
                   f"names a collective out of range 0..{ncl - 1}", self.arg)
        if ncl and (self.coll_kind.max() > max(CollKind) or self.coll_bytes.min() < 0):
            raise ProgramError("collective table holds an unknown kind or a negative size")
        self._validate_chunks()
        self._validate_deps()
        return self

    def _validate_chunks(self) -> None:
        nb = len(self.buffers)
        if not (self.chunk_buf.shape == self.chunk_off.shape == self.chunk_len.shape):
            raise ProgramError("chunk table columns differ in length")
        bad_buf = (self.chunk_buf < 0) | (self.chunk_buf >= nb)
        if bad_buf.any():
            c = int(np.flatnonzero(bad_buf)[0])
            raise ProgramError(f"chunk {c} names buffer {int(self.chunk_buf[c])}, out of range 0..{nb - 1}")
        sizes = np.array([b.nbytes for b in self.buffers], dtype=np.int64)
        end = self.chunk_off + self.chunk_len
        bad = (self.chunk_off < 0) | (self.chunk_len < 0) | (end > sizes[self.chunk_buf])
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            b = self.buffers[int(self.chunk_buf[c])]
            raise ProgramError(f"chunk {c} (bytes {int(self.chunk_off[c])}..{int(end[c])}) lies outside "
                               f"buffer {b.name!r} of {b.nbytes} bytes")

    def _validate_deps(self) -> None:
        m = self.n_ops
        d = self.dep_idx
        if d.size == 0:
            return
        bad = (d < 0) | (d >= m)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            op = int(np.searchsorted(self.dep_ptr, j, side="right") - 1)
            raise ProgramError(f"op {op} depends on missing op {int(d[j])} (the program has {m} ops)")
        owner = np.repeat(np.arange(m, dtype=np.int64), np.diff(self.dep_ptr))
        if np.all(d < owner) or np.all(d > owner):  # every dep points one way: acyclic by construction
            return
        cycle = find_cycle(self.dep_ptr, d, m)
        if cycle:
            raise ProgramError("dependency cycle: " + " -> ".join(f"op {c}" for c in cycle))


def ring_bytes_sent(kind: np.ndarray, nbytes: np.ndarray, rank: np.ndarray, nranks: int) -> np.ndarray:
    """Bytes rank ``rank`` sends in the ring form of each collective (the ring builders' chunks):
    all-reduce 2S - c[r] - c[r+1], reduce-scatter S - c[r], all-gather S - c[r+1], where c is
    :func:`split` (S, N); 2S(N-1)/N and S(N-1)/N when N divides S."""
    n = nranks
    if n == 1:
        return np.zeros(np.shape(rank), dtype=np.int64)
    s = np.asarray(nbytes, dtype=np.int64)
    r = np.asarray(rank, dtype=np.int64)
    q, rem = s // n, s % n
    c_r = q + (r < rem)
    c_next = q + ((r + 1) % n < rem)
    kind = np.asarray(kind)
    return np.where(kind == CollKind.ALL_REDUCE, 2 * s - c_r - c_next,
                    np.where(kind == CollKind.REDUCE_SCATTER, s - c_r, s - c_next)).astype(np.int64)


def _first_bad(mask: np.ndarray, what: str, values: np.ndarray) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise ProgramError(f"op {i} {what}: {int(values[i])}")


def find_cycle(dep_ptr: np.ndarray, dep_idx: np.ndarray, m: int) -> list[int]:
    """A dependency cycle as a list of op ids (first repeated at the end), or [] if acyclic.

    Kahn's algorithm, one vectorised pass per level of the DAG while levels are wide; once a long
    run of levels has left a thin frontier (a chain), one op at a time on Python lists, so that a
    chain of 10^6 ops costs 10^6 cheap steps, not 10^6 numpy passes. Then a walk inside what is left.
    """
    indeg = np.diff(dep_ptr).astype(np.int64)
    owner = np.repeat(np.arange(m, dtype=np.int64), np.diff(dep_ptr))
    order = np.argsort(dep_idx, kind="stable")  # reverse CSR: who waits for op j
    rev_ptr = np.searchsorted(dep_idx[order], np.arange(m + 1))
    rev_idx = owner[order]
    frontier = np.flatnonzero(indeg == 0)
    done = np.zeros(m, dtype=bool)
    levels = 0
    while frontier.size:
        levels += 1
        if levels > 256 and frontier.size < 32:
            _drain(frontier, indeg, done, rev_ptr, rev_idx)
            break
        done[frontier] = True
        starts, ends = rev_ptr[frontier], rev_ptr[frontier + 1]
        counts = ends - starts
        if counts.sum() == 0:
            break
        idx = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        waiting = rev_idx[idx]
        np.subtract.at(indeg, waiting, 1)
        cand = np.unique(waiting)
        frontier = cand[(indeg[cand] == 0) & ~done[cand]]
    if done.all():
        return []
    # Every op left has a dep that is also left: walk until an op repeats.
    op = int(np.flatnonzero(~done)[0])
    seen: dict[int, int] = {}
    path: list[int] = []
    while op not in seen:
        seen[op] = len(path)
        path.append(op)
        ds = dep_idx[dep_ptr[op]:dep_ptr[op + 1]]
        op = int(ds[~done[ds]][0])
    return path[seen[op]:] + [op]


def _drain(frontier: np.ndarray, indeg: np.ndarray, done: np.ndarray, rev_ptr: np.ndarray,
           rev_idx: np.ndarray) -> None:
    """Kahn's algorithm from ``frontier`` one op at a time; marks what it finishes in ``done``."""
    rp, ri, deg = rev_ptr.tolist(), rev_idx.tolist(), indeg.tolist()
    stack, finished = frontier.tolist(), []
    while stack:
        op = stack.pop()
        finished.append(op)
        for k in range(rp[op], rp[op + 1]):
            w = ri[k]
            deg[w] -= 1
            if deg[w] == 0:
                stack.append(w)
    done[np.asarray(finished, dtype=np.int64)] = True


def csr_from_lists(deps: list[list[int]] | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """CSR (dep_ptr, dep_idx) from one list of dependency ids per op."""
    counts = np.fromiter((len(d) for d in deps), dtype=np.int64, count=len(deps))
    ptr = np.zeros(len(deps) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    idx = np.fromiter((int(x) for d in deps for x in d), dtype=np.int64, count=int(ptr[-1]))
    return ptr, idx


def reorder(prog: Program, order: np.ndarray) -> Program:
    """The same program with its ops renumbered: new op ``k`` is old op ``order[k]``; deps follow."""
    m = prog.n_ops
    inv = np.empty(m, dtype=np.int64)
    inv[order] = np.arange(m, dtype=np.int64)
    counts = np.diff(prog.dep_ptr)[order]
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    starts = prog.dep_ptr[order]
    gather = np.repeat(starts - ptr[:-1], counts) + np.arange(ptr[-1], dtype=np.int64)
    idx = inv[prog.dep_idx[gather]]
    return Program(prog.nranks, prog.kind[order], prog.rank[order], prog.peer[order],
                   prog.arg[order], prog.step[order], ptr, idx, prog.buffers, prog.chunk_buf,
                   prog.chunk_off, prog.chunk_len, prog.compute_seconds, prog.compute_flops,
                   prog.compute_label, prog.phases, dict(prog.meta), prog.coll_kind, prog.coll_bytes,
                   prog.coll_buf)
