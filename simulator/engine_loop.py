"""The event loop: any program, any sharing, as an object with SimPy's shape.

:class:`EventLoop` is SimPy's ``Environment`` cut down to this engine (simpy/core.py: ``schedule``
puts an event on a heap of (time, sequence, ...), ``step`` processes the next one, ``run`` steps
until nothing is left). Its events are (time, sequence, kind, op) tuples of plain numbers on that heap:
the end of a message's latency and the end of an op. A transfer's bytes are not events but a *flow*:
no object per flow, its state lives in arrays (remaining
bytes per op; rate, start of the current rate period and bytes at that start per active flow), the
next flow to drain is found by one numpy pass over the active flows, and all events at one instant
are one batch. After a batch that starts or ends flows, max-min rates are recomputed only for the
flows that share a link, directly or through other flows, with a flow that started or ended (the
connected part of the flow-link graph the change touches); the others keep their rates, which are
the max-min rates of their own part (:mod:`simulator.maxmin`), on each route's binding hops only
(:func:`binding_hops`), as (F, k) rows where every route has at most k of them; there the touched
flows are those of the touched parts of the route graph (routes joined by shared binding links), a
union of connected parts, found without closure rounds.
Programs of transfers (no compute or collective ops) run the same loop compiled
(:mod:`simulator.engine_kernel`, [Note: the compiled event loop]): the same events, order and floats.
A flow whose rate changes starts a new rate period: one link-usage row per period and hop.
Collectives on several comm lanes (:mod:`simulator.engine_share`) add two events: the end of a
collective's latency term (COLL_BW: its work joins the shared set) and the first drain of the
shared set at today's rates (COLL_END, superseded by a version number when the set changes first).
Deterministic: no randomness; ties on the heap are broken by the order events were scheduled.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from .engine_context import Context, Timing, empty_timing
from .engine_share import Sharing, collective_groups
from .engine_sweep import _groups
from .errors import UsageError
from .maxmin import max_min_csr, max_min_rows
from .program import OpKind

LAT_END, OP_END, COLL_BW, COLL_END = 0, 1, 2, 3  # COLL_*: a collective's bandwidth phase starts / one drains
_DRAINED = 1e-9  # a flow with at most this fraction of its bytes left is done
_CLOSURE_ROUNDS = 8  # expansion rounds to find the touched part before recomputing every flow


class EventLoop:
    """Run a :class:`~simulator.engine_context.Context`'s program; :meth:`run` returns its Timing.
    Programs without compute or collective ops run compiled (:mod:`simulator.engine_kernel`,
    [Note: the compiled event loop]), the same events in the same order, the same floats."""

    def __init__(self, ctx: Context, link_bw: np.ndarray, compiled: bool | None = None, record: bool = True) -> None:
        """``compiled``: None runs the compiled loop wherever it applies; False keeps this Python
        one (the reference the tests compare with). ``record``: keep the rate periods (the link
        rows); without, the Timing has none (as the sweep's without rows)."""
        prog, routes = ctx.prog, ctx.routes
        self.ctx, self.link_bw = ctx, np.asarray(link_bw, dtype=np.float64)
        m = self.m = prog.n_ops
        self.compiled = compilable(prog) and compiled is not False
        self.record = record
        tr = np.flatnonzero(prog.is_transfer)
        slot = np.full(m, -1, dtype=np.int64)
        conn = np.full(m, -1, dtype=np.int64)
        if tr.size:
            slot[tr] = routes.slots(prog.rank[tr], prog.peer[tr])
            conn[tr] = ctx.connections(tr, slot[tr])
        self.slot_arr = slot
        hop_ptr, hop_len, self.hop_idx = binding_hops(routes, self.link_bw)
        if self.compiled:
            self._kernel_args = self._compiled_init(prog, ctx, slot, conn, hop_ptr, hop_len)
            return
        # every route at most k binding hops (NCCL's programs on nodes:MxG: 2): the flow sets as (F, k)
        # rows, a shorter route padded with a link of infinite capacity, which never binds (its share
        # is infinite, so no flow's smallest share changes and it freezes nothing) and links no flows
        self.hop_k, self.pad_link = 0, -1
        if hop_len.size and hop_len.min() > 0 and hop_len.max() <= 4 and np.isfinite(self.link_bw).all():
            k = self.hop_k = int(hop_len.max())
            rows = np.full((hop_len.size, k), self.link_bw.size, dtype=np.int64)
            rows[np.arange(k)[None, :] < hop_len[:, None]] = self.hop_idx
            self.hop_rows = rows
            if hop_len.min() < k:
                self.pad_link = self.link_bw.size
                self.link_bw = np.append(self.link_bw, np.inf)
            # routes joined by shared binding links, directly or through other routes: flows can only
            # be connected within one of these parts, so the flows of the parts a change touches are
            # a union of the connected parts of the flow-link graph it touches
            self.op_slot = np.maximum(slot, 0)
            parts = route_parts(hop_len, self.hop_idx, self.link_bw.size)
            self.n_parts = int(parts.max()) + 1
            self.op_part = parts[self.op_slot]
            self.act_part = np.zeros(0, dtype=np.int64)
            self.act_rows = np.zeros((0, self.hop_k), dtype=np.int64)  # the active flows' rows, as act
        if hop_len.size:  # each op's route as a range of self.hop_idx (none off transfers)
            self.op_hop_ptr = hop_ptr[np.maximum(slot, 0)]
            self.op_hop_len = np.where(slot >= 0, hop_len[np.maximum(slot, 0)], 0)
        else:
            self.op_hop_ptr = self.op_hop_len = np.zeros(m, dtype=np.int64)
        lat = routes.lat[np.maximum(slot, 0)] if routes.lat.size else np.zeros(m)
        self.nbytes = prog.op_bytes.astype(np.float64)
        red_cost = np.where(prog.kind == OpKind.REDUCE, self.nbytes * ctx.gamma, 0.0)
        owner = np.repeat(np.arange(m, dtype=np.int64), np.diff(prog.dep_ptr))
        order = np.argsort(prog.dep_idx, kind="stable")
        rev_ptr = np.searchsorted(prog.dep_idx[order], np.arange(m + 1))
        rev_idx = owner[order]
        self.kind = prog.kind.tolist()
        self.rank = prog.rank.tolist()
        self.arg = prog.arg.tolist()
        self.conn = conn.tolist()
        self.lat = lat.tolist()
        self.nb = self.nbytes.tolist()
        self.red_cost = red_cost.tolist()
        self.duration = ctx.duration.tolist()
        self.coll_dur = ctx.coll_dur.tolist()
        self.rev_ptr = rev_ptr.tolist()
        self.rev_idx = rev_idx.tolist()
        self.waiting = np.diff(prog.dep_ptr).tolist()
        self.start = np.full(m, np.nan)
        self.end = np.full(m, np.nan)
        self.remaining = self.nbytes.copy()
        n = prog.nranks
        self.conn_queue: dict[int, deque] = {}
        self.conn_busy: set[int] = set()
        nl = ctx.n_lanes  # collectives: one lane per rank and comm lane (simulator/engine_share.py)
        self.lane_of = [0] * m
        is_coll = prog.kind == OpKind.COLLECTIVE
        self.sharing = None
        if nl > 1:
            ci = np.flatnonzero(is_coll)
            lane_of = np.zeros(m, dtype=np.int64)
            lane_of[ci] = ctx.coll_lane[prog.arg[ci]] * n
            self.lane_of = lane_of.tolist()
            self.sharing = Sharing(*collective_groups(prog))
            self.coll_lat = ctx.coll_lat.tolist()
            self.coll_work = (ctx.coll_dur - ctx.coll_lat).tolist()
            self.coll_ops: dict[int, list[int]] = {}
            self.share_version = 0
            self.share_first = -1
        self.lane_queue = {OpKind.COMPUTE: [deque() for _ in range(n)],
                           OpKind.COLLECTIVE: [deque() for _ in range(n * nl)]}
        self.lane_busy = {OpKind.COMPUTE: [False] * n, OpKind.COLLECTIVE: [False] * (n * nl)}
        self.coll_need = np.bincount(prog.arg[is_coll], minlength=prog.coll_kind.size).tolist()
        self.coll_here: dict[int, list[int]] = {}
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.now = 0.0
        # flows in their bandwidth phase, in the order they started: op id, rate, rate period
        self.act = np.zeros(0, dtype=np.int64)
        self.rate = np.zeros(0)
        self.t0 = np.zeros(0)  # start of the open rate period
        self.rem0 = np.zeros(0)  # remaining bytes at that start
        self.new_flows: list[int] = []
        self.gone_links: list[np.ndarray] = []
        self.rows: list[tuple[np.ndarray, ...]] = []  # closed rate periods: (op, t0, t1, bytes)

    # -- the compiled loop ------------------------------------------------------------------------
    def _compiled_init(self, prog, ctx: Context, slot: np.ndarray, conn: np.ndarray, hop_ptr: np.ndarray,
                       hop_len: np.ndarray) -> tuple:
        """The arguments of :func:`simulator.engine_kernel.run_transfers`, per op."""
        m, routes = self.m, ctx.routes
        on = slot >= 0
        s0 = np.maximum(slot, 0)
        if hop_len.size:
            parts = route_parts(hop_len, self.hop_idx, self.link_bw.size)
            op_part, n_parts = np.where(on, parts[s0], 0), int(parts.max()) + 1
            op_ptr, op_len = np.where(on, hop_ptr[s0], 0), np.where(on, hop_len[s0], 0)
        else:
            op_part, n_parts = np.zeros(m, np.int64), 1
            op_ptr = op_len = np.zeros(m, np.int64)
        lat = routes.lat[s0] if routes.lat.size else np.zeros(m)
        nbytes = prog.op_bytes.astype(np.float64)
        red = np.where(prog.kind == OpKind.REDUCE, nbytes * ctx.gamma, 0.0)
        owner = np.repeat(np.arange(m, dtype=np.int64), np.diff(prog.dep_ptr))
        order = np.argsort(prog.dep_idx, kind="stable")
        rev_ptr = np.searchsorted(prog.dep_idx[order], np.arange(m + 1)).astype(np.int64)
        i64 = np.int64
        return (prog.is_transfer.copy(), nbytes, np.asarray(lat, np.float64), red, conn.astype(i64),
                int(ctx.n_connections), np.diff(prog.dep_ptr).astype(i64), rev_ptr, owner[order].astype(i64),
                op_ptr.astype(i64), op_len.astype(i64), self.hop_idx.astype(i64), op_part.astype(i64), n_parts,
                np.array(self.link_bw, dtype=np.float64), bool(self.record))  # writable: one signature

    def _run_compiled(self) -> Timing:
        from .engine_kernel import run_transfers  # numba: imported where it runs, not by every CLI start

        start, end, op, t0, t1, nb = run_transfers(*self._kernel_args)
        self.start, self.end, self.coll_here = start, end, {}
        self._check_finished()
        if not self.record:
            return Timing(start, end, None, None, None, None, "events")
        return Timing(start, end, op, t0, t1, nb, "events")

    # -- SimPy's Environment: schedule, step, run ----------------------------------------------
    def schedule(self, t: float, what: int, op: int) -> None:
        heapq.heappush(self.heap, (t, self.seq, what, op))
        self.seq += 1

    def run(self) -> Timing:
        if self.m == 0:
            return empty_timing("events")
        if self.compiled:
            return self._run_compiled()
        for op in np.flatnonzero(np.asarray(self.waiting) == 0).tolist():
            self.ready(op, 0.0)
        while self.heap or self.act.size:
            self.step()
        self._check_finished()
        if not self.record:
            return Timing(self.start, self.end, None, None, None, None, "events")
        if self.rows:
            op, t0, t1, nb = (np.concatenate(c) for c in zip(*self.rows))
        else:
            op, t0, t1, nb = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0)
        return Timing(self.start, self.end, op, t0, t1, nb, "events")

    def step(self) -> None:
        """Advance to the next instant (a timed event or the first flow to drain) and handle
        everything that happens then as one batch."""
        t = self.heap[0][0] if self.heap else np.inf
        first = -1
        act = self.act
        if act.size:
            to_drain = self.remaining[act] / self.rate
            first = int(np.argmin(to_drain))
            t_flow = self.now + float(to_drain[first])
            if t_flow <= t:
                t = t_flow
            else:
                first = -1
            self.remaining[act] -= self.rate * (t - self.now)
        self.now = now = t
        changed = False
        if act.size:
            done = self.remaining[act] <= _DRAINED * self.nbytes[act]
            if first >= 0:
                done[first] = True
            if done.any():
                changed = True
                fin = act[done]
                self.remaining[fin] = 0.0
                self._close(done, np.zeros(fin.size))
                self.gone_links.append(fin)
                keep = ~done
                self.act, self.rate, self.t0, self.rem0 = act[keep], self.rate[keep], self.t0[keep], self.rem0[keep]
                if self.hop_k:
                    self.act_rows, self.act_part = self.act_rows[keep], self.act_part[keep]
                for f in fin.tolist():
                    self.arrive(f, now)
        heap = self.heap
        shared = False
        while heap and heap[0][0] <= now:
            _, _, what, op = heapq.heappop(heap)
            if what == LAT_END:
                if self.nb[op] > 0:
                    self.new_flows.append(op)
                    changed = True
                else:
                    self.arrive(op, now)
            elif what == OP_END:
                self.finish(op, now)
            elif what == COLL_BW:
                self.sharing.add(op, self.coll_work[op], now)
                shared = True
            elif op == self.share_version:  # COLL_END, not superseded by a later change
                for c in self.sharing.pop_done(now, self.share_first):
                    for o in self.coll_ops.pop(c):
                        self.schedule(now, OP_END, o)
                shared = True
        if changed:
            self._reshare()
        if shared:  # the set of collectives in their bandwidth phase changed: their next end
            self.share_version += 1
            t_end, self.share_first = self.sharing.next_end()
            if self.share_first >= 0:
                self.schedule(t_end, COLL_END, self.share_version)

    # -- flows ---------------------------------------------------------------------------------
    def _close(self, mask: np.ndarray, rem_now: np.ndarray) -> None:
        """Record the open rate periods of the active flows in ``mask`` as ending now."""
        if not self.record:
            return
        t0 = self.t0[mask]
        keep = self.now > t0
        if keep.any():
            f = self.act[mask][keep]
            nb = self.nbytes[f]
            moved = np.round(nb - rem_now[keep]) - np.round(nb - self.rem0[mask][keep])
            self.rows.append((f, t0[keep], np.full(f.size, self.now), moved))

    def _reshare(self) -> None:
        """Add the flows that started this instant and recompute the rates the change touches."""
        now = self.now
        if self.new_flows:
            new = np.array(self.new_flows, dtype=np.int64)
            self.new_flows = []
            self.act = np.concatenate([self.act, new])
            self.rate = np.concatenate([self.rate, np.full(new.size, np.nan)])
            self.t0 = np.concatenate([self.t0, np.full(new.size, now)])
            self.rem0 = np.concatenate([self.rem0, self.remaining[new]])
            if self.hop_k:
                self.act_rows = np.concatenate([self.act_rows, self.hop_rows[self.op_slot[new]]])
                self.act_part = np.concatenate([self.act_part, self.op_part[new]])
        gone = np.concatenate(self.gone_links) if self.gone_links else np.zeros(0, dtype=np.int64)
        self.gone_links = []
        if self.act.size == 0:
            return
        if self.hop_k:
            self._reshare_rows(now, gone)
            return
        lens = self.op_hop_len[self.act]
        ptr = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=ptr[1:])
        idx = self.hop_idx[np.repeat(self.op_hop_ptr[self.act] - ptr[:-1], lens) + np.arange(ptr[-1])]
        touched = self._touched(ptr, idx, lens, gone)
        if touched is None:
            sub, rates = slice(None), max_min_csr(ptr, idx, self.link_bw)
        else:
            sub = np.flatnonzero(touched)
            if sub.size == 0:
                return
            sl = lens[sub]
            sptr = np.zeros(sub.size + 1, dtype=np.int64)
            np.cumsum(sl, out=sptr[1:])
            sidx = idx[np.repeat(ptr[sub] - sptr[:-1], sl) + np.arange(sptr[-1])]
            rates = max_min_csr(sptr, sidx, self.link_bw)
        self._new_rates(sub, rates, now)

    def _reshare_rows(self, now: float, gone: np.ndarray) -> None:
        """:meth:`_reshare` where every route has ``hop_k`` binding hops: the same sets, as rows."""
        rows = self.act_rows
        touched = self._touched_rows(rows, gone)
        if touched is None:
            sub, rates = slice(None), max_min_rows(rows, self.link_bw)
        else:
            sub = np.flatnonzero(touched)
            if sub.size == 0:
                return
            rates = max_min_rows(rows[sub], self.link_bw)
        self._new_rates(sub, rates, now)

    def _touched_rows(self, rows: np.ndarray, gone: np.ndarray):
        """:meth:`_touched` by parts of the route graph: the active flows of every part that holds a
        new or ended flow (a union of connected parts of the flow-link graph, so their max-min rates
        are theirs alone; None: more than half of the flows)."""
        nf = rows.shape[0]
        fresh = np.isnan(self.rate)
        if fresh.all():
            return None
        hit = np.zeros(self.n_parts, dtype=bool)
        hit[self.act_part[fresh]] = True
        if gone.size:
            hit[self.op_part[gone]] = True
        flows = hit[self.act_part]
        return None if 2 * np.count_nonzero(flows) > nf else flows

    def _new_rates(self, sub, rates: np.ndarray, now: float) -> None:
        """Give the flows ``sub`` their new rates; one whose rate changes starts a rate period."""
        old = self.rate[sub]
        split = (old != rates) & ~np.isnan(old) & (self.t0[sub] < now)
        if split.any():  # a flow whose rate changes starts a new rate period
            mask = np.zeros(self.act.size, dtype=bool)
            pos = np.arange(self.act.size)[sub][split]
            mask[pos] = True
            rem = self.remaining[self.act[mask]]
            self._close(mask, rem)
            self.t0[mask] = now
            self.rem0[mask] = rem
        self.rate[sub] = rates

    def _touched(self, ptr, idx, lens, gone: np.ndarray):
        """Active flows connected through shared links to the links of new or ended flows
        (None: all of them, or more rounds than it is worth)."""
        nf = lens.size
        fresh = np.isnan(self.rate)
        if fresh.all():
            return None
        mark = np.zeros(self.link_bw.size, dtype=bool)
        owner = np.repeat(np.arange(nf), lens)
        mark[idx[fresh[owner]]] = True
        if gone.size:
            gl = self.op_hop_len[gone]
            gp = np.repeat(self.op_hop_ptr[gone] - np.concatenate([[0], np.cumsum(gl)[:-1]]), gl) + np.arange(gl.sum())
            mark[self.hop_idx[gp]] = True
        flows = fresh.copy()
        for _ in range(_CLOSURE_ROUNDS):
            hit = np.zeros(nf, dtype=bool)
            hit[owner[mark[idx]]] = True
            grow = hit & ~flows
            if not grow.any():
                return flows
            flows |= grow
            if flows.mean() > 0.5:
                return None
            mark[idx[grow[owner]]] = True
        return None

    # -- ops -----------------------------------------------------------------------------------
    def begin(self, op: int, t: float) -> None:
        self.start[op] = t
        self.schedule(t + self.lat[op], LAT_END, op)

    def arrive(self, op: int, t: float) -> None:
        """The last byte of ``op`` is in: free its connection, reduce, end."""
        self.schedule(t + self.red_cost[op], OP_END, op)
        c = self.conn[op]
        q = self.conn_queue.get(c)
        if q:
            self.begin(q.popleft(), t)
        else:
            self.conn_busy.discard(c)

    def ready(self, op: int, t: float) -> None:
        """``op`` has no unmet deps at ``t``: start it, or queue it behind its lane."""
        k = self.kind[op]
        if k <= OpKind.COPY:
            c = self.conn[op]
            if c in self.conn_busy:
                self.conn_queue.setdefault(c, deque()).append(op)
            else:
                self.conn_busy.add(c)
                self.begin(op, t)
        elif k == OpKind.COLLECTIVE or k == OpKind.COMPUTE:
            r = self.rank[op] + self.lane_of[op]
            busy = self.lane_busy[k]
            if busy[r]:
                self.lane_queue[k][r].append(op)
            else:
                busy[r] = True
                self._lane_start(k, op, t)
        else:
            self.start[op] = t
            self.schedule(t, OP_END, op)

    def _lane_start(self, k: int, op: int, t: float) -> None:
        if k == OpKind.COMPUTE:
            self.start[op] = t
            self.schedule(t + self.duration[op], OP_END, op)
            return
        c = self.arg[op]  # a collective starts once all its ops head their ranks' comm lanes
        here = self.coll_here.setdefault(c, [])
        here.append(op)
        if len(here) == self.coll_need[c]:
            del self.coll_here[c]
            if self.sharing is not None:  # its latency, then its work at its share of the links
                for o in here:
                    self.start[o] = t
                self.coll_ops[c] = here
                self.schedule(t + self.coll_lat[c], COLL_BW, c)
                return
            for o in here:
                self.start[o] = t
                self.schedule(t + self.coll_dur[c], OP_END, o)

    def finish(self, op: int, t: float) -> None:
        self.end[op] = t
        k = self.kind[op]
        if k == OpKind.COLLECTIVE or k == OpKind.COMPUTE:
            r = self.rank[op] + self.lane_of[op]
            q = self.lane_queue[k][r]
            if q:
                self._lane_start(k, q.popleft(), t)
            else:
                self.lane_busy[k][r] = False
        waiting = self.waiting
        for w in self.rev_idx[self.rev_ptr[op]:self.rev_ptr[op + 1]]:
            waiting[w] -= 1
            if waiting[w] == 0:
                self.ready(w, t)

    def _check_finished(self) -> None:
        if np.isnan(self.end).any():
            bad = int(np.flatnonzero(np.isnan(self.end))[0])
            if self.coll_here:
                c, ops = next(iter(self.coll_here.items()))
                raise UsageError(f"deadlock: collective {c} has {len(ops)} of {int(self.coll_need[c])} ranks at "
                                 f"the head of their comm lanes (the others wait behind another collective)")
            raise UsageError(f"op {bad} never ran: its dependencies never finished")


