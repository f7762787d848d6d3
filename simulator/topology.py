"""Network topologies: which links a message between two ranks crosses, and how fast each one is.

[Note: links and routes]
A topology is a directed graph. Its nodes are the ranks (ints 0..N-1) and switch or NIC nodes
(strings: "sw", "nvswitch0", "nic3", "fabric"). Each edge is a *link*: one direction of a wire,
with a bandwidth (bytes/s) and a latency (s), numbered 0..L-1 in a stable order (its *link id*).
A *route* is the sequence of link ids a message from rank src to rank dst crosses: least total
latency, then fewest hops, then the lexicographically smallest link ids. Routes may pass through
other ranks (``ring:N`` forwards through neighbours). Every ordered pair of ranks needs a route.

Presets (GB = 1e9 bytes, as nccl-tests reports; every figure is per link and direction):
- ``ring:N`` (r <-> r+1) and ``switch:N`` (r -> "sw" -> s): 25 GB/s, 5 us per link, round
  defaults for a toy network, not a measurement.
- ``dgx-a100``/``dgx-h100``: 8 GPUs with up/down links to one non-blocking "nvswitch0" (a node's
  NVSwitch chips act as one crossbar). Bandwidth: NCCL's per-NVLink figure x NVLinks per GPU,
  20.0 GB/s x 12 = 240 GB/s (A100), 20.6 GB/s x 18 = 370.8 GB/s (H100). Latency: NCCL's per-hop
  Ring latency over NVLink for the Simple protocol, 3.4 us. Simple is what NCCL runs for large
  messages and the only protocol at full bandwidth (LL and LL128 reach ~0.5x and ~0.92x), so its
  latency is the one that fits a model charging full bandwidth. A GPU-to-GPU hop is two links,
  1.7 us each. Source: NVIDIA/nccl src/graph/tuning.cc (hwLat) and src/graph/topo.h (*_NVLINK_BW).
- ``nodes:MxG``: M nodes of G ranks, rank = node*G + local; inside a node as dgx-h100 (hub
  "nvswitch<node>"); across nodes rank -> "nic<rank>" -> "fabric" -> "nic<peer>" -> peer. NIC:
  12 GB/s, NCCL's figure for a 100 Gb/s NIC (12.5 GB/s raw); latency NCCL's Ring/Simple
  per-hop network figure, 14 us, split over the 4 links of a route (3.5 us each). Same source.
- ``nodes:MxG,gpu=h100,nics=8,nic=400Gb/s`` (options after a comma; ``dgx-a100,...`` and
  ``dgx-h100,...`` are ``nodes:1x8,gpu=...``; a TOML file's ``[cluster]`` table): a GPU cluster as
  NCCL sees it, :mod:`simulator.cluster`. Inside a node as above with the generation's NVLink
  figures; across nodes rank -> "nic<node>.<j>" -> "fabric" -> "nic<peer node>.<k>" -> peer, where
  j is the rank's rail (NIC), so GPUs of one rail share their NIC's links. One node has no NICs
  (NCCL's ``ncclTopoTrimSystem`` drops them when every rank is local).
Every preset's ring order is 0..N-1. Overrides are per link, numbers (bytes/s, s) or strings
("50 GB/s", "2 us"); None means not given: ``bw``, ``lat`` (ring, switch); ``intra_bw``,
``intra_lat`` (dgx-*, nodes); ``nic_bw``, ``nic_lat`` (nodes). TOML files: the README, "Topologies".

Why this module is long (~670 lines): the Topology value type, its route search, the preset
parsers and the TOML loader share the bounded quantity, count and node parsers, and the TOML
loader builds presets for ``[cluster]`` tables. The next split is a ``topology_toml`` module beside
a model module that both import, so that neither imports the other (the import contract forbids
loops).
"""

from __future__ import annotations

import heapq
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import networkx as nx
import numpy as np

