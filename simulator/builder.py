"""Build a program op by op, with its dependencies derived from what each op reads and writes.

[Note: derived dependencies]
A builder states *what* moves; the data interdependency follows from it. Each buffer is cut into
*cells* (the builder's logical chunks, possibly empty), and every (rank, buffer, cell) keeps:

  barrier  ops that every later access waits for (the last copy, alloc, or the readers a reduce
           had to wait for)
  acc      reductions into the cell since the barrier; they commute, so they do not wait for one
           another (a parameter server's N-1 incoming reductions run concurrently)
  readers  sends of the cell since its last write

A send waits for barrier + acc (read after write). A reduce waits for barrier + readers (write
after read) and joins acc. A copy, alloc or free waits for all three and becomes the new barrier.
Vectorised builders (the rings) write their dependencies directly; a test checks that they equal
what this tracker derives.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ProgramError
from .program import Buffer, OpKind, Phase, Program, csr_from_lists, reorder


class ProgramBuilder:
    """Collects ops, then :meth:`build` returns a validated :class:`Program` sorted by step."""

    def __init__(self, nranks: int, buffers: Sequence[Buffer], *, meta: dict[str, Any] | None = None):
        if nranks < 1:
            raise ProgramError(f"a program needs >= 1 rank, got {nranks}")
        self.nranks = nranks
        self.buffers = list(buffers)
        self.meta = dict(meta or {})
        self.phases: list[Phase] = []
        self._grid: dict[int, np.ndarray] = {}
        self._chunk_ids: dict[tuple[int, int, int], int] = {}
        self._chunk_cells: list[tuple[int, int, int]] = []
        self._ops: list[tuple[int, int, int, int, int]] = []  # kind, rank, peer, arg, step
        self._deps: list[list[int]] = []
        self._state: dict[tuple[int, int, int], list[list[int]]] = {}
        self._compute: list[tuple[float, float, str]] = []

    # -- cells and chunks ----------------------------------------------------------------------
    def grid(self, buf: int, offsets: Iterable[int]) -> None:
        """Cut buffer ``buf`` into cells at ``offsets`` (from 0 to its size; empty cells allowed)."""
        off = np.asarray(list(offsets), dtype=np.int64)
        size = self.buffers[buf].nbytes
        if off.size < 2 or off[0] != 0 or off[-1] != size or np.any(np.diff(off) < 0):
            raise ProgramError(f"grid of buffer {self.buffers[buf].name!r} must rise from 0 to {size}")
        self._grid[buf] = off

    def chunk(self, buf: int, c0: int, c1: int | None = None) -> int:
        """Id of the chunk made of cells ``c0 .. c1-1`` of buffer ``buf`` (one cell if c1 is None)."""
        c1 = c0 + 1 if c1 is None else c1
        key = (buf, c0, c1)
        cid = self._chunk_ids.get(key)
        if cid is None:
            grid = self._grid.get(buf)
            if grid is None:
                self.grid(buf, (0, self.buffers[buf].nbytes))
                grid = self._grid[buf]
            if not 0 <= c0 <= c1 < grid.size:
                raise ProgramError(f"cells {c0}..{c1} out of range for buffer {buf}")
            cid = len(self._chunk_cells)
            self._chunk_ids[key] = cid
            self._chunk_cells.append(key)
        return cid

    # -- ops -------------------------------------------------------------------------------------
    def transfer(self, src: int, dst: int, chunk: int, kind: OpKind, step: int,
                 deps: Sequence[int] | None = None, after: Sequence[int] = ()) -> int:
        """Add a transfer; with ``deps=None`` its dependencies are derived (see the module note).
        ``after`` adds ordering that is not data flow (a rank that sends one message at a time)."""
        op = len(self._ops)
        buf, c0, c1 = self._chunk_cells[chunk]
        if deps is None:
            found: set[int] = set()
            for c in range(c0, c1):
                barrier, acc, _ = self._cell(src, buf, c)
                found.update(barrier)
                found.update(acc)
                barrier, acc, readers = self._cell(dst, buf, c)
                found.update(barrier)
                found.update(readers)
                if kind == OpKind.COPY:
                    found.update(acc)
            for c in range(c0, c1):
                self._cell(src, buf, c)[2].append(op)
                self._write(dst, buf, c, op, reduce=kind == OpKind.REDUCE)
            deps = sorted(found.union(after))
        else:
            deps = sorted(set(deps).union(after))
        self._ops.append((int(kind), src, dst, chunk, step))
        self._deps.append(list(deps))
        return op

    def compute(self, rank: int, step: int, *, seconds: float = 0.0, flops: float = 0.0,
                label: str = "", deps: Sequence[int] = ()) -> int:
        self._compute.append((float(seconds), float(flops), label))
        return self._add(OpKind.COMPUTE, rank, len(self._compute) - 1, step, list(deps))

    def alloc(self, rank: int, buf: int, step: int, deps: Sequence[int] = ()) -> int:
        return self._whole_buffer(OpKind.ALLOC, rank, buf, step, deps)

    def free(self, rank: int, buf: int, step: int, deps: Sequence[int] = ()) -> int:
        return self._whole_buffer(OpKind.FREE, rank, buf, step, deps)

    def _whole_buffer(self, kind: OpKind, rank: int, buf: int, step: int, deps: Sequence[int]) -> int:
        op = len(self._ops)
        found = set(deps)
        ncells = self._grid[buf].size - 1 if buf in self._grid else 1
        for c in range(ncells):
            found.update(*self._cell(rank, buf, c))
            self._write(rank, buf, c, op, reduce=False)
        return self._add(kind, rank, buf, step, sorted(found))

    def _add(self, kind: OpKind, rank: int, arg: int, step: int, deps: list[int]) -> int:
        self._ops.append((int(kind), rank, -1, arg, step))
        self._deps.append(deps)
        return len(self._ops) - 1

    def _cell(self, rank: int, buf: int, c: int) -> list[list[int]]:
        key = (rank, buf, c)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = [[], [], []]
        return st

    def _write(self, rank: int, buf: int, c: int, op: int, *, reduce: bool) -> None:
        st = self._cell(rank, buf, c)
        if reduce:
            if st[2]:
                st[0], st[1] = st[2], [op]
            else:
                st[1] = st[1] + [op]
        else:
            st[0], st[1] = [op], []
        st[2] = []

    # -- result ------------------------------------------------------------------------------------
    def build(self) -> Program:
        """The validated program, ops stably sorted by step (deps renumbered to match)."""
        ops = np.array(self._ops, dtype=np.int64).reshape(-1, 5)
        ptr, idx = csr_from_lists(self._deps)
        cb, co, cl = [], [], []
        for buf, c0, c1 in self._chunk_cells:
            g = self._grid[buf]
            cb.append(buf)
            co.append(g[c0])
            cl.append(g[c1] - g[c0])
        comp = np.array([c[:2] for c in self._compute], dtype=np.float64).reshape(-1, 2)
        prog = Program(self.nranks, ops[:, 0], ops[:, 1], ops[:, 2], ops[:, 3], ops[:, 4], ptr, idx,
                       tuple(self.buffers), np.array(cb), np.array(co), np.array(cl),
                       comp[:, 0], comp[:, 1], tuple(c[2] for c in self._compute),
                       tuple(self.phases), self.meta)
        if prog.n_ops and np.any(np.diff(prog.step) < 0):
            prog = reorder(prog, np.argsort(prog.step, kind="stable"))
        return prog.validate()
