"""The event loop's op handlers on whole batches: every event of one instant in a few numpy passes.

[Note: batched handlers]
:class:`simulator.engine_loop.EventLoop` handles its events one at a time, in (time, sequence)
order: an op's end frees its dependents (``finish``), a ready transfer starts or queues behind its
connection (``ready``), a message's last byte frees its connection for the next one (``arrive``).
NCCL's programs on 1024 ranks have ~10^6 transfers but only a few thousand distinct instants, so
that Python per event was nearly all of the loop's time. Here an event on the heap is a *batch*:
all events one handler call scheduled for one time, in the order the one-at-a-time loop would have
scheduled them, under one sequence number. Since the heap pops by (time, sequence) and everything
a batch schedules gets later sequence numbers than everything already on the heap, popping
batches and handling each one's events in order is the one-at-a-time order exactly, and each
handler below does for a batch what the one-at-a-time handlers do event after event:

- ``finish`` of ops E: their dependents' counts drop; an op becomes ready at the *last* of its
  decrements in E's order, so the ready ops are taken in the order of their last occurrence;
- ``ready`` of ops R, in order: per connection, the first of R on a free connection begins, the
  rest join the connection's queue in R's order (a FIFO per connection, as the deques were);
- ``arrive`` of ops F (distinct connections: a connection carries one message at a time): each
  schedules its end and hands its connection to the head of its queue, in F's order.

The events one call schedules are ordered as the one-at-a-time calls would have scheduled them
(an arrival's end before the start of the message it lets go) and grouped by time, stably. The
flows (bytes moving, max-min rates) are not touched: they were batched already. Used for programs
of transfers and zero-time ops; compute and collective ops, with their lanes, keep the
one-at-a-time handlers. ``tests/test_engine_batch.py`` compares both on NCCL's programs, rings and
halving-doubling, op by op.
"""

from __future__ import annotations

import heapq

import numpy as np

from .program import OpKind

LAT_END, OP_END = 0, 1  # as in simulator/engine_loop.py