from .cluster import NodeSpec, node_spec, parse_options
from .errors import TopologyError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_BW = 25e9  # bytes/s per link for ring:N and switch:N: a round default
DEFAULT_LAT = 5e-6  # seconds per link for ring:N and switch:N: a round default
NVLINK = {"a100": (20.0e9, 12), "h100": (20.6e9, 18)}  # NCCL per-NVLink bytes/s, NVLinks per GPU
NVLINK_HOP_LAT = 3.4e-6  # NCCL Ring/Simple NVLink per-hop latency (tuning.cc)
NET_HOP_LAT = 14e-6  # NCCL Ring/Simple network per-hop latency (tuning.cc)
NIC_BW = 12e9  # NCCL's bytes/s for a 100 Gb/s NIC
_FS = 1e15  # latencies are compared in whole femtoseconds: float rounding cannot break a tie
_DENSE_MAX = 1 << 22  # routes() maps pairs through an N*N table while N*N is at most this
_NEAR = 32  # nodes whose exact distance to dst guides a route search (see _distances_to)
_TREE_MIN = 8  # routes() searches a whole source tree once a source has this many new pairs
_BW_UNITS = {"B/s": 0, "kB/s": 3, "MB/s": 6, "GB/s": 9, "TB/s": 12,
             "b/s": 0, "kb/s": 3, "Mb/s": 6, "Gb/s": 9, "Tb/s": 12}
_LAT_UNITS = {"s": 0, "ms": -3, "us": -6, "µs": -6, "ns": -9}
_QTY = re.compile(r"^\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ/]+)\s*$")
BW_RANGE = (1.0, 1e18)  # bytes/s a link may have: 1 B/s to 1 EB/s
LAT_MAX = 3600.0  # seconds of latency a link may have (femtosecond ticks stay exact integers)
MAX_TOML_BYTES = 256 << 20  # a topology file larger than this is refused before parsing
_PRESET = re.compile(r"^(?:(ring|switch)(?::(\d+))?|dgx-(a100|h100)|nodes:(\d+)x(\d+))$")
_CLUSTER = re.compile(r"^(?:dgx-(a100|h100)|nodes:(\d+)x(\d+))\s*,(.*)$", re.IGNORECASE)  # units keep case


@dataclass(frozen=True, eq=False, repr=False)
class Topology:
    """A directed network of ranks, switches and NICs; see [Note: links and routes].

    Equality compares the network (name, ranks, ring, every link's ends and figures in id order),
    not ``meta``, which only records where the topology came from.
    """

    name: str  # "switch:8", "dgx-h100", "nodes:2x4", or the TOML file's name (default its stem)
    nranks: int
    graph: nx.DiGraph  # edge attributes: id, bw (bytes/s), lat (s)
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
        return _build(d["name"], d["nranks"], rows, d["ring"], dict(d.get("meta") or {}))

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


# -- building and checking -------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _quantity(value, what: str, bandwidth: bool) -> float:
    """Bytes/s (``bandwidth``) or seconds from a number (a string of one too, as the command line
    gives it: ``--bw 25e9``) or a string with a unit; checked."""
    units, example = (_BW_UNITS, "25 GB/s") if bandwidth else (_LAT_UNITS, "5 us")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TopologyError(f"{what} {value!r} is not a number; give a number or a string like {example!r}")
    x = value
    if isinstance(value, str) and _is_number(value):
        x = float(value)
    elif isinstance(value, str):
        m = _QTY.match(value)
        try:
            x = Decimal(m.group(1)).scaleb(units[m.group(2)])  # exact, then rounded once
        except (AttributeError, KeyError, InvalidOperation):
            raise TopologyError(f"cannot read {what} {value!r}: use a number or a string like {example!r} "
                                f"(units: {', '.join(units)})") from None
        x = x / 8 if m.group(2).endswith("b/s") else x  # "Gb/s" counts bits
    try:
        x = float(x)
    except OverflowError:
        x = math.inf
    if not (math.isfinite(x) and (x > 0 if bandwidth else x >= 0)):
        kind = "bandwidth > 0 bytes/s" if bandwidth else "latency >= 0 s"
        raise TopologyError(f"{what} {value!r} must be a finite {kind}, e.g. {example!r}")
    lo, hi = BW_RANGE if bandwidth else (0.0, LAT_MAX)
    if not lo <= x <= hi:
        unit = "bytes/s" if bandwidth else "s"
        raise TopologyError(f"{what} {value!r} is out of range: {lo:g} to {hi:g} {unit}")
    return x


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise TopologyError(f"{what} {value!r} must be a whole number >= 1")
    return int(value)


