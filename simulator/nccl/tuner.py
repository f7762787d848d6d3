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
    notes: tuple = ()  # what NCCL did with NCCL_ALGO / NCCL_PROTO (re-enabled, restored), one line each

    def to_dict(self) -> dict:
        return {"collective": self.collective, "nbytes": self.nbytes, "algo": self.algo, "proto": self.proto,
                "nchannels": self.nchannels, "predicted": self.predicted, "candidates": dict(self.candidates),
                "notes": list(self.notes), "nccl_version": K.VERSION}


class Tuning:
    """``ncclTopoTuneModel``'s tables for one cluster preset (see the module docstring)."""

    def __init__(self, spec: NodeSpec, algos: set[str] | None = None, protos: set[str] | None = None):
        self.spec = spec
        self.notes: list[str] = []  # what NCCL did with the forced sets (see _enable)
        self.coll_notes: dict[str, list[str]] = {}  # per collective: the ring restored
        self.ring_bw: dict = {}  # comm->ringbdw: the ring's bandwidths before any is disabled
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
                    if a == K.RING:
                        self.ring_bw[coll, p] = bus * ratio
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
        """The enable pass of ``ncclTopoTuneModel`` (src/graph/tuning.cc, 2.20.3), user overrides
        included: ``protoEnable = {1, 2, 1}`` and every ``algoEnable`` 1, then ``NCCL_PROTO`` /
        ``NCCL_ALGO`` (``parseList``: a list sets the named to 1 and the rest to 0, ``^`` the reverse;
        so a protocol list gives LL128 1, enabled even where its default 2 would disable it); NVLSTree
        off on one node; without CollNet (not modelled) CollNet off, NVLS off across nodes, and if
        ring, tree, NVLS and NVLSTree are then all off, ring and tree back on ("If user has hard set
        NCCL_ALGO=COLLNET, ignore it"). LL128 at 2 is on only for compute capability 7.0, 8.0, 9.0
        with NVLink inside and the NIC under the GPU's PCIe switch. Then, per collective, if no
        bandwidth is left, the ring's are restored for every protocol ("at least set ring algo
        available", from ``ringbdw``): see :meth:`choose`."""
        s = self.spec
        proto_on = [1, 2, 1] if protos is None else [int(K.PROTOS[p] in protos) for p in range(3)]
        algo_on = [1] * len(K.ALGOS) if algos is None else [int(a in algos) for a in K.ALGOS]
        if s.nodes == 1:
            algo_on[K.NVLS_TREE] = 0
        algo_on[K.COLLNET_DIRECT] = algo_on[K.COLLNET_CHAIN] = 0
        if s.nodes > 1:
            algo_on[K.NVLS] = 0
        if not any(algo_on[a] for a in (K.RING, K.TREE, K.NVLS, K.NVLS_TREE)):
            algo_on[K.RING] = algo_on[K.TREE] = 1
            left = ", ".join(sorted(algos or ())) or "nothing"
            self.notes.append(f"NCCL_ALGO as given leaves {left} enabled, none of which NCCL can run here "
                              "(NVLSTree needs 2+ nodes, NVLS one node, CollNet a CollNet plugin), so NCCL "
                              "2.20.3 enables ring and tree again (tuning.cc, ncclTopoTuneModel)")
        ll128_default = s.compcap in (70, 80, 90)
        if proto_on[K.LL128] == 1 and not ll128_default:
            self.notes.append(f"NCCL_PROTO names LL128, which NCCL 2.20.3 leaves off by default on {s.gpu} (compute "
                              f"capability {s.compcap}); a protocol list enables it, as here (tuning.cc)")
        for key in list(self.bw):
            _, a, p = key
            on = proto_on[p]
            if on == 2:
                on = int(ll128_default)
            if on == 0 or algo_on[a] == 0:
                self.bw[key] = 0.0
        for coll in sorted({k[0] for k in self.bw}):
            if not any(self.bw[k] for k in self.bw if k[0] == coll):
                for p in range(3):  # "at least set ring algo available"
                    self.bw[coll, K.RING, p] = self.ring_bw[coll, p]
                self.coll_notes[coll] = [f"no algorithm and protocol left for {coll}: NCCL 2.20.3 restores the "
                                         "ring with every protocol (tuning.cc, ncclTopoTuneModel: 'at least set "
                                         "ring algo available')"]

    # -- ncclTopoGetAlgoTime -----------------------------------------------------------------------
    def time(self, coll: str, a: int, p: int, nbytes: int, backup: bool = False) -> float | None:
        """NCCL's predicted seconds, or None where NCCL would not run (a, p); ``backup``: a disabled
        ring is timed on ``ringbdw`` (``ncclTopoGetAlgoTime``'s backup ring)."""
        bw = self.bw.get((coll, a, p), 0.0)
        if bw == 0 and backup and a == K.RING:
            bw = self.ring_bw.get((coll, p), 0.0)
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
        notes = self.notes + self.coll_notes.get(coll, [])
        cands, best, spare = {}, None, None
        for a in USED:
            for p in range(3):
                t = self.time(coll, a, p, nbytes) if s.nranks > 1 else None
                if (coll, a, p) in self.bw:
                    cands[f"{K.ALGOS[a]}/{K.PROTOS[p]}"] = t
                if t is not None and (best is None or t < best[0]):
                    best = (t, a, p)
                b = self.time(coll, a, p, nbytes, backup=True) if (t is None and s.nranks > 1) else None
                if b is not None and (spare is None or b < spare[0]):
                    spare = (b, a, p)
        if s.nranks == 1:
            best = (0.0, K.RING, K.SIMPLE)
        if best is None:  # enqueue.cc topoGetAlgoInfo: the backup ring when nothing else is left
            best = spare
            notes.append(f"nothing enabled runs {coll}: NCCL 2.20.3 takes its backup ring "
                         "(enqueue.cc topoGetAlgoInfo, ncclTopoGetAlgoTime's ringbdw)")
        t, a, p = best
        return Choice(coll, int(nbytes), K.ALGOS[a], K.PROTOS[p], self.channels(a, p, nbytes), t, cands,
                      tuple(notes))

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
    """``NCCL_ALGO``/``NCCL_PROTO`` syntax (tuning.cc ``parseList``, case-insensitive): ``ring,tree``
    allows those, ``^ll`` all but those. NCCL ignores a name it does not know; we refuse one (a
    typo), and take NCCL's own spellings (``NVLSTree``, ``CollNetDirect``, ``CollNetChain``)."""
    if text is None:
        return None
    aliases = {"nvlstree": "nvls_tree", "nvls-tree": "nvls_tree", "collnetdirect": "collnet_direct",
               "collnetchain": "collnet_chain"}
    neg = text.startswith("^")
    items = {aliases.get(x.strip().lower(), x.strip().lower()) for x in text.lstrip("^").split(",") if x.strip()}
    bad = sorted(items - set(names))
    if bad or not items:
        raise UsageError(f"{flag} {text!r}: choose from {', '.join(names)} (comma-separated; ^ excludes)")
    return set(names) - items if neg else items