class BatchOps:
    """State and handlers of the batched event loop; mixed into EventLoop (``self.batched``)."""

    def _batch_init(self, prog, conn: np.ndarray, nconn: int, lat: np.ndarray, red_cost: np.ndarray,
                    rev_ptr: np.ndarray, rev_idx: np.ndarray) -> None:
        self.b_is_tr = prog.is_transfer.copy()
        self.b_conn = conn
        self.b_lat = np.asarray(lat, dtype=np.float64)
        self.b_red = np.asarray(red_cost, dtype=np.float64)
        self.b_rev_ptr = np.asarray(rev_ptr, dtype=np.int64)
        self.b_rev_len = np.diff(self.b_rev_ptr)
        self.b_rev_idx = np.asarray(rev_idx, dtype=np.int64)
        self.b_waiting = np.diff(prog.dep_ptr).astype(np.int64)
        tr = np.flatnonzero(self.b_is_tr)
        per = np.bincount(conn[tr], minlength=nconn) if tr.size else np.zeros(nconn, dtype=np.int64)
        self.q_start = np.zeros(nconn + 1, dtype=np.int64)
        np.cumsum(per, out=self.q_start[1:])
        self.q_head = np.zeros(nconn, dtype=np.int64)  # FIFO per connection: q_store[q_start + head:tail]
        self.q_tail = np.zeros(nconn, dtype=np.int64)
        self.q_store = np.zeros(max(int(self.q_start[-1]), 1), dtype=np.int64)
        self.c_busy = np.zeros(max(nconn, 1), dtype=bool)
        self.b_none = np.zeros(0, dtype=np.int64)
        self.all_tr = bool(self.b_is_tr.all())  # every op a transfer, every transfer moving bytes
        self.all_moving = bool(np.all(prog.op_bytes[self.b_is_tr] > 0))
        self.op_stamp = np.zeros(max(prog.n_ops, 1), dtype=np.int64)  # scratch: are these ids distinct?
        self.conn_stamp = np.zeros(max(nconn, 1), dtype=np.int64)

    # -- scheduling ------------------------------------------------------------------------------
    def _push(self, times: np.ndarray, what, ops: np.ndarray) -> None:
        """Schedule events in the order given: one heap entry per distinct time, stable inside
        (``what``: one kind for all, or an array of kinds)."""
        if times.size == 0:
            return
        t0 = times[0]
        if times.size == 1 or bool((times == t0).all()):
            heapq.heappush(self.heap, (float(t0), self.seq, what, ops))
            self.seq += 1
            return
        order = np.argsort(times, kind="stable")
        st = times[order]
        cut = np.flatnonzero(st[1:] != st[:-1]) + 1
        for lo, hi in zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [st.size]]).tolist()):
            sel = order[lo:hi]
            heapq.heappush(self.heap, (float(st[lo]), self.seq, what if isinstance(what, int) else what[sel], ops[sel]))
            self.seq += 1

    def _handle(self, what: np.ndarray, ops: np.ndarray, now: float) -> bool:
        """One heap entry's events, in order, as runs of one kind; True if flows started."""
        if isinstance(what, int):
            return self._handle_run(what, ops, now)
        if what.size and bool((what == what[0]).all()):
            return self._handle_run(int(what[0]), ops, now)
        cut = np.flatnonzero(what[1:] != what[:-1]) + 1
        started = False
        for lo, hi in zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [what.size]]).tolist()):
            started |= self._handle_run(int(what[lo]), ops[lo:hi], now)
        return started

    def _handle_run(self, what: int, ops: np.ndarray, now: float) -> bool:
        if what == OP_END:
            self._finish_many(ops, now)
            return False
        if self.all_moving:
            self.new_flows.extend(ops.tolist())
            return bool(ops.size)
        moving = self.nbytes[ops] > 0
        if moving.all():
            self.new_flows.extend(ops.tolist())
            return bool(ops.size)
        self.new_flows.extend(ops[moving].tolist())  # no state between the two: order kept where it matters
        self._arrive_many(ops[~moving], now)
        return bool(moving.any())

    # -- handlers --------------------------------------------------------------------------------
    def _begin_events(self, ops: np.ndarray, now: float) -> np.ndarray:
        self.start[ops] = now
        return now + self.b_lat[ops]

    def _arrive_many(self, f: np.ndarray, now: float) -> None:
        """The last bytes of ``f`` are in (one op per connection): their ends, then each connection's next."""
        if f.size == 0:
            return
        c = self.b_conn[f]
        has = self.q_head[c] < self.q_tail[c]
        self.c_busy[c[~has]] = False
        t_end = now + self.b_red[f]
        if not has.any():
            self._push(t_end, OP_END, f)
            return
        cq = c[has]
        g = self.q_store[self.q_start[cq] + self.q_head[cq]]
        self.q_head[cq] += 1
        t_lat = self._begin_events(g, now)
        n, k = f.size, g.size
        times = np.empty(n + k)
        what = np.empty(n + k, dtype=np.int8)
        ops = np.empty(n + k, dtype=np.int64)
        # order: end of f[i], then the start of the message f[i] let go
        pos_f = np.arange(n) + np.concatenate([[0], np.cumsum(has)[:-1]])
        pos_g = pos_f[has] + 1
        times[pos_f], what[pos_f], ops[pos_f] = t_end, OP_END, f
        times[pos_g], what[pos_g], ops[pos_g] = t_lat, LAT_END, g
        self._push(times, what, ops)

    def _finish_many(self, e: np.ndarray, now: float) -> None:
        self.end[e] = now
        lens = self.b_rev_len[e]
        total = int(lens.sum())
        if total == 0:
            return
        first = np.zeros(e.size, dtype=np.int64)
        np.cumsum(lens[:-1], out=first[1:])
        w = self.b_rev_idx[np.repeat(self.b_rev_ptr[e] - first, lens) + np.arange(total)]
        if _distinct(w, self.op_stamp):  # each dependent once: ready in the order of w
            self.b_waiting[w] -= 1
            ready = w[self.b_waiting[w] == 0]
            if ready.size:
                self._ready_many(ready, now)
            return
        u, first_rev, cnt = np.unique(w[::-1], return_index=True, return_counts=True)
        self.b_waiting[u] -= cnt
        zero = self.b_waiting[u] == 0
        if not zero.any():
            return
        ready, last = u[zero], w.size - 1 - first_rev[zero]
        self._ready_many(ready[np.argsort(last)], now)

    def _ready_many(self, r: np.ndarray, now: float) -> None:
        """``r`` (in order) have no unmet deps: transfers start or queue, other ops end now."""
        if self.all_tr:
            t, other = r, self.b_none
        else:
            tr = self.b_is_tr[r]
            t, other = (r, self.b_none) if tr.all() else (r[tr], r[~tr])
        times = what = ops = None
        if t.size:
            c = self.b_conn[t]
            if _distinct(c, self.conn_stamp):
                go = ~self.c_busy[c]
            else:
                uc, fi = np.unique(c, return_index=True)
                go = np.zeros(t.size, dtype=bool)
                go[fi[~self.c_busy[uc]]] = True
            queue = t[~go]
            b = t[go]
            self.c_busy[c[go]] = True
            if queue.size:
                self._enqueue(queue)
            if b.size:
                times, ops = self._begin_events(b, now), b
                what = LAT_END
        if other.size:
            self.start[other] = now
            if ops is None:
                times, what, ops = np.full(other.size, now), OP_END, other
            else:  # both kinds: in the order of r
                key = np.concatenate([np.flatnonzero(tr)[go], np.flatnonzero(~tr)])
                order = np.argsort(key, kind="stable")
                times = np.concatenate([times, np.full(other.size, now)])[order]
                what = np.concatenate([np.full(b.size, LAT_END, dtype=np.int8),
                                       np.full(other.size, OP_END, dtype=np.int8)])[order]
                ops = np.concatenate([ops, other])[order]
        if ops is not None:
            self._push(times, what, ops)

    def _enqueue(self, q: np.ndarray) -> None:
        c = self.b_conn[q]
        if q.size == 1:
            self.q_store[self.q_start[c] + self.q_tail[c]] = q
            self.q_tail[c] += 1
            return
        order = np.argsort(c, kind="stable")
        cs = c[order]
        head = np.concatenate([[True], cs[1:] != cs[:-1]])
        grp = np.flatnonzero(head)
        rank_in = np.arange(cs.size) - np.repeat(grp, np.diff(np.concatenate([grp, [cs.size]])))
        self.q_store[self.q_start[cs] + self.q_tail[cs] + rank_in] = q[order]
        np.add.at(self.q_tail, cs[head], np.diff(np.concatenate([grp, [cs.size]])))


def _distinct(x: np.ndarray, stamp: np.ndarray) -> bool:
    """Whether the ids ``x`` are distinct (``stamp``: scratch as large as the id range). Where an id
    repeats, whichever of its writes lands, another of its positions reads a different number."""
    if x.size < 2:
        return True
    k = np.arange(x.size)
    stamp[x] = k
    return bool((stamp[x] == k).all())


def batchable(prog) -> bool:
    """Programs the batched handlers run: no compute or collective ops (they have lanes)."""
    k = prog.kind
    return not bool(np.any((k == OpKind.COMPUTE) | (k == OpKind.COLLECTIVE)))