def _node(x, n: int, what: str):
    if isinstance(x, str) and x:
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TopologyError(f"{what} {x!r} is neither a rank (an int) nor a switch/NIC name (a string)")
    if not 0 <= x < n:
        raise TopologyError(f"{what} {x} is not a rank: ranks are 0..{n - 1}; use one of those "
                            "or a string for a switch/NIC node")
    return int(x)


def _build(name, nranks, links, ring=None, meta=None) -> Topology:
    """A checked :class:`Topology` from (src, dst, bw, lat, label) rows; link id = row index."""
    if not isinstance(name, str) or not name:
        raise TopologyError(f"topology name {name!r} must be a non-empty string")
    n = _count(nranks, "number of ranks")
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    bws, lats, names = [], [], []
    for i, (u, v, bw, lat, label) in enumerate(links):
        u, v = _node(u, n, f"{label}: src"), _node(v, n, f"{label}: dst")
        if u == v:
            raise TopologyError(f"{label}: link from {u!r} to itself; a link joins two different nodes")
        if g.has_edge(u, v):
            raise TopologyError(f"{label}: link {u}->{v} is given twice; give each direction once")
        bws.append(_quantity(bw, f"{label}: bw", True))
        lats.append(_quantity(lat, f"{label}: lat", False))
        names.append(f"{u}->{v}")
        g.add_edge(u, v, id=i, bw=bws[-1], lat=lats[-1])
    ring = tuple(range(n)) if ring is None else ring
    if (not isinstance(ring, (list, tuple)) or any(isinstance(r, bool) or not isinstance(r, int) for r in ring)
            or sorted(ring) != list(range(n))):
        raise TopologyError(f"ring {ring!r} is not a permutation of the ranks 0..{n - 1}; list each rank once")
    reach = nx.descendants(g, 0) | {0}
    back = nx.ancestors(g, 0) | {0}
    for r in range(n):  # 0 reaches every rank and every rank reaches 0: every pair has a route
        if r not in reach or r not in back:
            a, b = (0, r) if r not in reach else (r, 0)
            raise TopologyError(f"no route from rank {a} to rank {b} in {name!r}; add links so every rank "
                                "reaches every other")
    return Topology(name, n, g, tuple(ring), np.array(bws, np.float64), np.array(lats, np.float64),
                    tuple(names), meta if meta is not None else {})


