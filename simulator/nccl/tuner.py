"""NCCL's tuner: predicted time per (algorithm, protocol), the choice, and the channels it runs.

Reimplemented from NCCL 2.20.3 (see :mod:`.constants`):
- ``tune`` is ``ncclTopoTuneModel`` (src/graph/tuning.cc): per collective, algorithm and
  protocol a bandwidth (GB/s, algorithm bandwidth) and a latency (us) from the graphs of
  :mod:`.search`, then the enable rules (LL128 by compute capability and path types, NVLSTree
  only across nodes, NVLS only on one node without CollNet, ``NCCL_ALGO``/``NCCL_PROTO``).
- ``Tuning.time`` is ``ncclTopoGetAlgoTime``: ``lat * 1 + nBytes / (1000 * bw)`` us for one
  operation (``numPipeOps`` 1), the tree correction factor by ``log2(nBytes >> 6)`` and the
  multi-node ring plateau (``lat *= 1.4`` for compute capability >= 8.0).
- ``Tuning.choose`` is ``topoGetAlgoInfo`` and ``getChannnelThreadInfo`` (src/enqueue.cc): the
  least predicted time (algorithms, then protocols, in NCCL's order; ties keep the first), then
  the channels: ring and tree start from the communicator's channels (``ncclTopoPostset``:
  ``min(MAXCHANNELS, 2 x min(ring, tree channels))``) and drop one while ``nBytes < nc * nt *
  threadThreshold``; NVLS runs ``NCCL_NVLS_NCHANNELS`` (16).
Assumed of the machine: Intel x86 hosts (``getNetOverhead`` 1 us, ``llMaxBws`` row 0 across
nodes), NICs under the GPU's PCIe switch (``typeInter`` PXB: LL128 allowed), no CollNet, the
balanced tree found (no 0.85 ``NCCL_TOPO_PATTERN_TREE`` factor), ``latencyInter`` 0 (the IB
plugin reports no latency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cluster import NodeSpec
from ..errors import UsageError
from . import constants as K
from .search import Graph, graphs

FUNCS = ("broadcast", "reduce", "all-gather", "reduce-scatter", "all-reduce")  # ncclFunc_t order
USED = (K.TREE, K.RING, K.NVLS, K.NVLS_TREE)


def log2i(n: int) -> int:
    """NCCL's ``log2i``: floor(log2 n), 0 for n < 2."""
    n, l = int(n), 0
    while n > 1:
        n >>= 1
        l += 1
    return l


@dataclass(frozen=True)
class Choice:
    """What NCCL runs for one collective call, and why."""

    collective: str
    nbytes: int
    algo: str  # "ring", "tree", "nvls", "nvls_tree"
    proto: str  # "ll", "ll128", "simple"
    nchannels: int
    predicted: float  # seconds, NCCL's own model
    candidates: dict = field(default_factory=dict)  # "algo/proto" -> predicted seconds (None: disabled)

    def to_dict(self) -> dict:
        return {"collective": self.collective, "nbytes": self.nbytes, "algo": self.algo, "proto": self.proto,
                "nchannels": self.nchannels, "predicted": self.predicted, "candidates": dict(self.candidates),
                "nccl_version": K.VERSION}


