"""NCCL as a builder plus a chooser: the tuner picks, the schedule becomes an ordinary program.

``nccl_collective(coll, topo, nbytes)`` asks the tuner (:mod:`.tuner`) what NCCL 2.20.3 runs on
the topology's cluster preset, builds that schedule (multi-channel ring, double binary tree,
NVLS, NVLSTree) and returns it with NCCL's own predicted time in ``meta["nccl"]``.
``simulate_nccl`` runs it on the *view* of the topology its protocol and algorithm see:

[Note: protocols as what they cost]
A protocol changes two things on every link: the share of each line that is data (LL: 4 of 8
bytes, LL128: 15 of 16 elements, Simple: all; src/include/device.h) scales the link's bandwidth,
and its per-hop latency replaces the link's (tuning.cc ``hwLat``, Ring row: NVLink 0.6 / 1.9 /
3.4 us, network 2.7 / 4.0 / 14 us for LL / LL128 / Simple, split over the links of a hop). The
Ring row is used for every schedule: the Tree/Simple figures include a 256 KB chunk's time, which
the engine models itself. NVLS runs Simple on its port-speed view (:mod:`.nvls`): the NVSwitch
ports at NCCL's NVLS graph bandwidth (nChannels x bwIntra, where below the link; [Note: the NVLS
port bandwidth]) and the byte ratio of in-switch reduction; ring and tree keep the link's figure. The simulated
time adds NCCL's base latency of the (algorithm, protocol) (``baseLat``: launch and
synchronisation, which no op of the program stands for). Not modelled: per-channel bandwidth caps
(``perChMax*``), LL's absolute cap, the thread count, the ring plateau.
"""

from __future__ import annotations

import math

import numpy as np

from ..cluster import NodeSpec
from ..collectives.nccl_ring import nccl_ring
from ..collectives.nccl_tree import nccl_tree
from ..engine import SimResult, simulate
from ..errors import UsageError
from ..program import Program
from ..topology import Topology
from . import constants as K
from .nvls import nvls, port_bandwidth, port_speedup
from .tuner import Choice, Tuning, log2i, parse_forced

MAX_PIECES = 32  # pipeline chunks per tree channel (NVLSTree: per head), at most: keeps programs small


def chunk_size(algo: str, proto: str, nbytes: int, nchannels: int, nodes: int, gpus: int) -> int:
    """NCCL's pipeline chunk in bytes for the tree and NVLSTree (src/enqueue.cc,
    ``computeCollChunkInfo``): a step of the protocol's buffer (``buffSizes[p] / NCCL_STEPS``, one
    step per chunk off the ring), LL carrying half of it and LL128 15 of 16 elements; tree/LL128
    halves it while a channel would get too few chunks for the tree's depth
    (``nstepsLL128 = 1 + log2i(nNodes) + 0.1 ppn``); NVLSTree takes at most 64 KiB from 4 nodes on
    (``NCCL_NVLSTREE_MAX_CHUNKSIZE`` unset) and shrinks it for small messages against
    ``concurrentOps = nChannels x nHeads`` (one head per GPU here)."""
    p = K.PROTOS.index(proto)
    chunk = K.BUFF_SIZES[p] // K.NCCL_STEPS
    if p == K.LL:
        chunk //= 2
    if p == K.LL128:
        chunk = chunk // 16 * 15  # NCCL_LL128_LINEELEMS, NCCL_LL128_DATAELEMS
    if algo == "nvls_tree":
        ops = nchannels * gpus
        chunk = min(chunk, 65536 if nodes >= 4 else chunk)
        for mult, cap in ((32, 262144), (16, 131072), (4, 65536), (1, 32768)):
            if nbytes < mult * ops * chunk and chunk > cap:
                chunk = cap
    elif algo == "tree" and p == K.LL128:
        ppn = gpus
        nsteps = 1 + log2i(nodes) + 0.1 * ppn
        while nbytes // (nchannels * chunk) < nsteps * 64 / ppn and chunk > 131072:
            chunk //= 2
        while nbytes // (nchannels * chunk) < nsteps * 16 / ppn and chunk > 32768:
            chunk //= 2
    return chunk