# -- presets and files -----------------------------------------------------------------------------
def parse_topology(spec: str, nranks: int | None = None, **overrides) -> Topology:
    """A topology from ``ring[:N]``, ``switch[:N]``, ``dgx-a100``, ``dgx-h100``, ``nodes:MxG`` or a
    ``.toml`` path. ``nranks`` gives N where the spec has none and must agree where it has one."""
    if not isinstance(spec, str):
        raise TopologyError(f"topology spec {spec!r} must be a string such as 'switch:8'")
    if nranks is not None:
        nranks = _count(nranks, "nranks")
    given = {k: v for k, v in overrides.items() if v is not None}
    c = _CLUSTER.match(spec.strip())
    if c is not None:
        if given:
            raise TopologyError(f"overrides {sorted(given)} do not apply to {spec!r}; give nvlink=, nic= options")
        gpu, m_text, g_text, opts = c.groups()
        options = parse_options(opts)
        if gpu:
            options.setdefault("gpu", gpu.lower())
        nodes, per = (1, 8) if gpu else (int(m_text), int(g_text))
        _bounded(nodes * per, spec)
        return cluster_topology(node_spec(nodes, per, options, lambda v, w: _quantity(v, w, True)), nranks,
                                name=spec.strip())
    m = _PRESET.match(spec.strip().lower())
    if m is None:
        if spec.strip().lower().endswith(".toml") or "/" in spec or Path(spec).is_file():
            if given:
                raise TopologyError(f"overrides {sorted(given)} do not apply to the file {spec!r}; edit the file")
            return _load_toml(Path(spec.strip()), nranks)
        raise TopologyError(f"unknown topology {spec!r}: use ring:N, switch:N, dgx-a100, dgx-h100, nodes:MxG "
                            "or a path to a .toml file")
    kind, n_text, gpu, m_text, g_text = m.groups()
    if kind:
        if n_text is None and nranks is None:
            raise TopologyError(f"{spec!r} needs a rank count: write {kind}:8 or pass nranks")
        n = _count(int(n_text), f"rank count of {spec!r}") if n_text else nranks
        _bounded(n, spec)
        o = _overrides(spec, given, bw=DEFAULT_BW, lat=DEFAULT_LAT)
        links = _ring_links(n, o) if kind == "ring" else _star_links(range(n), "sw", o["bw"], o["lat"])
        return _checked(f"{kind}:{n}", n, nranks, links, {"preset": kind, "nranks": n, **o})
    if gpu:
        per_link, count = NVLINK[gpu]
        o = _overrides(spec, given, intra_bw=per_link * count, intra_lat=NVLINK_HOP_LAT / 2)
        meta = {"preset": f"dgx-{gpu}", "nvlink_bw": per_link, "nvlinks": count, **o}
        return _checked(f"dgx-{gpu}", 8, nranks, _star_links(range(8), "nvswitch0", o["intra_bw"],
                                                            o["intra_lat"]), meta)
    nodes, per = _count(int(m_text), f"node count of {spec!r}"), _count(int(g_text), f"ranks per node of {spec!r}")
    _bounded(nodes * per, spec)
    per_link, count = NVLINK["h100"]
    o = _overrides(spec, given, intra_bw=per_link * count, intra_lat=NVLINK_HOP_LAT / 2,
                   nic_bw=NIC_BW, nic_lat=NET_HOP_LAT / 4)
    n = nodes * per
    intra = [_star_links(range(k * per, (k + 1) * per), f"nvswitch{k}", o["intra_bw"], o["intra_lat"])
             for k in range(nodes)]
    links = [row for half in (0, 1) for part in intra for row in part[half * per:(half + 1) * per]]
    nic = o["nic_bw"], o["nic_lat"]
    links += [(r, f"nic{r}", *nic, f"nic up {r}") for r in range(n)]
    links += [(f"nic{r}", "fabric", *nic, f"fabric up {r}") for r in range(n)]
    links += [("fabric", f"nic{r}", *nic, f"fabric down {r}") for r in range(n)]
    links += [(f"nic{r}", r, *nic, f"nic down {r}") for r in range(n)]
    meta = {"preset": "nodes", "nodes": nodes, "ranks_per_node": per, **o}
    return _checked(f"nodes:{nodes}x{per}", n, nranks, links, meta)


def _bounded(n: int, spec: str) -> None:
    """A preset's rank count within the limit (rankscope.simulator.limits.max_ranks), checked before
    its links are built: ``nodes:1000x1000`` would take minutes of Python first."""
    from . import limits

    if n > limits.max_ranks():
        raise TopologyError(f"topology {spec!r}: {n} ranks is over the limit of {limits.max_ranks()} "
                            "(raise it with RANKSCOPE_MAX_RANKS=<n>)")