class Tuning:
    """``ncclTopoTuneModel``'s tables for one cluster preset (see the module docstring)."""

    def __init__(self, spec: NodeSpec, algos: set[str] | None = None, protos: set[str] | None = None):
        self.spec = spec
        self.graphs: dict[str, Graph | None] = graphs(spec)
        ring, tree = self.graphs["ring"], self.graphs["tree"]
        self.comm_channels = min(K.MAXCHANNELS, 2 * min(ring.nchannels, tree.nchannels))
        self.bw, self.lat = {}, {}
        self._tune()
        self._enable(algos, protos)

    # -- ncclTopoTuneModel -------------------------------------------------------------------------
    def _tune(self) -> None:
        s = self.spec
        n_nodes, n_ranks, cc = s.nodes, s.nranks, s.compcap
        if n_ranks <= 1:  # tuning.cc: `if (nRanks <= 1) return ncclSuccess;` (nothing moves)
            return
        cci = K.HOPPER if cc >= 90 else K.AMPERE if cc >= 80 else K.VOLTA
        index2 = n_nodes - 1 if n_nodes <= 2 else 2
        index1 = cci if n_nodes == 1 else 0  # Intel CPUs across nodes
        ll_max = K.LL_MAX_BWS[index1][index2]
        tree_max = K.PER_CH_MAX_TREE_BWS[cci][index2]
        ring_ll128_max = K.PER_CH_MAX_RING_LL128_BWS[cci][index2]
        tree_ll128_max = K.PER_CH_MAX_TREE_LL128_BWS[cci][index2]
        ppn = n_ranks / n_nodes
        intra_hw = K.HW_NVLINK  # every preset's GPUs meet on NVLink (typeIntra LINK_NVL)
        for coll in ("all-gather", "reduce-scatter", "all-reduce"):
            ar = coll == "all-reduce"
            nsteps = 2 * (n_ranks - 1) if ar else n_ranks - 1
            ninter = (2 * n_nodes if n_nodes > 1 else 0) if ar else n_nodes - 1
            for a in USED:
                if not ar and a not in (K.RING, K.NVLS):
                    continue
                g = self.graphs["tree" if a == K.TREE else "ring" if a == K.RING else "nvls"]
                for p in range(3):
                    if g is None or (a in (K.NVLS, K.NVLS_TREE) and p != K.SIMPLE):
                        continue
                    bw = g.bw_intra if n_nodes <= 2 else g.bw_inter
                    if a == K.NVLS:
                        bw = min(g.bw_intra, g.bw_inter)
                    if a == K.NVLS_TREE:
                        bw = min(g.bw_intra, g.bw_inter if n_nodes <= 2 else g.bw_inter / 2)
                    bus = g.nchannels * bw
                    if a == K.RING and p == K.LL:
                        bus = min(ll_max, bus * (1 / 4 if (n_nodes > 1 or ar) else 1 / 3))
                    if a == K.RING and p == K.LL128:
                        bus = min(bus * (0.7 if ppn < 2 else 0.92), g.nchannels * ring_ll128_max)
                    if a == K.TREE:
                        bus = min(bus * .92, g.nchannels * tree_max)
                    if a == K.TREE and p == K.LL:
                        bus = min(bus / 3.8, ll_max)
                    if a == K.TREE and p == K.LL128:
                        bus = min(bus * (7 / 9 if n_nodes == 1 else 120 / 128), g.nchannels * tree_ll128_max)
                    ratio = n_ranks / nsteps if a == K.RING else 5 / 6 if a in (K.NVLS, K.NVLS_TREE) else .5
                    self.bw[coll, a, p] = bus * ratio
                    lat = K.BASE_LAT[a][p]
                    intra_lat = K.HW_LAT[intra_hw][a][p]
                    inter_lat = K.HW_LAT[K.HW_NET][a][p]  # + latencyInter (0), twice for Simple
                    if a == K.RING:
                        overhead = (K.NET_OVERHEAD_US * (3 if p == K.SIMPLE else 1)) if n_nodes > 1 else 0.0
                        intra_lat = max(intra_lat, overhead)
                        lat += (nsteps - ninter) * intra_lat + ninter * inter_lat
                    elif a == K.TREE:
                        lat += 2 * ((n_ranks // n_nodes - 1) * intra_lat + log2i(n_nodes) * inter_lat)
                    elif a == K.NVLS:
                        lat = intra_lat + (inter_lat if n_nodes > 1 else 0.0)
                    else:
                        lat += intra_lat + 2 * log2i(n_nodes) * inter_lat
                    self.lat[coll, a, p] = lat

    def _enable(self, algos: set[str] | None, protos: set[str] | None) -> None:
        s = self.spec
        off = set()
        if s.nodes == 1:
            off.add(K.NVLS_TREE)
        if s.nodes > 1:
            off.add(K.NVLS)  # NVLS across nodes needs CollNet
        ll128_ok = s.compcap in (70, 80, 90)  # pEnable: compute capabilities 2.20 knows
        for key in list(self.bw):
            _, a, p = key
            if (a in off or (p == K.LL128 and not ll128_ok) or (algos is not None and K.ALGOS[a] not in algos)
                    or (protos is not None and K.PROTOS[p] not in protos)):
                self.bw[key] = 0.0

    # -- ncclTopoGetAlgoTime -----------------------------------------------------------------------
    def time(self, coll: str, a: int, p: int, nbytes: int) -> float | None:
        """NCCL's predicted seconds, or None where NCCL would not run (a, p)."""
        bw = self.bw.get((coll, a, p), 0.0)
        if bw == 0:
            return None
        lat = self.lat[coll, a, p]
        log_size = log2i(nbytes >> 6)
        if a == K.TREE and log_size < 23:
            bw *= K.TREE_CORRECTION[p][log_size]
        s = self.spec
        if (a == K.RING and p == K.SIMPLE and s.nodes > 1 and coll == "all-reduce"
                and nbytes / (self.comm_channels * s.nranks) >= 64):
            lat *= 1.4 if s.compcap >= 80 else 1.9
        return (lat + nbytes / (1000 * bw)) * 1e-6

    # -- topoGetAlgoInfo + getChannnelThreadInfo ---------------------------------------------------
    def choose(self, coll: str, nbytes: int) -> Choice:
        if coll not in ("all-reduce", "reduce-scatter", "all-gather"):
            raise UsageError(f"the NCCL model covers all-reduce, reduce-scatter and all-gather, not {coll!r}")
        s = self.spec
        cands, best = {}, None
        for a in USED:
            for p in range(3):
                t = self.time(coll, a, p, nbytes) if s.nranks > 1 else None
                if (coll, a, p) in self.bw:
                    cands[f"{K.ALGOS[a]}/{K.PROTOS[p]}"] = t
                if t is not None and (best is None or t < best[0]):
                    best = (t, a, p)
        if s.nranks == 1:
            best = (0.0, K.RING, K.SIMPLE)
        if best is None:
            raise UsageError(f"no NCCL algorithm and protocol left for {coll} on this topology with the "
                             "forced --nccl-algo/--nccl-proto; allow another")
        t, a, p = best
        return Choice(coll, int(nbytes), K.ALGOS[a], K.PROTOS[p], self.channels(a, p, nbytes), t, cands)

    def channels(self, a: int, p: int, nbytes: int) -> int:
        if a in (K.NVLS, K.NVLS_TREE):
            return K.NVLS_NCHANNELS
        nc = self.comm_channels
        nt = K.MAX_NTHREADS[p]
        threshold = K.THREAD_THRESHOLD[p] * (self.spec.nranks if (a == K.RING and p == K.LL) else 1)
        while nbytes < nc * nt * threshold and nc >= 2:
            nc -= 1
        return nc


def parse_forced(text: str | None, names: tuple[str, ...], flag: str) -> set[str] | None:
    """``NCCL_ALGO``/``NCCL_PROTO`` syntax: ``ring,tree`` allows those, ``^ll`` all but those."""
    if text is None:
        return None
    aliases = {"nvlstree": "nvls_tree", "nvls-tree": "nvls_tree"}
    neg = text.startswith("^")
    items = {aliases.get(x.strip().lower(), x.strip().lower()) for x in text.lstrip("^").split(",") if x.strip()}
    bad = sorted(items - set(names))
    if bad or not items:
        raise UsageError(f"{flag} {text!r}: choose from {', '.join(names)} (comma-separated; ^ excludes)")
    return set(names) - items if neg else items
