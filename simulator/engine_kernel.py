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
Compiled once per install (numba's cache, next to this file); the first call of a fresh install
pays the compilation (~10 s here), later processes load it (~0.3 s, after numba's own import).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LAT_END, OP_END = 0, 1  # as in simulator/engine_loop.py
_DRAINED = 1e-9  # as engine_loop._DRAINED
_TIE = 1e-12  # as maxmin._TIE


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def _slot(bits, t, mask):
    bits[0] = t  # the float's bits, as an int64 view of the same 8 bytes
    h = bits.view(np.int64)[0]
    h ^= h >> 33
    h *= -49064778989728563  # 0xff51afd7ed558ccd (MurmurHash3's fmix64), as int64
    h ^= h >> 33
    return h & mask


@njit(cache=True)
def _lookup(tab_key, tab_val, bits, t):
    """The entry of time ``t`` in the open-addressing table (linear probing), -1 if none."""
    mask = tab_key.size - 1
    i = _slot(bits, t, mask)
    while tab_val[i] >= 0:
        if tab_key[i] == t:
            return tab_val[i]
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def _insert(tab_key, tab_val, bits, t, e):
    mask = tab_key.size - 1
    i = _slot(bits, t, mask)
    while tab_val[i] >= 0:
        i = (i + 1) & mask
    tab_key[i] = t
    tab_val[i] = e


@njit(cache=True)
def _remove(tab_key, tab_val, bits, t):
    """Delete time ``t`` (present) by backward shift, so that probing needs no tombstones."""
    mask = tab_key.size - 1
    i = _slot(bits, t, mask)
    while tab_key[i] != t:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if tab_val[j] < 0:
            break
        k = _slot(bits, tab_key[j], mask)
        # move j back to i unless its home k lies cyclically in (i, j]
        if (i <= j and (k <= i or k > j)) or (i > j and (k <= i and k > j)):
            tab_key[i] = tab_key[j]
            tab_val[i] = tab_val[j]
            i = j
    tab_val[i] = -1


@njit(cache=True)
def _flush(pt, pk, po, npend, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, tab_key, tab_val, bits):
    """heapq.heappush of the (time, sequence, kind, op) events an instant scheduled for later, in
    order, kept as one heap entry per distinct time whose events are a list in the order they were
    scheduled: popping entries by time and walking each list is (time, sequence) order. Returns
    the time -> entry table, doubled (rebuilt from the heap) where it would pass half full."""
    if 2 * (st[0] + npend) > tab_key.size:
        n = tab_key.size
        while 2 * (st[0] + npend) > n:
            n <<= 1
        tab_key, tab_val = np.zeros(n), np.full(n, -1, np.int64)
        for i in range(st[0]):
            _insert(tab_key, tab_val, bits, et[hp[i]], hp[i])
    last = np.nan
    e = -1
    for i in range(npend):
        t = pt[i]
        if t != last:
            e = _lookup(tab_key, tab_val, bits, t)
            if e < 0:
                e = st[1]
                st[1] += 1
                et[e] = t
                ehead[e] = -1
                _insert(tab_key, tab_val, bits, t, e)
                _heap_push(hp, et, st, e)
            last = t
        k = st[2]
        st[2] += 1
        ev_kind[k] = pk[i]
        ev_op[k] = po[i]
        ev_next[k] = -1
        if ehead[e] < 0:
            ehead[e] = k
        else:
            ev_next[etail[e]] = k
        etail[e] = k
    return tab_key, tab_val


@njit(cache=True)
def _max_min(sel, nsel, act, hop_ptr, hop_len, hop_idx, link_bw, cap, count, notready, out, fl, fp, fln, fmin, hit):
    """Max-min rates of the active flows ``act[sel[:nsel]]`` into ``out[:nsel]`` (maxmin.max_min_csr's
    rounds: each unfrozen flow's smallest share ``cap / count`` and the links where it is not the
    smallest; flows with a locally minimal link freeze at their smallest share, taken off their links
    in flow-then-hop order, then the capacities clamp at 0). ``fl``/``fp``/``fln``: the unfrozen
    flows and their hop ranges; ``cap``, ``count``, ``notready``: per-link scratch, left as found."""
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
            fl[nf], fp[nf], fln[nf] = j, p, p + ln
            nf += 1
    tie = 1 + _TIE
    while nf > 0:
        for a in range(nf):  # smallest share, then the hops where it is larger than that
            p, q = fp[a], fln[a]
            m = cap[hop_idx[p]] / count[hop_idx[p]]
            for h in range(p + 1, q):
                lk = hop_idx[h]
                v = cap[lk] / count[lk]
                if not np.isnan(m) and (np.isnan(v) or v < m):
                    m = v
            fmin[a] = m
            lim = m * tie
            for h in range(p, q):
                lk = hop_idx[h]
                if cap[lk] / count[lk] > lim:
                    notready[lk] = True
        for a in range(nf):
            got = False
            for h in range(fp[a], fln[a]):
                if not notready[hop_idx[h]]:
                    got = True
                    break
            hit[a] = got
        for a in range(nf):
            for h in range(fp[a], fln[a]):
                notready[hop_idx[h]] = False
        for a in range(nf):
            if hit[a]:
                out[fl[a]] = fmin[a]
                for h in range(fp[a], fln[a]):
                    cap[hop_idx[h]] -= fmin[a]
        keep = 0
        for a in range(nf):
            if hit[a]:
                for h in range(fp[a], fln[a]):
                    lk = hop_idx[h]
                    if cap[lk] < 0.0:
                        cap[lk] = 0.0
                    count[lk] -= 1.0
            else:
                fl[keep], fp[keep], fln[keep] = fl[a], fp[a], fln[a]
                keep += 1
        nf = keep
    for j in range(nsel):  # leave the scratch as found
        op = act[sel[j]]
        for h in range(hop_ptr[op], hop_ptr[op] + hop_len[op]):
            count[hop_idx[h]] = 0.0


@njit(cache=True)
def _grow(a, b, c, d, need):
    """The rate-period buffers, at least ``need`` long (doubling); growing them is called once per
    instant at most, outside the loops over flows (a rebound array there costs reference counts)."""
    n = max(2 * a.size, need)
    a2, b2, c2, d2 = np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n)
    a2[:a.size], b2[:a.size], c2[:a.size], d2[:a.size] = a, b, c, d
    return a2, b2, c2, d2


@njit(cache=True)
def run_transfers(is_tr, nbytes, lat, red, conn, nconn, waiting, rev_ptr, rev_idx, hop_ptr, hop_len, hop_idx,
                  part, n_parts, link_bw, record):
    """Times of every op of a program of transfers and zero-time ops; see [Note: the compiled event loop].

    Per op: ``is_tr`` (a transfer), ``nbytes``, ``lat`` (its route's latency), ``red`` (reduce
    seconds after the last byte), ``conn`` (connection id, -1 off transfers), ``waiting`` (its
    dependency count), its dependents ``rev_idx[rev_ptr[op]:rev_ptr[op + 1]]``, its binding hops
    ``hop_idx[hop_ptr[op]:hop_ptr[op] + hop_len[op]]`` and ``part``. Returns (start, end, and the
    rate periods op, t0, t1, bytes; empty unless ``record``).

    The Python loop's ``begin``, ``arrive`` and ``ready`` are written out in the loop (a numba call
    with array arguments costs reference counts per call, the bulk of the time on 10^6 events); what
    an event schedules is collected in order (``gt``, ``gk``, ``go``) and then pushed, as the Python
    loop's calls push it. An event scheduled for the instant being handled goes to a FIFO that runs
    after the instant's heap entry (everything on the heap was scheduled before, so this is (time,
    sequence) order); later ones are pending until the instant ends, then join the heap in order."""
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
    # the event queue (every op schedules at most a LAT_END and an OP_END): heap entries, one per
    # distinct time, their events as lists; time -> entry in an open-addressing table, at most half full
    n_ev = 2 * m + 1
    hp, et, ehead, etail = np.empty(n_ev, np.int64), np.empty(n_ev), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    ev_kind, ev_op, ev_next = np.empty(n_ev, np.int64), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    st = np.zeros(3, np.int64)  # heap size, entries made, events made
    tab_key, tab_val, bits = np.zeros(1024), np.full(1024, -1, np.int64), np.zeros(1)
    pt, pk, po = np.empty(n_ev), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)  # pending
    fk, fo = np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)  # this instant's FIFO
    # active flows in start order: op, rate, start of the open rate period, remaining bytes then
    act = np.empty(max(m, 1), np.int64)
    rate = np.empty(max(m, 1))
    t0 = np.empty(max(m, 1))
    rem0 = np.empty(max(m, 1))
    na = 0
    new = np.empty(max(m, 1), np.int64)
    gone = np.empty(max(m, 1), np.int64)
    gt, gk, go = np.empty(max(m, 1)), np.empty(max(m, 1), np.int64), np.empty(max(m, 1), np.int64)
    # max-min scratch
    cap = np.zeros(max(nl, 1))
    count = np.zeros(max(nl, 1))
    notready = np.zeros(max(nl, 1), np.bool_)
    partmark = np.zeros(max(n_parts, 1), np.bool_)
    sel = np.empty(max(m, 1), np.int64)
    out = np.empty(max(m, 1))
    fl = np.empty(max(m, 1), np.int64)
    fp = np.empty(max(m, 1), np.int64)
    fln = np.empty(max(m, 1), np.int64)
    fmin = np.empty(max(m, 1))
    hit = np.empty(max(m, 1), np.bool_)
    rcap = 1024 if record else 1
    rows_op, rows_t0 = np.empty(rcap, np.int64), np.empty(rcap)
    rows_t1, rows_nb = np.empty(rcap), np.empty(rcap)
    nrow = 0

    npend = 0
    for op in range(m):  # ready at 0, in op order
        if waiting[op] == 0:
            if is_tr[op]:
                c = conn[op]
                if busy[c]:
                    qstore[qstart[c] + qtail[c]] = op
                    qtail[c] += 1
                    continue
                busy[c] = True
                start[op] = 0.0
                pt[npend], pk[npend], po[npend] = lat[op], LAT_END, op
            else:
                start[op] = 0.0
                pt[npend], pk[npend], po[npend] = 0.0, OP_END, op
            npend += 1
    tab_key, tab_val = _flush(pt, pk, po, npend, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st, tab_key, tab_val, bits)
    now = 0.0
    while st[0] > 0 or na > 0:
        t = et[hp[0]] if st[0] > 0 else np.inf
        first = -1
        nnew = 0
        ngone = 0
        npend = 0
        fh = 0
        ft = 0
        changed = False
        if record and nrow + na > rows_op.size:  # room for the rate periods the drains close
            rows_op, rows_t0, rows_t1, rows_nb = _grow(rows_op, rows_t0, rows_t1, rows_nb, nrow + na)
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
                        rows_op[nrow], rows_t0[nrow], rows_t1[nrow] = op, t0[i], now
                        rows_nb[nrow] = np.rint(nb - 0.0) - np.rint(nb - rem0[i])
                        nrow += 1
                    gone[ngone] = op
                    ngone += 1
                else:
                    act[keep], rate[keep], t0[keep], rem0[keep] = op, rate[i], t0[i], rem0[i]
                    keep += 1
            na = keep
        # the drained flows' ends, in order (arrive), then the instant's heap entry, then its FIFO
        s = -1
        if st[0] > 0 and et[hp[0]] <= now:
            e = hp[0]
            _heap_pop(hp, et, st)
            _remove(tab_key, tab_val, bits, et[e])
            s = ehead[e]
        g = 0
        while True:
            if g < ngone:  # arrive: the last byte is in
                kind, op = -1, gone[g]
                g += 1
                changed = True
            elif s >= 0:
                kind, op = ev_kind[s], ev_op[s]
                s = ev_next[s]
            elif fh < ft:
                kind, op = fk[fh], fo[fh]
                fh += 1
            else:
                break
            if kind == LAT_END:
                if nbytes[op] > 0:
                    new[nnew] = op
                    nnew += 1
                    changed = True
                    continue
                kind = -1
            ngo = 0  # what this event schedules, in order: (time, kind, op)
            if kind == -1:  # arrive: its end, then its connection's next message
                gt[ngo], gk[ngo], go[ngo] = now + red[op], OP_END, op
                ngo += 1
                c = conn[op]
                if qhead[c] < qtail[c]:
                    nxt = qstore[qstart[c] + qhead[c]]
                    qhead[c] += 1
                    start[nxt] = now
                    gt[ngo], gk[ngo], go[ngo] = now + lat[nxt], LAT_END, nxt
                    ngo += 1
                else:
                    busy[c] = False
            else:
                end[op] = now  # OP_END: the dependents it was the last wait of are ready
                for j in range(rev_ptr[op], rev_ptr[op + 1]):
                    w = rev_idx[j]
                    waiting[w] -= 1
                    if waiting[w] != 0:
                        continue
                    if is_tr[w] and busy[conn[w]]:  # queued behind its connection's message
                        c = conn[w]
                        qstore[qstart[c] + qtail[c]] = w
                        qtail[c] += 1
                        continue
                    start[w] = now
                    if is_tr[w]:  # begin: its latency first
                        busy[conn[w]] = True
                        gt[ngo], gk[ngo], go[ngo] = now + lat[w], LAT_END, w
                    else:  # a zero-time op ends now
                        gt[ngo], gk[ngo], go[ngo] = now, OP_END, w
                    ngo += 1
            for j in range(ngo):  # for now: this instant's FIFO; for later: pending until it ends
                if gt[j] == now:
                    fk[ft], fo[ft] = gk[j], go[j]
                    ft += 1
                else:
                    pt[npend], pk[npend], po[npend] = gt[j], gk[j], go[j]
                    npend += 1
        if npend:
            tab_key, tab_val = _flush(pt, pk, po, npend, hp, et, ehead, etail, ev_kind, ev_op, ev_next, st,
                                      tab_key, tab_val, bits)
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
        for j in range(ngone):
            partmark[part[gone[j]]] = True
        nsel = 0
        for i in range(na):
            if partmark[part[act[i]]]:
                sel[nsel] = i
                nsel += 1
        for i in range(na):
            partmark[part[act[i]]] = False
        for j in range(ngone):
            partmark[part[gone[j]]] = False
        if nsel == 0:
            continue
        _max_min(sel, nsel, act, hop_ptr, hop_len, hop_idx, link_bw, cap, count, notready, out, fl, fp, fln, fmin, hit)
        if record and nrow + nsel > rows_op.size:  # room for the rate periods the changes close
            rows_op, rows_t0, rows_t1, rows_nb = _grow(rows_op, rows_t0, rows_t1, rows_nb, nrow + nsel)
        for j in range(nsel):
            i = sel[j]
            old, r = rate[i], out[j]
            if old != r and not np.isnan(old) and t0[i] < now:  # a rate change starts a rate period
                op = act[i]
                rem = remaining[op]
                if record:
                    nb = nbytes[op]
                    rows_op[nrow], rows_t0[nrow], rows_t1[nrow] = op, t0[i], now
                    rows_nb[nrow] = np.rint(nb - rem) - np.rint(nb - rem0[i])
                    nrow += 1
                t0[i] = now
                rem0[i] = rem
            rate[i] = r
    return start, end, rows_op[:nrow].copy(), rows_t0[:nrow].copy(), rows_t1[:nrow].copy(), rows_nb[:nrow].copy()


def warm() -> None:
    """Load (or compile) the loop now: a forked worker then inherits it loaded."""
    z, f, b = np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.bool_)
    run_transfers(b, f, f, f, z, 1, z, np.zeros(2, np.int64), z, z, z, z, z, 1, f, False)