def pieces_of(ch: Choice, spec: NodeSpec) -> int:
    """Pipeline pieces of a tree channel (NVLSTree: of a head's shard): NCCL's chunks,
    ``ceil(nBytes / (nChannels x nHeads x chunk))``, at most :data:`MAX_PIECES`."""
    heads = spec.gpus if ch.algo == "nvls_tree" else 1
    chunk = chunk_size(ch.algo, ch.proto, ch.nbytes, ch.nchannels, spec.nodes, spec.gpus)
    return max(1, min(MAX_PIECES, -(-ch.nbytes // (ch.nchannels * heads * chunk))))


def cluster_of(topo: Topology) -> NodeSpec:
    """The cluster preset a topology stands for; the old presets map to NCCL's view of them."""
    meta = topo.meta
    if "cluster" in meta:
        return NodeSpec.from_dict(meta["cluster"])
    preset = meta.get("preset")
    if preset in ("dgx-a100", "dgx-h100"):
        gpu = preset[4:]
        return NodeSpec(1, 8, gpu, meta["nvlinks"], meta["intra_bw"] / meta["nvlinks"], True, gpu == "h100", 8, 12e9)
    if preset == "nodes":
        return NodeSpec(meta["nodes"], meta["ranks_per_node"], "h100", 18, meta["intra_bw"] / 18, True, True,
                        meta["ranks_per_node"], meta["nic_bw"])
    raise UsageError(f"--algo nccl needs a GPU cluster topology (nodes:MxG[,gpu=...], dgx-a100, dgx-h100 or a "
                     f"TOML [cluster]); {topo.name!r} is not one")


def tuning(topo: Topology, algo: str | None = None, proto: str | None = None) -> Tuning:
    """NCCL's tuner on ``topo``; ``algo``/``proto`` restrict it as NCCL_ALGO/NCCL_PROTO do."""
    return Tuning(cluster_of(topo), parse_forced(algo, K.ALGOS, "--nccl-algo"),
                  parse_forced(proto, K.PROTOS, "--nccl-proto"))


def nccl_collective(coll: str, topo: Topology, nbytes: int, *, algo: str | None = None,
                    proto: str | None = None, tune: Tuning | None = None) -> tuple[Program, Choice]:
    """NCCL's choice for ``coll`` of ``nbytes`` on ``topo`` and its schedule as a program."""
    tune = tune or tuning(topo, algo, proto)
    ch = tune.choose(coll, nbytes)
    return schedule(ch, tune.spec, tune.comm_channels), ch


def p2p_choice(coll: str, topo: Topology, nbytes: int, algo: str | None = None,
               proto: str | None = None) -> tuple[str, int, Choice]:
    """For the real executor: (builder name, nodes, NCCL's choice). Ring and tree run as the
    registry's ``nccl-ring`` / ``nccl-tree`` programs; NVLS is refused in one line."""
    from ..collectives import ALIASES

    coll = ALIASES.get(coll, coll)
    ch = tuning(topo, algo, proto).choose(coll, nbytes)
    if ch.algo.startswith("nvls"):
        raise UsageError(f"NCCL picks {ch.algo} here, and NVLS reduces inside the NVSwitch: it cannot be expressed in "
                         "point-to-point messages; add --nccl-algo ring,tree")
    return f"nccl-{ch.algo}", cluster_of(topo).nodes, ch


def window(ch: Choice, spec: NodeSpec, pieces: int) -> int:
    """Pieces in flight per hop: as many as cover the slowest hop's latency at its bandwidth, one more
    than ``ceil(latency x bandwidth / piece)``, at most ``NCCL_STEPS`` (a connection's slots). NCCL
    sends a connection's slots in order at the link's rate with their latencies overlapped; the
    engine shares a link among the messages in flight, so more than this window would only slow
    every piece down (processor sharing) where NCCL's stream is first in, first out. The hop is a
    network hop across nodes (``hwLat`` Ring row, NIC bandwidth) and an NVLink hop on one node,
    both as the protocol's view sees them."""
    p = K.PROTOS.index(ch.proto)
    net = spec.nodes > 1
    lat = K.HW_LAT[K.HW_NET if net else K.HW_NVLINK][K.RING][p] * 1e-6
    bw = (spec.nic_bw if net else spec.gpu_nvlink_bw) * K.PROTO_EFFICIENCY[p]
    lanes = spec.gpus if ch.algo == "nvls_tree" else ch.nchannels
    piece = max(1.0, ch.nbytes / (lanes * pieces))
    return int(min(K.NCCL_STEPS, pieces, 1 + math.ceil(lat * bw / piece)))


def schedule(ch: Choice, spec: NodeSpec, comm_channels: int | None = None) -> Program:
    """The program of NCCL's choice ``ch``; ``comm_channels``: the communicator's channels (the
    tree gives their first half tree 0, :func:`simulator.collectives.nccl_tree.channel_tree`)."""
    meta = {"nccl": ch.to_dict(), "proto": ch.proto}
    if ch.algo == "ring":
        return nccl_ring(ch.collective, spec.nodes, spec.gpus, ch.nbytes, ch.nchannels, meta, own_buffers=True)
    pieces = pieces_of(ch, spec)
    if ch.algo == "tree":
        return nccl_tree(spec.nodes, spec.gpus, ch.nbytes, ch.nchannels, pieces, meta,
                         comm_channels=max(comm_channels or ch.nchannels, ch.nchannels),
                         window=window(ch, spec, pieces), own_buffers=True)
    return nvls(spec.nodes, spec.gpus, ch.nbytes, pieces, meta, collective=ch.collective,
                window=window(ch, spec, pieces))


def _is_nvlink(u, v) -> bool:
    return (isinstance(u, int) and isinstance(v, int)) or "nvswitch" in f"{u}{v}"


def view(topo: Topology, proto: str, algo: str = "ring", collective: str = "all-reduce") -> Topology:
    """``topo`` as a protocol (and NVLS) sees it; see [Note: protocols as what they cost]."""
    p = K.PROTOS.index(proto)
    eff = K.PROTO_EFFICIENCY[p]
    nvl_lat = K.HW_LAT[K.HW_NVLINK][K.RING][p]
    net_lat = K.HW_LAT[K.HW_NET][K.RING][p]
    spec = cluster_of(topo)
    nvls_on = algo.startswith("nvls")
    # NVLS: the port's usable share (NCCL's NVLS graph, [Note: the NVLS port bandwidth]) x the byte ratio
    share = port_bandwidth(spec) / spec.gpu_nvlink_bw if nvls_on else 1.0
    ratio = port_speedup(spec.gpus, collective) if nvls_on else 1.0
    speed = ratio * share
    sw = np.array([_is_nvlink(u, v) for u, v in topo._ends], dtype=bool)
    direct = np.array([isinstance(u, int) and isinstance(v, int) for u, v in topo._ends], dtype=bool)
    bw = np.where(sw, topo.link_bw * eff * speed, topo.link_bw * eff)
    lat = np.where(sw, nvl_lat * 1e-6 / np.where(direct, 1, 2), net_lat * 1e-6 / 4)
    meta = {**topo.meta, "nccl_view": {"proto": proto, "algo": algo, "efficiency": eff,
                                       "nvls_port_speedup": ratio, "nvls_port_share": share}}
    return topo.with_figures(bw, lat, f"{topo.name} [{algo}/{proto} view]", meta)


def view_of(prog: Program, topo: Topology, views: dict | None = None) -> Topology:
    """The view of ``topo`` NCCL's program ``prog`` runs on (kept in ``views`` where given)."""
    info = prog.meta["nccl"]
    key = (id(topo), info["proto"], info["algo"], info.get("collective", "all-reduce"))
    v = None if views is None else views.get(key)
    if v is None:
        v = view(topo, *key[1:])
        if views is not None:
            views[key] = v
    return v


def simulate_nccl(prog: Program, topo: Topology, views: dict | None = None, **kw) -> tuple[SimResult, Topology, float]:
    """(result on the view, the view, simulated seconds = makespan + NCCL's base latency).
    ``views``: a dict the caller keeps to reuse views of ``topo`` (and their route caches) across calls."""
    info = prog.meta["nccl"]
    v = view_of(prog, topo, views)
    res = simulate(prog, v, **kw)
    base = K.BASE_LAT[K.ALGOS.index(info["algo"])][K.PROTOS.index(info["proto"])] * 1e-6
    return res, v, res.makespan + base
