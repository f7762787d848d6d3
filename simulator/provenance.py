"""Every rank's memory layout after any set of finished ops: the one function all views use.

[Note: provenance]
The *provenance* of a byte on a rank is the set of ranks whose input its current value contains.
Each buffer is cut into *segments*: the byte ranges between all chunk boundaries (empty ranges
dropped), so every chunk is a run of whole segments. A layout holds, per buffer, a bitset per
(rank, segment) — ``bits[b]`` has shape (N, n_segments, W) of uint64 with W = ceil(N/64) — and
which buffers are alive on which rank.

Applying a transfer from ``src`` to ``dst``:
  REDUCE  dst |= src, and src & dst must be empty: a contribution counted twice is an error;
  COPY    dst = src.
Sending bytes that hold no contribution yet (the chunk was read before it was written), touching
a buffer that is not alive, and freeing one that is not, are errors too. Errors name the op, rank,
byte range and ranks involved: :class:`~simulator.errors.ProvenanceError`.

Ops are applied in id order. Runs of transfers of one step that neither read what another writes
nor write the same place are applied together with numpy, so a ring step costs O(1) Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import ProvenanceError
from .program import Init, OpKind, Program, split


def _segments(prog: Program) -> list[np.ndarray]:
    out = []
    for b, buf in enumerate(prog.buffers):
        sel = prog.chunk_buf == b
        parts = [np.array([0, buf.nbytes], dtype=np.int64), prog.chunk_off[sel],
                 prog.chunk_off[sel] + prog.chunk_len[sel]]
        if buf.init is Init.SHARD:
            parts.append(shard_bounds(prog, b))
        out.append(np.unique(np.concatenate(parts)))
    return out


def _fmt_ranks(ranks: Iterable[int]) -> str:
    return "{" + ",".join(str(r) for r in ranks) + "}"


@dataclass
class Layout:
    """The state after ``applied`` ops in id order (see the module's [Note: provenance]).

    Build with :func:`layout`; move forward with :meth:`advance_to`.
    """

    program: Program
    bounds: list[np.ndarray]   # per buffer: segment boundaries in bytes (n_segments + 1)
    bits: list[np.ndarray]     # per buffer: (N, n_segments, W) uint64 contribution bitsets
    alive: np.ndarray          # (N, n_buffers) bool
    applied: int = 0
    strict: bool = True

    # -- queries -------------------------------------------------------------------------------
    @property
    def words(self) -> int:
        return (self.program.nranks + 63) // 64

    def contributors(self, buf: int, rank: int, seg: int) -> list[int]:
        """Sorted ranks whose input segment ``seg`` of ``buf`` on ``rank`` contains."""
        raw = np.unpackbits(self.bits[buf][rank, seg].view(np.uint8), bitorder="little")
        return [int(r) for r in np.flatnonzero(raw[: self.program.nranks])]

    def counts(self, buf: int = 0) -> np.ndarray:
        """(N, n_segments) number of contributions in each segment of ``buf``."""
        return np.bitwise_count(self.bits[buf]).sum(axis=-1, dtype=np.int64)

    def alive_bytes(self) -> np.ndarray:
        """Bytes of live buffers per rank."""
        sizes = np.array([b.nbytes for b in self.program.buffers], dtype=np.int64)
        return self.alive.astype(np.int64) @ sizes

    def full_mask(self) -> np.ndarray:
        """The bitset holding every rank: (W,) uint64."""
        n = self.program.nranks
        full = np.zeros(self.words, dtype=np.uint64)
        full[: n // 64] = np.uint64(0xFFFFFFFFFFFFFFFF)
        if n % 64:
            full[n // 64] = np.uint64((1 << (n % 64)) - 1)
        return full

    def segs_of_chunk(self, chunk: int) -> tuple[int, int]:
        p = self.program
        b = self.bounds[int(p.chunk_buf[chunk])]
        off, ln = int(p.chunk_off[chunk]), int(p.chunk_len[chunk])
        return int(np.searchsorted(b, off)), int(np.searchsorted(b, off + ln))

    # -- moving forward ------------------------------------------------------------------------
    def advance_to(self, k: int) -> "Layout":
        """Apply ops ``applied .. k-1``."""
        p = self.program
        if k < self.applied or k > p.n_ops:
            raise ValueError(f"cannot advance from {self.applied} to {k} (program has {p.n_ops} ops)")
        self._apply(np.arange(self.applied, k, dtype=np.int64))
        self.applied = k
        return self

    def _apply(self, ops: np.ndarray) -> None:
        p = self.program
        if ops.size == 0:
            return
        kinds, steps = p.kind[ops], p.step[ops]
        # runs of transfers that share a step
        tr = kinds <= OpKind.COPY
        brk = np.flatnonzero((steps[1:] != steps[:-1]) | (tr[1:] != tr[:-1]) | ~tr[1:] | ~tr[:-1]) + 1
        for run in np.split(ops, brk):
            if p.kind[run[0]] <= OpKind.COPY:
                if not self._transfers(run, check_hazards=True):
                    for op in run:
                        self._transfers(np.array([op]), check_hazards=False)
            else:
                for op in run:
                    self._memory_op(int(op))

    def _expand(self, ops: np.ndarray):
        p = self.program
        chunks = p.arg[ops]
        lo = np.empty(ops.size, dtype=np.int64)
        hi = np.empty(ops.size, dtype=np.int64)
        bufs = p.chunk_buf[chunks]
        for b in np.unique(bufs):
            sel = bufs == b
            c = chunks[sel]
            lo[sel] = np.searchsorted(self.bounds[b], p.chunk_off[c])
            hi[sel] = np.searchsorted(self.bounds[b], p.chunk_off[c] + p.chunk_len[c])
        cnt = hi - lo
        which = np.repeat(np.arange(ops.size), cnt)
        seg = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
        return bufs, which, seg

    def _transfers(self, ops: np.ndarray, *, check_hazards: bool) -> bool:
        """Apply transfers together; False (nothing applied) if they conflict with one another."""
        p = self.program
        ops = np.atleast_1d(ops)
        bufs, which, seg = self._expand(ops)
        src = p.rank[ops].astype(np.int64)
        dst = p.peer[ops].astype(np.int64)
        for b in np.unique(bufs):
            if not (self.alive[src[bufs == b], b].all() and self.alive[dst[bufs == b], b].all()):
                if check_hazards and ops.size > 1:
                    return False
                bad = np.flatnonzero((bufs == b) & ~(self.alive[src, b] & self.alive[dst, b]))[0]
                r = int(src[bad]) if not self.alive[src[bad], b] else int(dst[bad])
                raise ProvenanceError(f"op {int(ops[bad])} moves buffer {p.buffers[b].name!r} on rank {r}, "
                                      f"where it is not allocated")
        if check_hazards and ops.size > 1:
            nseg = max(bb.size for bb in self.bounds)
            key_w = (bufs[which] * p.nranks + dst[which]) * nseg + seg
            key_r = (bufs[which] * p.nranks + src[which]) * nseg + seg
            if np.unique(key_w).size != key_w.size or np.isin(key_w, key_r).any():
                return False
        for b in np.unique(bufs):
            sel = bufs[which] == b
            w, s = which[sel], seg[sel]
            bits = self.bits[b]
            sv = bits[src[w], s]
            if self.strict and p.buffers[b].init is not Init.EMPTY:
                empty = ~sv.any(axis=-1)
                if empty.any():
                    i = int(np.flatnonzero(empty)[0])
                    raise ProvenanceError(
                        f"op {int(ops[w[i]])} sends bytes {self._range(b, s[i])} of {p.buffers[b].name!r} "
                        f"from rank {int(src[w[i]])} before they hold any contribution")
            reduce = p.kind[ops[w]] == OpKind.REDUCE
            dv = bits[dst[w], s]
            dup = (sv & dv).any(axis=-1) & reduce
            if dup.any():
                i = int(np.flatnonzero(dup)[0])
                both = np.unpackbits((sv[i] & dv[i]).view(np.uint8), bitorder="little")
                twice = np.flatnonzero(both[: p.nranks])
                raise ProvenanceError(
                    f"op {int(ops[w[i]])} (step {int(p.step[ops[w[i]]])}) reduces bytes "
                    f"{self._range(b, s[i])} of {p.buffers[b].name!r} from rank {int(src[w[i]])} into "
                    f"rank {int(dst[w[i]])}, counting contributions {_fmt_ranks(twice)} twice")
            bits[dst[w], s] = np.where(reduce[:, None], sv | dv, sv)
        return True

    def _range(self, b: int, seg: int) -> str:
        return f"{int(self.bounds[b][seg])}..{int(self.bounds[b][seg + 1])}"

    def _memory_op(self, op: int) -> None:
        p = self.program
        kind, r, b = p.kind[op], int(p.rank[op]), int(p.arg[op])
        if kind == OpKind.ALLOC:
            if self.alive[r, b]:
                raise ProvenanceError(f"op {op} allocates buffer {p.buffers[b].name!r} on rank {r} twice")
            self.alive[r, b] = True
            self.bits[b][r] = self._initial(b)[r]
        elif kind == OpKind.FREE:
            if not self.alive[r, b]:
                raise ProvenanceError(f"op {op} frees buffer {p.buffers[b].name!r} on rank {r}, "
                                      f"which is not allocated")
            self.alive[r, b] = False
            self.bits[b][r] = 0

    def _initial(self, b: int) -> np.ndarray:
        p, buf = self.program, self.program.buffers[b]
        n, bounds = p.nranks, self.bounds[b]
        out = np.zeros((n, bounds.size - 1, self.words), dtype=np.uint64)
        ranks = np.arange(n)
        own = np.zeros((n, self.words), dtype=np.uint64)
        own[ranks, ranks // 64] = np.left_shift(np.uint64(1), (ranks % 64).astype(np.uint64))
        if buf.init is Init.OWN:
            out[:] = own[:, None, :]
        elif buf.init is Init.ROOT:
            out[buf.root] = own[buf.root]
        elif buf.init is Init.SHARD:
            shard = np.searchsorted(shard_bounds(p, b), bounds[:-1], side="right") - 1
            out[shard, np.arange(shard.size)] = own[shard]
        return out


def layout(program: Program, finished: int | np.ndarray | Iterable[int] | None = None, *,
           strict: bool = True) -> Layout:
    """Every rank's buffers after ``finished`` ops: a count k (ops 0..k-1), a boolean mask, or ids.

    The set must be closed under dependencies (an op cannot finish before what it waits for);
    a set that is not gets a :class:`ProvenanceError` naming the op and its missing dependency.
    """
    bounds = _segments(program)
    lay = Layout(program, bounds, [], np.zeros((program.nranks, len(program.buffers)), dtype=bool),
                 strict=strict)
    lay.bits = [lay._initial(b) for b in range(len(program.buffers))]
    lay.alive[:] = np.array([b.alive for b in program.buffers], dtype=bool)[None, :]
    if finished is None:
        finished = program.n_ops
    if isinstance(finished, (int, np.integer)):
        return lay.advance_to(int(finished))
    arr = np.asarray(finished)
    ids = np.flatnonzero(arr) if arr.dtype == bool else np.unique(arr.astype(np.int64))
    done = np.zeros(program.n_ops, dtype=bool)
    done[ids] = True
    for op in ids:
        ds = program.deps(int(op))
        missing = ds[~done[ds]]
        if missing.size:
            raise ProvenanceError(f"op {int(op)} is finished but its dependency op {int(missing[0])} is not")
    lay._apply(ids)
    lay.applied = -1  # an arbitrary set: no prefix to advance from
    return lay


def check_promise(program: Program, lay: Layout | None = None) -> Layout:
    """Check that the finished program delivers what its collective promises; return the layout.

    all-reduce      every segment on every rank holds all N contributions (each once)
    reduce-scatter  rank r's shard r (of ``split(S, N)``) holds all N contributions
    all-gather      every rank holds shard j with exactly contribution {j}, for every j
    broadcast       every rank holds exactly the root's contribution everywhere

    Every data buffer is checked: a program whose channels each have their own buffer (NCCL's
    rings, tree channels and NVLS heads, each a slice of the message) promises this of each one,
    its shards being :func:`shard_bounds` of that buffer.
    """
    lay = lay if lay is not None else layout(program)
    coll = program.meta.get("collective")
    if coll not in ("all-reduce", "reduce-scatter", "all-gather", "broadcast"):
        raise ProvenanceError(f"no promise known for collective {coll!r}")
    for b, buf in enumerate(program.buffers):
        if buf.alive:
            _check_buffer(program, lay, coll, b)
    return lay


def shard_bounds(program: Program, b: int) -> np.ndarray:
    """The N+1 byte offsets of the ranks' shards in buffer ``b``: ``meta["shard_bounds"][b]`` where
    the builder recorded them (a channel's slice of every shard need not split evenly), else
    ``split(nbytes, N)``."""
    given = program.meta.get("shard_bounds")
    if given is not None and b < len(given) and given[b] is not None:
        return np.asarray(given[b], dtype=np.int64)
    return split(program.buffers[b].nbytes, program.nranks)


def _check_buffer(program: Program, lay: Layout, coll: str, b: int) -> None:
    n = program.nranks
    bits, bounds = lay.bits[b], lay.bounds[b]
    nseg = bounds.size - 1
    check = np.ones((n, nseg), dtype=bool)
    if coll in ("all-reduce", "reduce-scatter"):
        want = np.broadcast_to(lay.full_mask(), bits.shape)
        if coll == "reduce-scatter":
            shard = np.searchsorted(shard_bounds(program, b), bounds[:-1], side="right") - 1
            check = shard[None, :] == np.arange(n)[:, None]
    elif coll == "all-gather":
        want = np.broadcast_to(lay._initial(b).max(axis=0), bits.shape)
    else:
        want = np.broadcast_to(lay._initial(b)[program.buffers[b].root], bits.shape)
    bad = np.flatnonzero(((bits != want).any(axis=-1) & check).ravel())
    if bad.size:
        r, s = divmod(int(bad[0]), nseg)
        expected = np.unpackbits(np.ascontiguousarray(want[r, s]).view(np.uint8), bitorder="little")[:n]
        where = f" of '{program.buffers[b].name}'" if len(program.buffers) > 1 else ""
        raise ProvenanceError(
            f"{program.describe()}: rank {r} bytes {lay._range(b, s)}{where} hold "
            f"{_fmt_ranks(lay.contributors(b, r, s))}, expected {_fmt_ranks(np.flatnonzero(expected))}")
