"""The event loop compiled, for programs of transfers: the same events, order and floats.

[Note: the compiled event loop]
NCCL's schedules on 1024 ranks are ~10^5-10^6 transfers over a few thousand instants; in Python
every instant cost a few hundred microseconds of numpy calls on arrays of thousands of flows.
:func:`run_transfers` is :class:`simulator.engine_loop.EventLoop`'s one-at-a-time loop (SimPy's
``Environment``: a heap of (time, sequence) events; ``begin``, ``arrive``, ``ready``, ``finish``)
compiled with numba, for the programs with no compute or collective ops (no lanes). It makes the
same decisions with the same floating-point operations in the same order, so its times and rate
periods are the Python loop's bit for bit (``tests/test_engine_kernel.py`` compares them op by op
and row by row):
- an instant: the earliest heap time or the first flow to drain (``remaining / rate``, the first
  minimum in start order); every active flow loses ``rate x (t - now)`` bytes; flows at or below
  1e-9 of their bytes have drained, in start order; then the heap's events at or before ``now``;
- a flow's rate is the max-min fair share on its route's binding hops (progressive filling,
  :mod:`simulator.maxmin`, the same rounds: shares ``cap / count``, a flow's smallest share,
  locally minimal links, rates taken off link by link in flow-then-hop order);
- after an instant that starts or ends flows, rates are recomputed for the flows of every *part*
  (routes joined by shared binding links, fixed for the program) that holds a new or ended flow.
  Progressive filling never mixes parts (shares, minima, frozen sets and the capacity taken off a
  link involve only that link's flows), so a part's rates are the same floats whether it is
  computed alone or beside others, and a part no change touched keeps the rates it would get;
- a flow whose rate changes closes its rate period (one row: op, start, end, bytes moved as
  ``round(bytes - remaining)`` differences).
The Python loop stays the engine for programs with lanes and the reference for this one.
Compiled once per machine (numba's cache, next to this file); the first call of a fresh install
pays the compilation (a few seconds), later processes load it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

from .program import OpKind

LAT_END, OP_END = 0, 1  # as in simulator/engine_loop.py
_DRAINED = 1e-9  # as engine_loop._DRAINED
_TIE = 1e-12  # as maxmin._TIE


def applies(prog) -> bool:
    """Programs the compiled loop runs: no compute or collective ops (they have lanes)."""
    k = prog.kind
    return not bool(np.any((k == OpKind.COMPUTE) | (k == OpKind.COLLECTIVE)))


@njit(cache=True, inline="always")
def _heap_push(hp, et, st, e):
    """Put entry ``e`` on the heap of entries by time (``st[0]``: its size; times are distinct)."""
    i = st[0]
    t = et[e]
    while i > 0:
        p = (i - 1) >> 1
        if et[hp[p]] < t:
            break
        hp[i] = hp[p]
        i = p
    hp[i] = e
    st[0] += 1


@njit(cache=True, inline="always")
def _heap_pop(hp, et, st):
    """Remove the heap's earliest entry (read it at ``hp[0]`` first)."""
    n = st[0] - 1
    st[0] = n
    if n == 0:
        return
    e = hp[n]
    t = et[e]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and et[hp[c + 1]] < et[hp[c]]:
            c += 1
        if t < et[hp[c]]:
            break
        hp[i] = hp[c]
        i = c
    hp[i] = e


@njit(cache=True, inline="always")
def _schedule(hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index, t, kind, op):
    """heapq.heappush of (t, sequence, kind, op), kept as one heap entry per distinct time whose
    events are a list in the order they were scheduled: popping entries by time and walking each
    list is (time, sequence) order. The queue's arrays: see :func:`run_transfers`."""
    if t == last_t[0]:
        e = st[3]
    else:
        if t in index:
            e = index[t]
        else:
            e = st[1]
            st[1] += 1
            et[e] = t
            ehead[e] = -1
            index[t] = e
            _heap_push(hp, et, st, e)
        last_t[0] = t
        st[3] = e
    s = st[2]
    st[2] += 1
    ev_kind[s] = kind
    ev_op[s] = op
    ev_next[s] = -1
    if ehead[e] < 0:
        ehead[e] = s
    else:
        ev_next[etail[e]] = s
    etail[e] = s