def cluster_topology(spec: NodeSpec, nranks: int | None = None, name: str | None = None) -> Topology:
    """The links of a GPU cluster (see the module docstring); ``meta["cluster"]`` keeps the spec."""
    per, n = spec.gpus, spec.nranks
    intra_lat = NVLINK_HOP_LAT / 2
    if spec.nvswitch:
        intra = [_star_links(range(k * per, (k + 1) * per), f"nvswitch{k}", spec.gpu_nvlink_bw, intra_lat)
                 for k in range(spec.nodes)]
        links = [row for half in (0, 1) for part in intra for row in part[half * per:(half + 1) * per]]
    else:  # 1 or 2 GPUs joined by their NVLinks directly
        links = [(k * per + a, k * per + b, spec.gpu_nvlink_bw, NVLINK_HOP_LAT, f"nvlink {k}:{a}->{b}")
                 for k in range(spec.nodes) for a in range(per) for b in range(per) if a != b]
    if spec.nodes > 1:
        nic = lambda r: f"nic{r // per}.{spec.rail(r % per)}"
        nics = [f"nic{k}.{j}" for k in range(spec.nodes) for j in range(spec.nics)]
        bw, lat = spec.nic_bw, NET_HOP_LAT / 4
        links += [(r, nic(r), bw, lat, f"nic up {r}") for r in range(n)]
        links += [(x, "fabric", bw, lat, f"fabric up {x}") for x in nics]
        links += [("fabric", x, bw, lat, f"fabric down {x}") for x in nics]
        links += [(nic(r), r, bw, lat, f"nic down {r}") for r in range(n)]
    label = name or f"nodes:{spec.nodes}x{per},gpu={spec.gpu}"
    meta = {"preset": "cluster", "nodes": spec.nodes, "ranks_per_node": per, "cluster": spec.to_dict()}
    return _checked(label, n, nranks, links, meta)


def _overrides(spec: str, given: dict, **defaults) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TopologyError(f"override {unknown[0]!r} does not apply to {spec!r}; use {', '.join(defaults)}")
    return {k: _quantity(given.get(k, v), f"override {k}", k.endswith("bw")) for k, v in defaults.items()}


def _checked(name: str, n: int, nranks: int | None, links: list, meta: dict, ring=None) -> Topology:
    if nranks is not None and nranks != n:
        raise TopologyError(f"topology {name!r} has {n} ranks but nranks={nranks} was asked for; make them agree")
    return _build(name, n, links, ring, meta)


def _ring_links(n: int, o: dict) -> list:
    """Link r is r -> r+1; link N+r is r+1 -> r (one pair of links when N = 2, none when N = 1)."""
    fwd = [(r, (r + 1) % n, o["bw"], o["lat"], f"ring link {r}") for r in range(n)] if n > 1 else []
    back = [((r + 1) % n, r, o["bw"], o["lat"], f"ring link {n + r}") for r in range(n)] if n > 2 else []
    return fwd + back


def _star_links(ranks, hub: str, bw: float, lat: float) -> list:
    """Up links rank -> hub in rank order, then down links hub -> rank."""
    ranks = list(ranks)
    return ([(r, hub, bw, lat, f"link {r}->{hub}") for r in ranks]
            + [(hub, r, bw, lat, f"link {hub}->{r}") for r in ranks])


