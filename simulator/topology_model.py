"""The topology value type: a directed network of ranks, switches and NICs, its links and routes.

[Note: links and routes]
A topology is a directed graph. Its nodes are the ranks (ints 0..N-1) and switch or NIC nodes
(strings: "sw", "nvswitch0", "nic3", "fabric"). Each edge is a *link*: one direction of a wire,
with a bandwidth (bytes/s) and a latency (s), numbered 0..L-1 in a stable order (its *link id*).
A *route* is the sequence of link ids a message from rank src to rank dst crosses: least total
latency, then fewest hops, then the lexicographically smallest link ids. Routes may pass through
other ranks (``ring:N`` forwards through neighbours). Every ordered pair of ranks needs a route.

Built and checked by :func:`build` from (src, dst, bw, lat, label) rows; the presets and TOML files
that make the rows are :mod:`simulator.topology` and :mod:`simulator.topology_toml`.
"""

from __future__ import annotations

import heapq
import json
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .errors import TopologyError
from .topology_values import parse_count, parse_node, parse_quantity

_FS = 1e15  # latencies are compared in whole femtoseconds: float rounding cannot break a tie
_DENSE_MAX = 1 << 22  # routes() maps pairs through an N*N table while N*N is at most this
_NEAR = 32  # nodes whose exact distance to dst guides a route search (see _distances_to)
_TREE_MIN = 8  # routes() searches a whole source tree once a source has this many new pairs


class Graph:
    """A topology's links as a directed graph: nodes (ranks, then the named nodes, in the order they
    came) and edges with their attributes (id, bw, lat). The part of ``networkx.DiGraph``'s interface
    the project uses (``nodes``, ``edges(data=...)``, ``edges[u, v]``, ``has_edge``,
    ``number_of_nodes``), iterating in the same order (edges by source node, then as added), without
    importing networkx, which cost a tenth of a second of every command's start."""

    def __init__(self) -> None:
        self._succ: dict = {}
        self._pred: dict = {}

    @property
    def nodes(self):
        return self._succ.keys()

    def add_node(self, n) -> None:
        if n not in self._succ:
            self._succ[n], self._pred[n] = {}, {}

    def add_nodes_from(self, nodes) -> None:
        for n in nodes:
            self.add_node(n)

    def add_edge(self, u, v, **attrs) -> None:
        self.add_node(u)
        self.add_node(v)
        d = self._succ[u].setdefault(v, {})
        d.update(attrs)
        self._pred[v][u] = d

    def add_edges_from(self, edges) -> None:
        for u, v, *rest in edges:
            self.add_edge(u, v, **(rest[0] if rest else {}))

    def has_edge(self, u, v) -> bool:
        return u in self._succ and v in self._succ[u]

    def number_of_nodes(self) -> int:
        return len(self._succ)

    @property
    def edges(self) -> _Edges:
        return _Edges(self._succ)

    def reachable(self, src, backwards: bool = False) -> set:
        """Every node a path leads to from ``src`` (``backwards``: from which one leads to it)."""
        adj = self._pred if backwards else self._succ
        seen, stack = {src}, [src]
        while stack:
            for w in adj[stack.pop()]:
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        return seen


class _Edges:
    """``graph.edges(data=True)`` and ``graph.edges[u, v]``, as networkx's edge view."""

    def __init__(self, succ: dict) -> None:
        self._succ = succ

    def __call__(self, data: bool = False):
        for u, nbrs in self._succ.items():
            for v, d in nbrs.items():
                yield (u, v, d) if data else (u, v)

    def __iter__(self):
        return self()

    def __len__(self) -> int:
        return sum(len(n) for n in self._succ.values())

    def __getitem__(self, uv) -> dict:
        u, v = uv
        return self._succ[u][v]