@njit(cache=True, inline="always")
def _begin(op, t, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index):
    start[op] = t
    _schedule(hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index, t + lat[op], LAT_END, op)


@njit(cache=True, inline="always")
def _arrive(op, t, red, conn, busy, qstart, qhead, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index):
    """The last byte of ``op`` is in: its end, then its connection's next message."""
    _schedule(hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index, t + red[op], OP_END, op)
    c = conn[op]
    if qhead[c] < qtail[c]:
        nxt = qstore[qstart[c] + qhead[c]]
        qhead[c] += 1
        _begin(nxt, t, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
    else:
        busy[c] = False


@njit(cache=True, inline="always")
def _ready(op, t, is_tr, conn, busy, qstart, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index):
    """``op`` has no unmet deps: a transfer starts or queues behind its connection; others end now."""
    if is_tr[op]:
        c = conn[op]
        if busy[c]:
            qstore[qstart[c] + qtail[c]] = op
            qtail[c] += 1
        else:
            busy[c] = True
            _begin(op, t, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
    else:
        start[op] = t
        _schedule(hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index, t, OP_END, op)


@njit(cache=True)
def _max_min(sel, nsel, act, hop_ptr, hop_len, hop_idx, link_bw, cap, count, notready, out, fl, fmin, hit):
    """Max-min rates of the active flows ``act[sel[:nsel]]`` into ``out[:nsel]`` (maxmin.max_min_csr's
    rounds). ``cap``, ``count``, ``notready``: per-link scratch, left as found (count 0, notready False)."""
    nf = 0
    for j in range(nsel):
        op = act[sel[j]]
        out[j] = np.inf
        p, ln = hop_ptr[op], hop_len[op]
        for h in range(p, p + ln):
            lk = hop_idx[h]
            if count[lk] == 0.0:
                cap[lk] = link_bw[lk]
            count[lk] += 1.0
        if ln > 0:
            fl[nf] = j
            nf += 1
    tie = 1 + _TIE
    while nf > 0:
        for a in range(nf):
            op = act[sel[fl[a]]]
            p, ln = hop_ptr[op], hop_len[op]
            m = cap[hop_idx[p]] / count[hop_idx[p]]
            for h in range(p + 1, p + ln):
                lk = hop_idx[h]
                v = cap[lk] / count[lk]
                if not np.isnan(m) and (np.isnan(v) or v < m):
                    m = v
            fmin[a] = m
        for a in range(nf):
            op = act[sel[fl[a]]]
            p, ln = hop_ptr[op], hop_len[op]
            lim = fmin[a] * tie
            for h in range(p, p + ln):
                lk = hop_idx[h]
                if cap[lk] / count[lk] > lim:
                    notready[lk] = True
        for a in range(nf):
            op = act[sel[fl[a]]]
            p, ln = hop_ptr[op], hop_len[op]
            got = False
            for h in range(p, p + ln):
                if not notready[hop_idx[h]]:
                    got = True
                    break
            hit[a] = got
        for a in range(nf):
            op = act[sel[fl[a]]]
            p, ln = hop_ptr[op], hop_len[op]
            for h in range(p, p + ln):
                notready[hop_idx[h]] = False
        keep = 0
        for a in range(nf):
            if hit[a]:
                out[fl[a]] = fmin[a]
                op = act[sel[fl[a]]]
                p, ln = hop_ptr[op], hop_len[op]
                for h in range(p, p + ln):
                    lk = hop_idx[h]
                    cap[lk] -= fmin[a]
        for a in range(nf):
            if hit[a]:
                op = act[sel[fl[a]]]
                p, ln = hop_ptr[op], hop_len[op]
                for h in range(p, p + ln):
                    lk = hop_idx[h]
                    if cap[lk] < 0.0:
                        cap[lk] = 0.0
                    count[lk] -= 1.0
            else:
                fl[keep] = fl[a]
                keep += 1
        nf = keep
    for j in range(nsel):  # leave the scratch as found
        op = act[sel[j]]
        for h in range(hop_ptr[op], hop_ptr[op] + hop_len[op]):
            count[hop_idx[h]] = 0.0


@njit(cache=True)
def _row(rows_op, rows_t0, rows_t1, rows_nb, nrow, op, t0, t1, moved):
    """Append a rate period, growing the buffers by doubling; returns them and the new count."""
    if nrow == rows_op.size:
        n2 = 2 * rows_op.size
        a, b, c, d = np.empty(n2, np.int64), np.empty(n2), np.empty(n2), np.empty(n2)
        a[:nrow], b[:nrow], c[:nrow], d[:nrow] = rows_op, rows_t0, rows_t1, rows_nb
        rows_op, rows_t0, rows_t1, rows_nb = a, b, c, d
    rows_op[nrow], rows_t0[nrow], rows_t1[nrow], rows_nb[nrow] = op, t0, t1, moved
    return rows_op, rows_t0, rows_t1, rows_nb, nrow + 1


@njit(cache=True)
def run_transfers(is_tr, nbytes, lat, red, conn, nconn, waiting, rev_ptr, rev_idx, hop_ptr, hop_len, hop_idx,
                  part, n_parts, link_bw, record):
    """Times of every op of a program of transfers and zero-time ops; see [Note: the compiled event loop].

    Per op: ``is_tr`` (a transfer), ``nbytes``, ``lat`` (its route's latency), ``red`` (reduce
    seconds after the last byte), ``conn`` (connection id, -1 off transfers), ``waiting`` (its
    dependency count), its dependents ``rev_idx[rev_ptr[op]:rev_ptr[op + 1]]``, its binding hops
    ``hop_idx[hop_ptr[op]:hop_ptr[op] + hop_len[op]]`` and ``part``. Returns (start, end, and the
    rate periods op, t0, t1, bytes; empty unless ``record``)."""
    m = nbytes.size
    nl = link_bw.size
    start = np.full(m, np.nan)
    end = np.full(m, np.nan)
    remaining = nbytes.copy()
    waiting = waiting.copy()
    # connections: FIFO queues in one store, busy flags
    qstart = np.zeros(nconn + 1, np.int64)
    for op in range(m):
        if is_tr[op]:
            qstart[conn[op] + 1] += 1
    for c in range(nconn):
        qstart[c + 1] += qstart[c]
    qhead = np.zeros(max(nconn, 1), np.int64)
    qtail = np.zeros(max(nconn, 1), np.int64)
    qstore = np.zeros(max(m, 1), np.int64)
    busy = np.zeros(max(nconn, 1), np.bool_)
    # the event queue: one heap entry per distinct time, its events a list in scheduling order
    # (every op schedules at most a LAT_END and an OP_END)
    n_ev = 2 * m + 1
    hp, et, ehead, etail = np.empty(n_ev, np.int64), np.empty(n_ev), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    ev_kind, ev_op, ev_next = np.empty(n_ev, np.int64), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    st = np.zeros(4, np.int64)  # heap size, entries made, events made, the entry of last_t
    last_t = np.full(1, np.nan)  # the time of the last event scheduled
    index = Dict.empty(key_type=types.float64, value_type=types.int64)  # time -> its entry
    # active flows in start order: op, rate, start of the open rate period, remaining bytes then
    act = np.empty(max(m, 1), np.int64)
    rate = np.empty(max(m, 1))
    t0 = np.empty(max(m, 1))
    rem0 = np.empty(max(m, 1))
    na = 0
    new = np.empty(max(m, 1), np.int64)
    gone = np.empty(max(m, 1), np.int64)
    # max-min scratch
    cap = np.zeros(max(nl, 1))
    count = np.zeros(max(nl, 1))
    notready = np.zeros(max(nl, 1), np.bool_)
    partmark = np.zeros(max(n_parts, 1), np.bool_)
    sel = np.empty(max(m, 1), np.int64)
    out = np.empty(max(m, 1))
    fl = np.empty(max(m, 1), np.int64)
    fmin = np.empty(max(m, 1))
    hit = np.empty(max(m, 1), np.bool_)
    rcap = 1024 if record else 1
    rows_op, rows_t0 = np.empty(rcap, np.int64), np.empty(rcap)
    rows_t1, rows_nb = np.empty(rcap), np.empty(rcap)
    nrow = 0

    for op in range(m):
        if waiting[op] == 0:
            _ready(op, 0.0, is_tr, conn, busy, qstart, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
    now = 0.0
    while st[0] > 0 or na > 0:
        t = et[hp[0]] if st[0] > 0 else np.inf
        first = -1
        nnew = 0
        ngone = 0
        changed = False
        if na > 0:
            first = 0
            best = remaining[act[0]] / rate[0]
            if not np.isnan(best):
                for i in range(1, na):
                    v = remaining[act[i]] / rate[i]
                    if np.isnan(v):
                        best, first = v, i
                        break
                    if v < best:
                        best, first = v, i
            t_flow = now + best
            if t_flow <= t:
                t = t_flow
            else:
                first = -1
            d = t - now
            for i in range(na):
                remaining[act[i]] -= rate[i] * d
        now = t
        if na > 0:
            keep = 0
            for i in range(na):
                op = act[i]
                if remaining[op] <= _DRAINED * nbytes[op] or i == first:
                    remaining[op] = 0.0
                    if record and now > t0[i]:
                        nb = nbytes[op]
                        moved = np.rint(nb - 0.0) - np.rint(nb - rem0[i])
                        rows_op, rows_t0, rows_t1, rows_nb, nrow = _row(rows_op, rows_t0, rows_t1, rows_nb, nrow,
                                                                        op, t0[i], now, moved)
                    gone[ngone] = op
                    ngone += 1
                else:
                    act[keep], rate[keep], t0[keep], rem0[keep] = op, rate[i], t0[i], rem0[i]
                    keep += 1
            na = keep
            if ngone:
                changed = True
                for g in range(ngone):
                    _arrive(gone[g], now, red, conn, busy, qstart, qhead, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
        while st[0] > 0 and et[hp[0]] <= now:
            e = hp[0]
            _heap_pop(hp, et, st)
            s = ehead[e]
            while s >= 0:  # events scheduled for now while this runs join its list
                kind, op = ev_kind[s], ev_op[s]
                if kind == LAT_END:
                    if nbytes[op] > 0:
                        new[nnew] = op
                        nnew += 1
                        changed = True
                    else:
                        _arrive(op, now, red, conn, busy, qstart, qhead, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
                else:  # OP_END
                    end[op] = now
                    for j in range(rev_ptr[op], rev_ptr[op + 1]):
                        w = rev_idx[j]
                        waiting[w] -= 1
                        if waiting[w] == 0:
                            _ready(w, now, is_tr, conn, busy, qstart, qtail, qstore, start, lat, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, last_t, index)
                s = ev_next[s]
            del index[et[e]]
            if st[3] == e:
                last_t[0] = np.nan
        if not changed:
            continue
        # reshare: the new flows join, the parts a change touched get their max-min rates
        for j in range(nnew):
            op = new[j]
            act[na], rate[na], t0[na], rem0[na] = op, np.nan, now, remaining[op]
            na += 1
        if na == 0:
            continue
        for i in range(na):
            if np.isnan(rate[i]):
                partmark[part[act[i]]] = True
        for g in range(ngone):
            partmark[part[gone[g]]] = True
        nsel = 0
        for i in range(na):
            if partmark[part[act[i]]]:
                sel[nsel] = i
                nsel += 1
        for i in range(na):
            partmark[part[act[i]]] = False
        for g in range(ngone):
            partmark[part[gone[g]]] = False
        if nsel == 0:
            continue
        _max_min(sel, nsel, act, hop_ptr, hop_len, hop_idx, link_bw, cap, count, notready, out, fl, fmin, hit)
        for j in range(nsel):
            i = sel[j]
            old, r = rate[i], out[j]
            if old != r and not np.isnan(old) and t0[i] < now:  # a rate change starts a rate period
                op = act[i]
                rem = remaining[op]
                if record:
                    nb = nbytes[op]
                    moved = np.rint(nb - rem) - np.rint(nb - rem0[i])
                    rows_op, rows_t0, rows_t1, rows_nb, nrow = _row(rows_op, rows_t0, rows_t1, rows_nb, nrow,
                                                                    op, t0[i], now, moved)
                t0[i] = now
                rem0[i] = rem
            rate[i] = r
    return start, end, rows_op[:nrow].copy(), rows_t0[:nrow].copy(), rows_t1[:nrow].copy(), rows_nb[:nrow].copy()
