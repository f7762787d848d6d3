"""Routes of many (src, dst) pairs at once: the routes of :meth:`Topology.routes`, found with numpy.

:meth:`simulator.topology.Topology.routes` searches one source at a time in Python: on ``ring:1024``
the 10240 pairs of a halving-doubling all-reduce cost over ten seconds. This module finds the same
routes (the rule of the topology module's [Note: links and routes]: least total latency in whole
femtoseconds, then fewest hops, then the lexicographically smallest sequence of link ids) for all
sources together, in whole-array rounds:
1. Costs: Bellman-Ford from every source at once, relaxing only the out-links of nodes whose cost
   improved in the previous round (a frontier), costs packed as latency·(V+1) + hops so that one
   integer comparison orders them as the topology does.
2. Ties: a node with one tight in-link (cost[u] + link == cost[v]) takes it; a node with several
   takes, in increasing order of hops, the one whose path (its tail's chosen path, then the link)
   is lexicographically smallest, which is what ``Topology._parents`` computes level by level with
   ranks: the chosen path of every node is its lexicographically smallest optimal one.
3. Paths: walked back from every destination at once.
For the sources with fewer than 8 destinations (a ring's neighbours, a tree's few peers), where the
arrays would be too large (sources x links over 8M) or the packed cost could overflow,
:func:`routes` asks the topology itself. A test checks both agree on every preset
and on random graphs with tied latencies.

A pair's route depends on the topology alone (each source's search does not depend on which
destinations are asked), so :func:`routes` keeps, per topology object and for as long as it lives,
the routes it found either way and searches only pairs it has not seen (a sweep simulates one view
of the topology at many sizes; NVLSTree's 1024-rank programs ask the same ~8k pairs every time).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

_FS = 1e15  # as the topology module: latencies compared in whole femtoseconds
_BUDGET = 1 << 23  # most (source, node) or (source, edge) entries the arrays may hold
_PER_SOURCE = 8  # fewer distinct destinations per source than this: the topology's own search is cheaper


class _Graph:
    def __init__(self, topo) -> None:
        nodes = list(range(topo.nranks)) + sorted({str(x) for x in topo.graph.nodes if not isinstance(x, int)})
        index = {v: i for i, v in enumerate(nodes)}
        nl = len(topo.link_names)
        self.v = len(nodes)
        eu, ev, lat, eid = np.zeros(nl, np.int64), np.zeros(nl, np.int64), np.zeros(nl, np.int64), np.arange(nl)
        for u, w, d in topo.graph.edges(data=True):
            i = d["id"]
            eu[i], ev[i], lat[i] = index[u], index[w], round(d["lat"] * _FS)
        self.lat = lat
        order = np.lexsort((eid, eu))  # out-links by tail
        self.out_ptr = np.searchsorted(eu[order], np.arange(self.v + 1))
        self.out_e = order
        order = np.lexsort((eid, ev))  # in-links by head
        self.in_ptr = np.searchsorted(ev[order], np.arange(self.v + 1))
        self.in_e = order
        self.eu, self.ev = eu, ev


def _gather(ptr: np.ndarray, items: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row r, the items ptr[r]:ptr[r+1]; returns (row index per item, item)."""
    lens = ptr[rows + 1] - ptr[rows]
    total = int(lens.sum())
    first = np.zeros(lens.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    pos = np.repeat(ptr[rows] - first, lens) + np.arange(total, dtype=np.int64)
    return np.repeat(np.arange(rows.size, dtype=np.int64), lens), items[pos]


_KNOWN: dict[int, tuple[weakref.ref, dict]] = {}  # id(topology) -> (the topology, its routes found so far)


def _known(topo) -> dict:
    hit = _KNOWN.get(id(topo))
    if hit is not None and hit[0]() is topo:
        return hit[1]
    memo = {"keys": np.zeros(0, dtype=np.int64), "hops": np.zeros((0, 1), dtype=np.int32), "lat": np.zeros(0)}
    key = id(topo)
    _KNOWN[key] = (weakref.ref(topo, lambda _, k=key: _KNOWN.pop(k, None)), memo)
    return memo


def unique_paths_of(topo) -> dict | None:
    """:func:`simulator.cluster_routes.unique_paths` of ``topo``, found once per topology object."""
    memo = _known(topo)
    if "unique" not in memo:
        from .cluster_routes import unique_paths

        memo["unique"] = unique_paths(topo)
    return memo["unique"]


def routes(topo, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hops (K, H) link ids padded with -1, latency (K,) s), as ``topo.routes(src, dst)`` gives:
    :func:`routes_numpy` where it pays, the topology's own search otherwise."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    if not src.size or np.any(src == dst):
        return topo.routes(src, dst)  # it says what is wrong with a bad pair
    n = topo.nranks
    keys = src * n + dst
    uk = np.unique(keys)
    memo = _known(topo)
    at = np.minimum(np.searchsorted(memo["keys"], uk), max(memo["keys"].size - 1, 0))
    new = uk if memo["keys"].size == 0 else uk[memo["keys"][at] != uk]
    ids = unique_paths_of(topo) if new.size else None
    if ids is not None:  # [Note: the cluster's unique paths]
        from .cluster_routes import cluster_routes

        ok, hops = cluster_routes(ids, new // n, new % n)
        if ok.any():
            _remember(memo, new[ok], hops, _route_latency(topo.link_lat, hops))
            new = new[~ok]
    if new.size:
        s_new = new // n
        srcs, per = np.unique(s_new, return_counts=True)
        many = np.isin(s_new, srcs[per >= _PER_SOURCE])  # sources with many destinations: whole arrays
        found = routes_numpy(topo, s_new[many], new[many] % n) if many.any() else None
        if found is None:
            many[:] = False
        else:
            _remember(memo, new[many], *found)
        if not many.all():  # a ring's neighbours, a tree's few peers: the topology's own search
            few = new[~many]
            _remember(memo, few, *topo.routes(few // n, few % n))
    row = np.searchsorted(memo["keys"], keys)
    hops = memo["hops"][row]
    width = max(int((hops >= 0).sum(axis=1).max()), 1)
    return hops[:, :width], memo["lat"][row]


def _remember(memo: dict, keys: np.ndarray, hops: np.ndarray, lat: np.ndarray) -> None:
    old = memo["hops"]
    width = max(old.shape[1], hops.shape[1])
    both = np.full((old.shape[0] + hops.shape[0], width), -1, dtype=np.int32)
    both[:old.shape[0], :old.shape[1]] = old
    both[old.shape[0]:, :hops.shape[1]] = hops
    k = np.concatenate([memo["keys"], keys])
    order = np.argsort(k, kind="stable")
    memo.update(keys=k[order], hops=both[order], lat=np.concatenate([memo["lat"], lat])[order])


def routes_numpy(topo, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The same routes by the whole-array rounds above; None where the arrays would be too large,
    the packed cost could overflow or a pair has no route (the topology then says which)."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    if src.size == 0 or np.any(src == dst):
        return None
    srcs, s_of = np.unique(src, return_inverse=True)
    g = _Graph(topo)
    ns, v = srcs.size, g.v
    if ns * v > _BUDGET or ns * g.eu.size > _BUDGET or int(g.lat.sum()) * (v + 1) >= 1 << 62:
        return None
    big = np.iinfo(np.int64).max
    w = v + 1
    cost = np.full((ns, v), big, dtype=np.int64)
    cost[np.arange(ns), srcs] = 0
    fs, fu = np.arange(ns, dtype=np.int64), srcs.copy()  # frontier: (source row, node)
    elen = g.lat * w + 1  # a link adds its latency and one hop
    while fs.size:
        k, e = _gather(g.out_ptr, g.out_e, fu)
        if k.size > _BUDGET:
            return None
        s, hv = fs[k], g.ev[e]
        c = cost[fs, fu][k] + elen[e]
        flat = s * v + hv
        better = c < cost.ravel()[flat]
        if not better.any():
            break
        flat, c = flat[better], c[better]
        u, inv = np.unique(flat, return_inverse=True)
        best = np.full(u.size, big, dtype=np.int64)
        np.minimum.at(best, inv, c)
        cost.ravel()[u] = best
        fs, fu = u // v, u % v
    reach = cost < big
    hops = np.where(reach, cost % w, -1)
    # every link into a node on one of its optimal paths (a tight link): one per node, or a tie
    ce_u, ce_v = cost[:, g.eu], cost[:, g.ev]
    tight = (ce_u != big) & (ce_u + elen[None, :] == ce_v) & (g.ev[None, :] != srcs[:, None])
    del ce_u, ce_v
    ts, te = np.nonzero(tight)
    del tight
    tv = g.ev[te]
    node = ts * v + tv
    ntight = np.bincount(node, minlength=ns * v)
    parent = np.full(ns * v, -1, dtype=np.int64)  # link id into each node on its chosen path
    single = ntight[node] == 1
    parent[node[single]] = te[single]
    tied = ~single
    if tied.any():  # the lexicographically smallest path among the tight links' (prefix + link)
        cs, ce, cn = ts[tied], te[tied], node[tied]
        lvl = hops.ravel()[cn]
        for h in np.unique(lvl).tolist():
            at = lvl == h
            s_, e_, n_ = cs[at], ce[at], cn[at]
            path = np.empty((e_.size, h), dtype=np.int64)
            path[:, h - 1] = e_
            cur = g.eu[e_]
            for j in range(h - 2, -1, -1):
                pe = parent[s_ * v + cur]
                path[:, j] = pe
                cur = g.eu[pe]
            order = np.lexsort([*(path[:, j] for j in range(h - 1, -1, -1)), n_])
            n_, e_ = n_[order], e_[order]
            first = np.ones(n_.size, dtype=bool)
            first[1:] = n_[1:] != n_[:-1]
            parent[n_[first]] = e_[first]
    parent = parent.reshape(ns, v)
    if not reach[s_of, dst].all():
        return None
    keys = src * topo.nranks + dst
    uk, inv = np.unique(keys, return_inverse=True)
    first_of = np.zeros(uk.size, dtype=np.int64)
    first_of[inv] = np.arange(keys.size)
    us, ud = s_of[first_of], dst[first_of]
    length = hops[us, ud]
    table = np.full((uk.size, int(length.max())), -1, dtype=np.int32)
    cur = ud.copy()
    for j in range(int(length.max())):
        live = length > j
        e = parent[us[live], cur[live]]
        table[np.flatnonzero(live), length[live] - 1 - j] = e
        cur[live] = g.eu[e]
    return table[inv], _route_latency(topo.link_lat, table)[inv]


def _route_latency(link_lat: np.ndarray, table: np.ndarray) -> np.ndarray:
    """math.fsum of each route's link latencies, as the topology sums them. fsum is exact, then
    rounded once, so it depends only on how many links of each latency a route has: one fsum per
    distinct count vector."""
    values, of = np.unique(link_lat, return_inverse=True)
    valid = table >= 0
    rows = np.repeat(np.arange(table.shape[0], dtype=np.int64), valid.sum(axis=1))
    counts = np.bincount(rows * values.size + of[table[valid]],
                         minlength=table.shape[0] * values.size).reshape(table.shape[0], values.size)
    uniq, back = np.unique(counts, axis=0, return_inverse=True)
    vals = values.tolist()
    sums = [math.fsum(x for x, c in zip(vals, row) for _ in range(c)) for row in uniq.tolist()]
    return np.array(sums, dtype=np.float64)[back.reshape(-1)]