def _load_toml(path: Path, nranks: int | None) -> Topology:
    if not path.is_file():
        raise TopologyError(f"topology file {str(path)!r} does not exist; check the path")
    try:
        if path.stat().st_size > MAX_TOML_BYTES:
            raise TopologyError(f"topology file {str(path)!r} is over {MAX_TOML_BYTES >> 20} MiB; not a topology")
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"topology file {str(path)!r} is not valid TOML: {e}; fix the syntax there") from None
    except RecursionError:
        raise TopologyError(f"topology file {str(path)!r} nests arrays or tables too deeply") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"cannot read topology file {str(path)!r}: {e}") from None
    where = str(path)
    if "cluster" in doc:
        return _toml_cluster(doc, where, path, nranks)
    extra = sorted(set(doc) - {"name", "ranks", "ring", "link", "rank", "nccl"})
    if extra:
        raise TopologyError(f"{where}: unknown key {extra[0]!r}; the keys are name, ranks, ring, [[rank]], [[link]] "
                            "and [nccl]")
    if not isinstance(doc.get("nccl", {}), dict):  # NCCL's channel layout (simulator/interop/nccl_topology.py), kept as meta
        raise TopologyError(f"{where}: 'nccl' must be a table, written [nccl]")
    if "ranks" not in doc:
        raise TopologyError(f"{where}: missing key 'ranks' (the number of ranks); add e.g. ranks = 4")
    raw = doc.get("link", [])
    if not isinstance(raw, list):
        raise TopologyError(f"{where}: 'link' must be an array of tables, written [[link]]")
    links = []
    for k, t in enumerate(raw, 1):
        label = f"{where}: [[link]] #{k}"
        if not isinstance(t, dict):
            raise TopologyError(f"{label} is {t!r}, not a table; write it as [[link]]")
        bad = sorted(set(t) - {"src", "dst", "bw", "lat", "bidirectional"})
        if bad:
            raise TopologyError(f"{label}: unknown key {bad[0]!r}; a link has src, dst, bw, lat, bidirectional")
        for key in ("src", "dst", "bw", "lat"):
            if key not in t:
                raise TopologyError(f"{label} is missing key {key!r}; every link needs src, dst, bw and lat")
        both = t.get("bidirectional", False)
        if not isinstance(both, bool):
            raise TopologyError(f"{label}: bidirectional = {both!r} must be true or false")
        links.append((t["src"], t["dst"], t["bw"], t["lat"], label))
        if both:
            links.append((t["dst"], t["src"], t["bw"], t["lat"], f"{label} (reverse)"))
    n = _count(doc["ranks"], f"{where}: ranks")
    from . import limits

    if n > limits.max_ranks():
        raise TopologyError(f"{where}: ranks = {n} is over the limit of {limits.max_ranks()} "
                            "(raise it with RANKSCOPE_MAX_RANKS=<n>)")
    name = doc.get("name", path.stem)
    if not isinstance(name, str):
        raise TopologyError(f"{where}: name = {name!r} must be a string")
    meta = {"preset": "toml", "path": where, **({"nccl": doc["nccl"]} if "nccl" in doc else {})}
    if "rank" in doc:
        meta["rank_speed"] = _rank_speeds(doc["rank"], n, where)
    try:
        return _checked(name, n, nranks, links, meta, doc.get("ring"))
    except TopologyError as e:  # say which file, once
        raise e if str(e).startswith(where) else TopologyError(f"{where}: {e}") from None


def _rank_speeds(raw, n: int, where: str) -> list[float]:
    """``[[rank]]`` tables (``id``, ``speed``: compute runs at ``speed`` x the device's rate, so a
    rank's compute ops take 1/speed as long) as one factor per rank, 1.0 where none is given."""
    if not isinstance(raw, list):
        raise TopologyError(f"{where}: 'rank' must be an array of tables, written [[rank]]")
    speeds = [1.0] * n
    seen = set()
    for k, t in enumerate(raw, 1):
        label = f"{where}: [[rank]] #{k}"
        if not isinstance(t, dict) or sorted(t) != ["id", "speed"]:
            raise TopologyError(f"{label}: a rank table has exactly the keys id and speed")
        r, speed = t["id"], t["speed"]
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < n or r in seen:
            raise TopologyError(f"{label}: id = {r!r} must be a rank 0..{n - 1}, given once")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < math.inf:
            raise TopologyError(f"{label}: speed = {speed!r} must be a number > 0 (1 = the device's rate)")
        seen.add(r)
        speeds[r] = float(speed)
    return speeds


def _toml_cluster(doc: dict, where: str, path: Path, nranks: int | None) -> Topology:
    """A ``[cluster]`` table: ``nodes``, ``gpus`` and the options of [Note: cluster presets]."""
    extra = sorted(set(doc) - {"name", "cluster"})
    if extra:
        raise TopologyError(f"{where}: key {extra[0]!r} cannot go with [cluster]; a cluster file has name and "
                            "[cluster] (nodes, gpus, gpu, nvlinks, nvlink, nvswitch, nvls, nics, nic)")
    t = doc["cluster"]
    if not isinstance(t, dict) or "nodes" not in t or "gpus" not in t:
        raise TopologyError(f"{where}: [cluster] needs nodes and gpus, e.g. nodes = 2, gpus = 8")
    options = {k: v for k, v in t.items() if k not in ("nodes", "gpus")}
    try:
        spec = node_spec(t["nodes"], t["gpus"], options, lambda v, w: _quantity(v, w, True))
        _bounded(spec.nranks, where)
        return cluster_topology(spec, nranks, name=doc.get("name", path.stem))
    except TopologyError as e:
        raise TopologyError(f"{where}: {e}") from None