@dataclass(frozen=True, eq=False, repr=False)
class Topology:
    """A directed network of ranks, switches and NICs; see [Note: links and routes].

    Equality compares the network (name, ranks, ring, every link's ends and figures in id order),
    not ``meta``, which only records where the topology came from.
    """

    name: str  # "switch:8", "dgx-h100", "nodes:2x4", or the TOML file's name (default its stem)
    nranks: int
    graph: Graph  # edge attributes: id, bw (bytes/s), lat (s)
    ring: tuple[int, ...]  # the ring order the ranks use
    link_bw: np.ndarray  # (L,) float64 bytes/s of link id i
    link_lat: np.ndarray  # (L,) float64 seconds of link id i
    link_names: tuple[str, ...]  # "0->sw", ...
    meta: dict = field(default_factory=dict)
    # derived in __post_init__: _ends[i] = (src, dst) of link i; _out[node] = ({next: (lat_fs, id)},
    # [(lat_fs, id, next)] sorted); _in[node] = [(lat_fs, id, previous)] sorted; caches _toward, _cache
    _ends: tuple = field(init=False)
    _out: dict = field(init=False)
    _in: dict = field(init=False)
    _toward: dict = field(init=False)
    _cache: dict = field(init=False)

    def __post_init__(self) -> None:
        nlinks = len(self.link_names)
        ends: list = [None] * nlinks
        out: dict = {}
        into: dict = {}
        for u, v, d in self.graph.edges(data=True):
            i, lat = d.get("id"), d.get("lat")
            if not isinstance(i, int) or not 0 <= i < nlinks or ends[i] is not None:
                raise TopologyError(f"link {u}->{v} has id {i!r}: ids must be 0..{nlinks - 1}, once each")
            if not isinstance(lat, numbers.Real) or not 0 <= lat < math.inf:
                raise TopologyError(f"link {u}->{v} has latency {lat!r}: give every edge a lat >= 0 s")
            ends[i], lat_fs = (u, v), round(lat * _FS)
            out.setdefault(u, ({}, []))[0][v] = (lat_fs, i)
            out[u][1].append((lat_fs, i, v))
            into.setdefault(v, []).append((lat_fs, i, u))
        for lists in (*(o[1] for o in out.values()), *into.values()):
            lists.sort()  # by latency, then link id (unique: nodes are never compared)
        for arr in ("link_bw", "link_lat"):
            a = np.array(getattr(self, arr), dtype=np.float64)
            if a.shape != (nlinks,):
                raise TopologyError(f"{arr} has shape {a.shape}, expected ({nlinks},): one figure per link")
            a.flags.writeable = False
            object.__setattr__(self, arr, a)
        derived = {"ring": tuple(int(r) for r in self.ring), "_ends": tuple(ends), "_out": out, "_in": into,
                   "_toward": {}, "_cache": {}}
        for key, value in derived.items():
            object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return f"Topology({self.name!r}, nranks={self.nranks}, links={len(self.link_names)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return (self.name == other.name and self.nranks == other.nranks and self.ring == other.ring
                and self._ends == other._ends and np.array_equal(self.link_bw, other.link_bw)
                and np.array_equal(self.link_lat, other.link_lat))

    def __hash__(self) -> int:
        return hash((self.name, self.nranks, self.ring, self.link_names))

    # -- routes ------------------------------------------------------------------------------------
    def route(self, src: int, dst: int) -> np.ndarray:
        """Link ids from rank ``src`` to rank ``dst`` (int32, read-only; cached)."""
        key = (self._rank(src), self._rank(dst))
        if key[0] == key[1]:
            raise TopologyError(f"no route from rank {key[0]} to itself: a transfer needs two distinct ranks")
        hit = self._cache.get(key)
        return self._remember(key[0], [key[1]], self._settle(*key)) if hit is None else hit

    def routes(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Routes of K pairs: (hops (K, H) int32 link ids padded with -1, latency (K,) float64 s).

        Each distinct pair is routed once and the K rows are gathered from those: a ring's
        millions of transfers cost N searches.
        """
        src, dst, n = np.asarray(src), np.asarray(dst), self.nranks
        if src.shape != dst.shape or src.ndim != 1 or not all(np.issubdtype(a.dtype, np.integer) for a in (src, dst)):
            raise TopologyError(f"routes() takes two 1-D integer arrays of one length, got {src.dtype}{src.shape} "
                                f"and {dst.dtype}{dst.shape}")
        if src.size == 0:
            return np.empty((0, 0), np.int32), np.empty(0, np.float64)
        bad = (src < 0) | (src >= n) | (dst < 0) | (dst >= n) | (src == dst)
        if bad.any():  # route() says what is wrong with the first bad pair
            k = int(np.argmax(bad))
            self.route(int(src[k]), int(dst[k]))
        keys = src.astype(np.int64) * n + dst
        if n * n <= _DENSE_MAX:  # O(K) instead of np.unique's sort
            seen = np.zeros(n * n, dtype=bool)
            seen[keys] = True
            uniq = np.flatnonzero(seen)
            slot = np.full(n * n, -1, dtype=np.int32)
            slot[uniq] = np.arange(uniq.size, dtype=np.int32)
            inv = slot[keys]
        else:
            uniq, inv = np.unique(keys, return_inverse=True)
        pairs = [divmod(k, n) for k in uniq.tolist()]
        fresh: dict[int, list] = {}  # source -> destinations not yet cached
        for s, d in pairs:
            if (s, d) not in self._cache:
                fresh.setdefault(s, []).append(d)
        for s, dsts in fresh.items():  # many from one source: one whole Dijkstra beats many searches
            if len(dsts) >= _TREE_MIN:
                self._remember(s, dsts, self._settle(s, None))
        paths = [self.route(s, d) for s, d in pairs]
        table = np.full((len(paths), max(p.size for p in paths)), -1, dtype=np.int32)
        lat = np.empty(len(paths), dtype=np.float64)
        for j, p in enumerate(paths):
            table[j, :p.size] = p
            lat[j] = math.fsum(self.link_lat[p].tolist())
        return table[inv], lat[inv]

    def _rank(self, r) -> int:
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or not 0 <= r < self.nranks:
            raise TopologyError(f"rank {r!r} is not a rank of {self.name} (ranks 0..{self.nranks - 1}); "
                                "use a rank in that range")
        return int(r)

    def _remember(self, src: int, dsts: list, cost: dict) -> np.ndarray:
        parent = self._parents(src, cost)
        for dst in dsts:
            path, v = [], dst
            while v != src:
                v, i = parent[v]
                path.append(i)
            arr = np.array(path[::-1], dtype=np.int32)
            arr.flags.writeable = False
            self._cache[(src, dst)] = arr
        return arr

    def _settle(self, src: int, dst: int | None) -> dict:
        """Exact (latency, hops) from ``src`` of every node an A* search towards ``dst`` settles.

        [Note: route search] Costs are (latency in fs, hops) pairs compared as tuples. Towards one
        dst the heuristic is ``_distances_to(dst)``, which is consistent, so every settled node's
        cost is exact. Edges that cannot beat the best complete path pushed so far (``top``) are
        never pushed: past a switch of thousands of ports only those that can lead to dst are.
        The search runs on past dst until the heap holds nothing as cheap, so every node of every
        optimal path is settled; :meth:`_parents` then picks the smallest link ids among them.
        With ``dst`` None it is a plain Dijkstra over the whole graph.
        """
        exact, floor = self._distances_to(dst) if dst is not None else ({}, (0, 0))
        h = exact.get(src, floor)
        heap = [(h[0], h[1], 0, 0, 0, src)]  # (f lat, f hops, seq, g lat, g hops, node)
        best, cost, seq = {src: h}, {}, 1
        top = None  # (lat, hops) of the best complete path pushed so far

        def push(l: int, v) -> None:
            nonlocal top, seq
            hl, hh = exact.get(v, floor)
            f = (gl + l + hl, gh + 1 + hh)
            if v in cost or (top is not None and f > top) or (v in best and not f < best[v]):
                return
            best[v] = f
            heapq.heappush(heap, (*f, seq, gl + l, gh + 1, v))
            seq += 1
            if v in exact:  # the heuristic is exact there: f is a complete path's cost
                top = f if top is None else min(top, f)

        while heap:
            fl, fh, _, gl, gh, u = heapq.heappop(heap)
            if top is not None and (fl, fh) > top:
                break
            if u in cost:
                continue
            cost[u] = (gl, gh)
            if u == dst:
                continue
            near, by_lat = self._out.get(u, ({}, ()))
            for v in _common(near, exact):
                push(near[v][0], v)
            for l, _, v in by_lat:  # the rest have h = floor; sorted by latency: stop at the first too long
                if top is not None and (gl + l + floor[0], gh + 1 + floor[1]) > top:
                    break
                if v not in exact:
                    push(l, v)
        if dst is not None and dst not in cost:
            raise TopologyError(f"{self.name}: no route from rank {src} to rank {dst}; add links between them")
        return cost

    def _parents(self, src: int, cost: dict) -> dict:
        """node -> (previous node, link id) on its optimal path with the smallest link ids.

        A predecessor u of v is *tight* when cost[u] + edge == cost[v]; tight predecessors are one
        hop closer to src, so nodes are ranked level by level (hop count): a node takes the tight
        predecessor of lowest rank, then the lowest link id, and is ranked within its level by that
        pair. Equal-length paths compare as (prefix, last link), so ranks follow the
        lexicographic order of the paths, without comparing paths element by element.
        """
        levels: dict = {}
        for v, (_, hops) in cost.items():
            levels.setdefault(hops, []).append(v)
        rank, parent = {src: 0}, {}
        for hops in sorted(levels)[1:]:
            keyed = []
            for v in levels[hops]:
                ins = self._in.get(v, ())
                edges = ([e for e in ins if e[2] in cost] if len(ins) <= len(cost) else
                         [(*self._out[u][0][v], u) for u in cost if v in self._out.get(u, ({},))[0]])
                keyed.append(min((rank[u], i, u, v) for l, i, u in edges
                                 if (cost[u][0] + l, cost[u][1] + 1) == cost[v]))
            keyed.sort(key=lambda k: k[:2])  # (rank, link id) is unique: a link has one head
            for r, (_, i, u, v) in enumerate(keyed):
                rank[v], parent[v] = r, (u, i)
        return parent

    def _distances_to(self, dst) -> tuple[dict, tuple]:
        """Exact (latency, hops) to ``dst`` from its ``_NEAR`` nearest nodes, and a floor for the others.

        Dijkstra backwards over in-edges sorted by latency and generated one at a time, so a switch's
        thousands of ports cost one heap entry each time the next one is needed.
        """
        hit = self._toward.get(dst)
        if hit is None:
            into, dist, seq = self._in, {}, 1
            heap = [(0, 0, 0, dst, None, 0)]  # (lat, hops, seq, node, via, k): node is in-edge k of via
            while heap and len(dist) < _NEAR:
                lat, hops, _, v, via, k = heapq.heappop(heap)
                if v not in dist:
                    dist[v] = (lat, hops)
                    if into.get(v):
                        heapq.heappush(heap, (lat + into[v][0][0], hops + 1, seq, into[v][0][2], v, 0))
                        seq += 1
                if via is not None and k + 1 < len(into[via]):
                    l, _, w = into[via][k + 1]
                    heapq.heappush(heap, (dist[via][0] + l, dist[via][1] + 1, seq, w, via, k + 1))
                    seq += 1
            hit = self._toward[dst] = (dist, heap[0][:2] if heap else (math.inf, math.inf))
        return hit

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able description; :meth:`from_dict` rebuilds an equal topology (meta included)."""
        links = [[u, v, float(b), float(t)] for (u, v), b, t in zip(self._ends, self.link_bw, self.link_lat)]
        return {"name": self.name, "nranks": self.nranks, "ring": list(self.ring), "links": links,
                "meta": dict(self.meta)}

    def with_figures(self, bw, lat, name: str, meta: dict) -> Topology:
        """This topology with every link's bandwidth and latency replaced (the same links, ids,
        ranks and ring; what :meth:`from_dict` of the edited :meth:`to_dict` gives, without
        checking the links again)."""
        bw, lat = np.asarray(bw, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        if bw.shape != self.link_bw.shape or lat.shape != self.link_lat.shape:
            raise TopologyError(f"{name}: one bandwidth and one latency per link ({self.link_bw.size}) are needed")
        if not (np.all((bw > 0) & (bw < np.inf)) and np.all((lat >= 0) & (lat < np.inf))):
            raise TopologyError(f"{name}: bandwidths must be finite and > 0, latencies finite and >= 0")
        g = Graph()
        g.add_nodes_from(self.graph.nodes)
        g.add_edges_from((u, v, {"id": i, "bw": b, "lat": t})
                         for i, ((u, v), b, t) in enumerate(zip(self._ends, bw.tolist(), lat.tolist())))
        return Topology(name, self.nranks, g, self.ring, bw, lat, self.link_names, meta)

    @classmethod
    def from_dict(cls, d: dict) -> Topology:
        """The topology :meth:`to_dict` wrote; TopologyError on a missing key or a bad value."""
        if not isinstance(d, dict):
            raise TopologyError(f"a topology dict is needed, got {type(d).__name__}")
        for key in ("name", "nranks", "ring", "links"):
            if key not in d:
                raise TopologyError(f"topology dict is missing key {key!r}; pass what Topology.to_dict wrote")
        rows = []
        for i, row in enumerate(d["links"]):
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise TopologyError(f"links[{i}] = {row!r}: expected [src, dst, bw, lat]")
            rows.append((*row, f"links[{i}]"))
        return build(d["name"], d["nranks"], rows, d["ring"], dict(d.get("meta") or {}))

    def to_toml(self) -> str:
        """The TOML format (README, "Topologies"); parse_topology on it gives an equal topology."""
        out = [f"# rankscope topology; built from {json.dumps(self.meta, sort_keys=True, default=str)}",
               f"name = {json.dumps(self.name)}", f"ranks = {self.nranks}",
               f"ring = [{', '.join(map(str, self.ring))}]"]
        for r, speed in enumerate(self.meta.get("rank_speed") or ()):
            if speed != 1.0:
                out += ["", "[[rank]]", f"id = {r}", f"speed = {float(speed)!r}"]
        for i, ((u, v), b, t) in enumerate(zip(self._ends, self.link_bw, self.link_lat)):
            out += ["", f"[[link]]  # id {i}", f"src = {_toml_node(u)}", f"dst = {_toml_node(v)}",
                    f"bw = {float(b)!r}  # {b / 1e9:g} GB/s", f"lat = {float(t)!r}  # {t * 1e6:g} us"]
        return "\n".join(out) + "\n"


def _common(near: dict, nodes) -> list:
    """The keys of ``near`` that are in ``nodes``, iterating over the smaller of the two."""
    return [v for v in near if v in nodes] if len(near) <= len(nodes) else [v for v in nodes if v in near]


def _toml_node(node) -> str:
    return str(node) if isinstance(node, int) else json.dumps(node)



def build(name, nranks, links, ring=None, meta=None) -> Topology:
    """A checked :class:`Topology` from (src, dst, bw, lat, label) rows; link id = row index."""
    if not isinstance(name, str) or not name:
        raise TopologyError(f"topology name {name!r} must be a non-empty string")
    n = parse_count(nranks, "number of ranks")
    g = Graph()
    g.add_nodes_from(range(n))
    bws, lats, names = [], [], []
    for i, (u, v, bw, lat, label) in enumerate(links):
        u, v = parse_node(u, n, f"{label}: src"), parse_node(v, n, f"{label}: dst")
        if u == v:
            raise TopologyError(f"{label}: link from {u!r} to itself; a link joins two different nodes")
        if g.has_edge(u, v):
            raise TopologyError(f"{label}: link {u}->{v} is given twice; give each direction once")
        bws.append(parse_quantity(bw, f"{label}: bw", True))
        lats.append(parse_quantity(lat, f"{label}: lat", False))
        names.append(f"{u}->{v}")
        g.add_edge(u, v, id=i, bw=bws[-1], lat=lats[-1])
    ring = tuple(range(n)) if ring is None else ring
    if (not isinstance(ring, (list, tuple)) or any(isinstance(r, bool) or not isinstance(r, int) for r in ring)
            or sorted(ring) != list(range(n))):
        raise TopologyError(f"ring {ring!r} is not a permutation of the ranks 0..{n - 1}; list each rank once")
    reach = g.reachable(0)
    back = g.reachable(0, backwards=True)
    for r in range(n):  # 0 reaches every rank and every rank reaches 0: every pair has a route
        if r not in reach or r not in back:
            a, b = (0, r) if r not in reach else (r, 0)
            raise TopologyError(f"no route from rank {a} to rank {b} in {name!r}; add links so every rank "
                                "reaches every other")
    return Topology(name, n, g, tuple(ring), np.array(bws, np.float64), np.array(lats, np.float64),
                    tuple(names), meta if meta is not None else {})



def checked(name: str, n: int, nranks: int | None, links: list, meta: dict, ring=None) -> Topology:
    if nranks is not None and nranks != n:
        raise TopologyError(f"topology {name!r} has {n} ranks but nranks={nranks} was asked for; make them agree")
    return build(name, n, links, ring, meta)
