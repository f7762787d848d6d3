"""The replay cursor: a position in a trace and the state there. No widgets, no Textual.

[Note: positions]
The cursor stands at a *step* or at a *time* on the trace's clock.
- step s (-1 .. n_steps-1): every op with step <= s has finished; s = -1 is the initial state.
  Every builder's program is sorted by step, so this is the prefix of ops ``0 .. bounds[s+1]-1``.
- time t: the ops with ``end <= t`` have finished (ops that never ran never do). An op in that set
  whose dependency is not (clock skew in a measured trace) is left out, so that the set stays closed
  under dependencies as :func:`simulator.provenance.layout` requires.
The *current step* is the one the views list and highlight: s itself, or at a time position the
step of the latest finished op. Seeking to an op goes to the end of its step: the ops of a step run
concurrently and their order inside it means nothing.

[Note: moving]
All state comes from the simulator's :class:`~simulator.provenance.Layout`; this module only
decides which ops are finished and keeps what it read. Forward, the layout advances
(``Layout.advance_to``); before each advance the cursor saves the pre-image of the cells the ops
are about to write, an *undo record*. Moving back pops records and writes their pre-images back,
one numpy scatter each. Records end on step boundaries: one per step near the target, one per
sqrt(n_steps) steps further back, so they are checkpoints sqrt(n_steps) apart, kept as deltas; a
step back never re-advances more than sqrt(n_steps) steps. Why not whole snapshots: a 1024-rank
layout is 128 MiB (1024 ranks x 1024 segments x 16 words), so 46 of them would take 5.8 GiB,
while the record of a ring step is 1024 cells x 128 B = 128 KiB and undoing it takes ~0.5 ms;
every record of that trace together is ~290 MiB (benchmarks/tui_speed.py measures both
directions). A time position whose finished set is not a prefix of op ids gets its own Layout
built from the set: O(ops), and rare (ops finishing out of id order).

[Note: changed cells]
The cells a step *changed* are the cells of the shown buffer that its finished transfers (and
allocs/frees) wrote: a copy that lands the set a cell already held still counts, since the step
touched it.

[Note: the shown buffer]
``counts`` and ``changed`` are of one buffer, ``buffer`` (0 unless :meth:`show_buffer` picks
another): what the grid shows. NCCL's programs cut the message into one buffer per ring, tree
channel or NVLS head (``Program.buffers``, ``chunk_buf``); :attr:`data_buffers` are those slices
(the buffers that exist before the first op, category ``data``), :attr:`message_bytes` the whole
message. Showing another buffer recounts that buffer alone (one popcount over its cells); the
layout itself always holds every buffer, so nothing is replayed.

Why this module passes 400 lines: the cursor and the state it derives at the cursor (layout,
counters, link loads, memory) are one object that tests drive without a screen; splitting the
derived views from the cursor would pass the cursor's private caches between modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.collectives import ALIASES
from rankscope.simulator.costs import BUSBW_FACTOR
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.program import OpKind, Program, ring_bytes_sent
from rankscope.simulator.provenance import Layout, layout
from rankscope.simulator.trace import Trace

from .links import LinkIndex, LinkUsage


@dataclass
class _Undo:
    """What advancing ops ``a .. b-1`` overwrote (see [Note: moving])."""

    a: int
    b: int
    cells: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (buffer, ranks, segs, old bits)
    alive: np.ndarray   # the alive table before (N x buffers bools: cheap to keep whole)
    counts: np.ndarray  # contribution counts of the shown buffer's cells before
    shown: int          # the buffer ``counts`` are of


class Replay:
    """A cursor over ``trace`` (see [Note: positions] and [Note: moving])."""

    def __init__(self, trace: Trace) -> None:
        p = trace.program
        self.trace, self.program = trace, p
        self.bounds = p.step_bounds()  # ProgramError when ops are not sorted by step
        self.n_steps = p.n_steps
        self._lay = layout(p, 0)
        self._detached: tuple[Layout, np.ndarray] | None = None
        self._journal: list[_Undo] = []
        self._seg_lo, self._seg_hi = self._chunk_segments()
        self._nseg = [b.size - 1 for b in self._lay.bounds]
        self._bytes = p.op_bytes.astype(np.float64)
        self.total_bytes = float(self._bytes.sum())
        self.buffer = 0  # the buffer counts and changed are of (see [Note: the shown buffer])
        self.data_buffers = tuple(i for i, b in enumerate(p.buffers) if b.alive and b.category == "data")
        self.counts = self._lay.counts(0) if p.buffers else np.zeros((p.nranks, 0), np.int64)
        self.sent = np.zeros(p.nranks)
        self.received = np.zeros(p.nranks)
        self._done_at = np.fmax.accumulate(trace.end) if p.n_ops else np.zeros(0)
        ran = trace.ran
        self.t0 = float(np.min(trace.start[ran])) if ran.any() else 0.0
        self.t_end = float(np.max(trace.end[ran])) if ran.any() else 0.0
        self.mode, self.step, self.time = "step", -1, self.t0
        self.changed = np.zeros((0, 2), np.int64)
        self._changed_by = np.zeros(0, np.int64)  # the ops ``changed`` is of
        self._every = max(1, int(np.ceil(np.sqrt(self.n_steps))))
        self._owner: np.ndarray | None = None
        self._latest: np.ndarray | None = None
        self._links: LinkIndex | None = None

    # -- shape ---------------------------------------------------------------------------------
    @property
    def nranks(self) -> int:
        return self.program.nranks

    @property
    def nsegments(self) -> int:
        return self.counts.shape[1]

    @property
    def message_bytes(self) -> int:
        """The whole message's bytes (:attr:`Program.message_bytes`: ``meta["nbytes"]``, else the
        sum of the data buffers, every slice of the message; see [Note: the shown buffer])."""
        return self.program.message_bytes

    def show_buffer(self, buf: int) -> None:
        """Make ``counts`` and ``changed`` those of buffer ``buf`` (see [Note: the shown buffer])."""
        buf = int(buf)
        if not 0 <= buf < len(self.program.buffers):
            raise RankscopeError(f"no buffer {buf}: this program has buffers 0..{len(self.program.buffers) - 1}")
        if buf == self.buffer:
            return
        self.buffer = buf
        self.counts = self.layout.counts(buf)
        self.changed = self._changed(self._changed_by)

    def next_buffer(self, by: int = 1) -> int:
        """The data buffer ``by`` after the shown one (before, when negative), wrapping round; the
        first data buffer from one that is not (the shown one when there is none)."""
        bufs = self.data_buffers
        if not bufs:
            return self.buffer
        if self.buffer not in bufs:
            return bufs[0]
        return bufs[(bufs.index(self.buffer) + by) % len(bufs)]

    @property
    def layout(self) -> Layout:
        """The provenance/memory state at the cursor."""
        return self._detached[0] if self._detached else self._lay

    @property
    def clock(self) -> str:
        """``simulated`` or the clock a measured trace was timed with."""
        return str(self.trace.meta.get("clock") or "unknown")

    # -- seeking -------------------------------------------------------------------------------
    def seek_step(self, s: int) -> None:
        """Go to step ``s`` (clamped to -1 .. n_steps-1): every op with step <= s finished."""
        s = max(-1, min(int(s), self.n_steps - 1))
        k = int(self.bounds[s + 1])
        self._goto(k)
        self.mode, self.step, self.time = "step", s, self._finish_time(k)
        self._changed_by = self.step_ops()
        self.changed = self._changed(self._changed_by)

    def seek_time(self, t: float) -> None:
        """Go to time ``t`` (seconds on the trace's clock): the ops with end <= t finished."""
        if self._owner is None:
            self._owner = dep_owner(self.program)
        done = finished_at(self.trace, t, self._owner)
        k = int(np.argmin(done)) if not done.all() else done.size
        if done[k:].any():
            lay = layout(self.program, done)
            self._detached = (lay, done)
            self.counts = lay.counts(self.buffer) if self.program.buffers else self.counts
            self.sent, self.received = self._traffic(np.flatnonzero(done))
            k = int(np.flatnonzero(done)[-1]) + 1
        else:
            self._goto(k)
        self.mode, self.time = "time", float(t)
        self.step = int(self.program.step[k - 1]) if k else -1
        ops = self.step_ops()
        self._changed_by = ops[done[ops]]
        self.changed = self._changed(self._changed_by)

    def seek_op(self, op: int) -> None:
        """Go to the end of op ``op``'s step (see [Note: positions])."""
        if not 0 <= op < self.program.n_ops:
            n = self.program.n_ops
            raise RankscopeError(f"no op {op}: this trace has ops 0..{n - 1}" if n else f"no op {op}: this trace has no ops")
        self.seek_step(int(self.program.step[op]))

    @property
    def step_complete(self) -> bool:
        """True when every op of the current step has finished."""
        if self.mode == "step" or self.step < 0:
            return True
        return bool(self.finished()[self.bounds[self.step]:self.bounds[self.step + 1]].all())

    @property
    def can_back(self) -> bool:
        return self.step > -1 or (self.mode == "time" and self.finished_count() > 0)

    @property
    def can_forward(self) -> bool:
        return self.step < self.n_steps - 1 or not self.step_complete

    def forward(self, n: int = 1) -> None:
        """``n`` steps on; from a time position inside a step, the first one completes it."""
        self.seek_step(self.step + n - (0 if self.step_complete else 1))

    def back(self, n: int = 1) -> None:
        """``n`` steps back; from a time position inside a step, the first one undoes it."""
        self.seek_step(self.step - n)

    def finished_count(self) -> int:
        """How many ops have finished."""
        return int(self._detached[1].sum()) if self._detached else self._lay.applied

    def finished(self) -> np.ndarray:
        """Mask of the finished ops."""
        if self._detached:
            return self._detached[1]
        done = np.zeros(self.program.n_ops, bool)
        done[: self._lay.applied] = True
        return done

    # -- the current step ----------------------------------------------------------------------
    def phase(self) -> str:
        """``reduce-scatter 2/7``: the current step's phase and its 1-based position there."""
        hit = self.program.phase_of(self.step) if self.step >= 0 else None
        return f"{hit[0].name} {hit[1]}/{hit[0].nsteps}" if hit else ""

    def step_ops(self, s: int | None = None) -> np.ndarray:
        """Ids of the ops of step ``s`` (default: the current step)."""
        s = self.step if s is None else s
        return np.arange(self.bounds[s], self.bounds[s + 1]) if s >= 0 else np.zeros(0, np.int64)

    def transfers(self) -> np.ndarray:
        """Ids of the current step's transfers."""
        ops = self.step_ops()
        return ops[self.program.kind[ops] <= OpKind.COPY]

    def comm_ops(self) -> np.ndarray:
        """Ids of the current step's transfers and COLLECTIVE ops (a training program's)."""
        ops = self.step_ops()
        k = self.program.kind[ops]
        return ops[(k <= OpKind.COPY) | (k == OpKind.COLLECTIVE)]

    def window(self, s: int | None = None) -> tuple[float, float]:
        """When step ``s`` ran: its first start and last end (NaN, NaN if it never ran)."""
        ops = self.step_ops(s)
        st, en = self.trace.start[ops], self.trace.end[ops]
        if not ops.size or np.isnan(st).all():
            return float("nan"), float("nan")
        return float(np.nanmin(st)), float(np.nanmax(en))

    # -- counters ------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds from the trace's first start to the cursor, on the trace's clock."""
        return max(0.0, self.time - self.t0)

    @property
    def moved(self) -> float:
        """Bytes the finished transfers moved."""
        return float(self.sent.sum())

    def algbw(self) -> float | None:
        """Algorithm bandwidth so far: S x (bytes moved so far / bytes the program moves) / elapsed.

        At the last step this is nccl-tests' S / t; before it, the rate at which the collective
        has progressed. None without a known collective or before any time has passed.
        """
        if self._collective() is None or self.elapsed <= 0 or self.total_bytes <= 0:
            return None
        return self.message_bytes * (self.moved / self.total_bytes) / self.elapsed

    def busbw(self) -> float | None:
        """Bus bandwidth so far: algbw x the collective's nccl-tests factor."""
        bw, coll = self.algbw(), self._collective()
        return None if bw is None else bw * BUSBW_FACTOR[coll](self.nranks)

    def _collective(self) -> str | None:
        name = self.program.meta.get("collective")
        name = ALIASES.get(name, name)
        return name if name in BUSBW_FACTOR else None

    # -- links ---------------------------------------------------------------------------------
    def links(self) -> LinkUsage:
        """Links busy in the current step's window, with bytes and utilisation."""
        if self._links is None:
            self._links = LinkIndex(self.trace)
        t0, t1 = self.window() if self.step >= 0 else (float("nan"),) * 2
        return self._links.usage(t0, t1)

    # -- who wrote what, who runs next ----------------------------------------------------------
    def last_writer(self, rank: int, seg: int, buf: int = 0) -> int | None:
        """The finished transfer that last wrote segment ``seg`` of buffer ``buf`` on ``rank``."""
        p = self.program
        cover = (p.chunk_buf == buf) & (self._seg_lo <= seg) & (seg < self._seg_hi)
        if self._detached:
            ids = np.flatnonzero((p.peer == rank) & self._detached[1])
        else:
            ids = np.flatnonzero(p.peer[: self._lay.applied] == rank)
        ids = ids[cover[p.arg[ids]]]
        return int(ids[-1]) if ids.size else None

    @property
    def latest_dep(self) -> np.ndarray:
        """Per op, its dependency that finished last (one that never ran counts as latest;
        ties go to the first listed), -1 for ops without dependencies. Computed once, for all
        ops at once: a critical path is then a chase along this array."""
        if self._latest is None:
            p, end = self.program, self.trace.end
            if self._owner is None:
                self._owner = dep_owner(p)
            e = np.where(np.isnan(end), np.inf, end)[p.dep_idx]
            has = np.diff(p.dep_ptr) > 0
            best = np.full(p.n_ops, -np.inf)
            if e.size:
                best[has] = np.maximum.reduceat(e, p.dep_ptr[:-1][has])
            idx = np.flatnonzero(e == best[self._owner])
            first = np.ones(idx.size, bool)
            first[1:] = self._owner[idx][1:] != self._owner[idx][:-1]
            self._latest = np.full(p.n_ops, -1, np.int64)
            self._latest[self._owner[idx[first]]] = p.dep_idx[idx[first]]
        return self._latest

    def next_op(self, rank: int) -> int | None:
        """The earliest unfinished op that ``rank`` runs."""
        p = self.program
        if self._detached:
            ahead = np.flatnonzero((p.rank == rank) & ~self._detached[1])
            return int(ahead[0]) if ahead.size else None
        k = self._lay.applied
        ahead = np.flatnonzero(p.rank[k:] == rank)
        return k + int(ahead[0]) if ahead.size else None

    # -- internals -----------------------------------------------------------------------------
    def _finish_time(self, k: int) -> float:
        t = float(self._done_at[k - 1]) if k else float("nan")
        return t if t == t else self.t0

    def _chunk_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per chunk, the first and past-the-last segment it covers (Layout.segs_of_chunk,
        for every chunk at once)."""
        p, lay = self.program, self._lay
        lo = np.zeros(p.chunk_len.size, np.int64)
        hi = np.zeros(p.chunk_len.size, np.int64)
        for b, edges in enumerate(lay.bounds):
            sel = p.chunk_buf == b
            lo[sel] = np.searchsorted(edges, p.chunk_off[sel])
            hi[sel] = np.searchsorted(edges, p.chunk_off[sel] + p.chunk_len[sel])
        return lo, hi

    def _writes(self, ops: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The (buffer, ranks, segments) cells that ``ops`` write: a transfer its receiver's
        chunk, an alloc or free its rank's whole buffer."""
        p = self.program
        kind = p.kind[ops]
        tr = ops[kind <= OpKind.COPY]
        mem = ops[(kind == OpKind.ALLOC) | (kind == OpKind.FREE)]
        ch = p.arg[tr]
        bufs = np.concatenate([p.chunk_buf[ch], p.arg[mem]]).astype(np.int64)
        rows = np.concatenate([p.peer[tr], p.rank[mem]]).astype(np.int64)
        lo = np.concatenate([self._seg_lo[ch], np.zeros(mem.size, np.int64)])
        nseg = np.asarray(self._nseg, np.int64)
        hi = np.concatenate([self._seg_hi[ch], nseg[p.arg[mem]]])
        out = []
        for b in np.unique(bufs):
            sel = bufs == b
            cnt = hi[sel] - lo[sel]
            segs = np.repeat(lo[sel] - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
            out.append((int(b), np.repeat(rows[sel], cnt), segs))
        return out

    def _changed(self, ops: np.ndarray) -> np.ndarray:
        """(K, 2) cells of the shown buffer ``ops`` write, as (rank, segment) (see [Note: changed cells])."""
        nseg = max(self.nsegments, 1)
        for b, rows, segs in self._writes(ops):
            if b == self.buffer:
                key = np.unique(rows * nseg + segs)
                return np.stack([key // nseg, key % nseg], axis=1)
        return np.zeros((0, 2), np.int64)

    def _traffic(self, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bytes ``ops`` make each rank send and receive. A COLLECTIVE op of rank r sends the ring's
        share of r (``Program.op_bytes``) and receives what its predecessor in the ring sends."""
        p, n = self.program, self.nranks
        tr = ops[p.kind[ops] <= OpKind.COPY]
        w = self._bytes[tr]
        # float64 counts bytes exactly below 2^53; bincount of nothing would come back as ints
        sent = np.bincount(p.rank[tr], weights=w, minlength=n).astype(np.float64)
        received = np.bincount(p.peer[tr], weights=w, minlength=n).astype(np.float64)
        co = ops[p.kind[ops] == OpKind.COLLECTIVE]
        if co.size:
            a = p.arg[co]
            sent += np.bincount(p.rank[co], weights=self._bytes[co], minlength=n)
            got = ring_bytes_sent(p.coll_kind[a], p.coll_bytes[a], (p.rank[co] - 1) % n, n)
            received += np.bincount(p.rank[co], weights=got.astype(np.float64), minlength=n)
        return sent, received

    def _goto(self, k: int) -> None:
        """Put the prefix layout at ``k`` finished ops.

        Undo records end on step boundaries: one per step within ``every`` steps of the target,
        one per ``every`` steps (aligned to multiples of it) further away, so a long jump leaves
        sqrt(n_steps)-spaced records and a step back from anywhere re-advances at most that far.
        """
        if self._detached:
            self._detached = None
            self.counts = self._lay.counts(self.buffer) if self.program.buffers else self.counts
            self.sent, self.received = self._traffic(np.arange(self._lay.applied))
        while self._journal and self._journal[-1].b > k:
            self._undo()
        step, every = self.program.step, self._every
        target = int(step[k - 1]) if k else -1
        while (a := self._lay.applied) < k:
            s = int(step[a])
            stop = (s // every + 1) * every if target - s >= every else s + 1
            self._advance(a, min(int(self.bounds[stop]), k))

    def _advance(self, a: int, b: int) -> None:
        lay, ops = self._lay, np.arange(a, b)
        cells = [(bf, rows, segs, lay.bits[bf][rows, segs]) for bf, rows, segs in self._writes(ops)]
        none, shown = np.zeros(0, np.int64), self.buffer
        rows0, segs0 = next(((r, s) for bf, r, s, _ in cells if bf == shown), (none, none))
        old_counts = self.counts[rows0, segs0]
        alive = lay.alive.copy()
        lay.advance_to(b)
        if rows0.size:
            self.counts[rows0, segs0] = np.bitwise_count(lay.bits[shown][rows0, segs0]).sum(
                axis=-1, dtype=np.int64)
        sent, received = self._traffic(ops)
        self.sent += sent
        self.received += received
        self._journal.append(_Undo(a, b, cells, alive, old_counts, shown))

    def _undo(self) -> None:
        u, lay = self._journal.pop(), self._lay
        for bf, rows, segs, old in u.cells:
            lay.bits[bf][rows, segs] = old
            if bf == self.buffer:  # counted before the advance, unless another buffer was shown then
                self.counts[rows, segs] = u.counts if u.shown == bf else np.bitwise_count(old).sum(
                    axis=-1, dtype=np.int64)
        lay.alive[:] = u.alive
        lay.applied = u.a
        sent, received = self._traffic(np.arange(u.a, u.b))
        self.sent -= sent
        self.received -= received


def dep_owner(p: Program) -> np.ndarray:
    """For each entry of ``p.dep_idx``, the op that waits (the CSR's row index)."""
    return np.repeat(np.arange(p.n_ops), np.diff(p.dep_ptr))


def finished_at(trace: Trace, t: float, owner: np.ndarray | None = None) -> np.ndarray:
    """Mask of the ops finished at time ``t``: end <= t, then every op with an unfinished
    dependency dropped until none is left (see [Note: positions]). ``owner`` is
    :func:`dep_owner`, passed in by callers that ask often."""
    p, end = trace.program, trace.end
    owner = dep_owner(p) if owner is None else owner
    done = np.zeros(end.shape, bool)
    np.less_equal(end, t, out=done, where=~np.isnan(end))
    while (bad := done[owner] & ~done[p.dep_idx]).any():
        done[owner[bad]] = False
    return done