def binding_hops(routes, link_bw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each route's hops that max-min sharing needs, as CSR (ptr, len per route slot, link ids).

    Two links that every route crosses both or neither (a GPU's link to its NIC and the NIC's to
    the fabric) always carry the same flows, so the one with more capacity never binds: at every
    round of progressive filling the same rates have been taken off both, its share is no smaller,
    and any flow it could freeze the other freezes at the same round and rate. Dropping it leaves
    every rate the same float (and :meth:`EventLoop._touched` the same flows); the link rows keep
    every hop."""
    lens, idx = routes.hop_len, routes.hop_idx
    if idx.size == 0:
        return routes.hop_ptr, lens, idx
    slot = np.repeat(np.arange(lens.size), lens)
    order = np.lexsort((slot, idx))  # hops by link, then route
    li, sl = idx[order], slot[order]
    cut = np.flatnonzero(li[1:] != li[:-1]) + 1
    bw = np.asarray(link_bw, dtype=np.float64)
    best: dict[bytes, int] = {}
    for a, b in zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [li.size]]).tolist()):
        link, key = int(li[a]), sl[a:b].tobytes()  # the routes that cross this link
        cur = best.get(key)
        if cur is None or (bw[link], link) < (bw[cur], cur):
            best[key] = link
    keep = np.zeros(bw.size, dtype=bool)
    keep[list(best.values())] = True
    kept = keep[idx]
    new_len = np.bincount(slot[kept], minlength=lens.size).astype(np.int64)
    ptr = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(new_len, out=ptr[1:])
    return ptr, new_len, idx[kept]


def route_parts(hop_len: np.ndarray, hop_idx: np.ndarray, nlinks: int) -> np.ndarray:
    """Per route slot, its *part*: routes joined by shared binding links (``hop_idx``, CSR lengths
    ``hop_len``), directly or through other routes, numbered 0.. . Flows can only be connected
    within one part, so max-min rates never mix parts."""
    comp = _groups(hop_idx, np.repeat(np.arange(hop_len.size), hop_len), hop_len.size, nlinks)
    return np.unique(comp, return_inverse=True)[1].reshape(-1)


def compilable(prog) -> bool:
    """Programs the compiled loop runs: no compute or collective ops (they have lanes)."""
    k = prog.kind
    return not bool(np.any((k == OpKind.COMPUTE) | (k == OpKind.COLLECTIVE)))
