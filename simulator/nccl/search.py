"""NCCL's channel search, replayed on a cluster preset: how many channels, at which speed.

[Note: the search, in closed form]
NCCL's ``ncclTopoCompute`` (src/graph/search.cc, 2.20.3) tries per-channel speeds from a fixed
array, highest first, and for each speed packs as many channels as the links allow (each channel
subtracts its speed from every link it crosses, ``followPath``). We do not walk GPU orders: on a
preset every GPU is alike, so the number of channels that fit at speed s is a closed form of the
links (GB/s, one direction each):

  ring / tree, one node   k*s <= NVLink of a GPU (each channel enters and leaves each GPU once)
  ring / tree, nodes > 1  k*s*(G-1)/G <= NVLink (rounded up: one GPU per channel hands off to the
                          NIC by PCIe) and ceil(k/nics)*s <= min(NIC, PCIe) (each channel one NIC)
  NVLS                    (k+1)*s_intra <= NVLink (``ncclTopoSearchTryNvls``: the head GPU of a
                          channel moves 2x), k <= G heads; across nodes ceil(k/nics)*s_inter <= NIC

The control flow is NCCL's: pass 1 walks down the speeds while a better graph may appear
(``speedArray[i+1]/bwInter > .49``), stops when ``nChannels*bw >= totalBw``, keeps the graph of
the most ``nChannels*bwIntra`` (NVLS: most channels, then ``nChannels*bwInter``); then
``ncclTopoDupChannels`` doubles channels of fast graphs; pass 2 raises the speed again (ring:
both; tree: bwIntra; NVLS: bwInter) while a graph with the same channels still fits.
Not modelled: search timeouts, PCI-only and mixed nodes, crossNic choices, AMD CPU rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..cluster import NodeSpec
from . import constants as K


@dataclass(frozen=True)
class Graph:
    """One graph NCCL found (``struct ncclTopoGraph``): channels and per-channel GB/s."""

    pattern: str  # "ring", "tree" or "nvls"
    nchannels: int
    bw_intra: float
    bw_inter: float

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "nchannels": self.nchannels, "bw_intra": self.bw_intra,
                "bw_inter": self.bw_inter}


def _fit(spec: NodeSpec, pattern: str, s_intra: float, s_inter: float, max_ch: int) -> int:
    """The most channels (<= max_ch) that fit at these per-channel speeds; 0 if none."""
    g, nvl = spec.gpus, spec.gpu_nvlink_bw / 1e9
    net = min(spec.nic_bw, spec.pcie_bw) / 1e9
    best = 0
    for k in range(1, max_ch + 1):
        if pattern == "nvls":
            ok = (k + 1) * s_intra <= nvl + 1e-9 and k <= g
            if spec.nodes > 1:
                ok = ok and math.ceil(k / spec.nics) * s_inter <= net + 1e-9
        elif spec.nodes == 1:
            ok = g == 1 or k * s_intra <= nvl + 1e-9
        else:
            ok = (math.ceil(k * (g - 1) / g) * s_intra <= nvl + 1e-9
                  and math.ceil(k / spec.nics) * s_inter <= net + 1e-9)
        if not ok:
            break
        best = k
    return best


def search(spec: NodeSpec, pattern: str) -> Graph | None:
    """The graph ``ncclTopoCompute`` finds for ``pattern`` on ``spec`` (None: no NVLS graph; NCCL
    2.20.3 leaves NVLS unsupported on a node of 2 GPUs or fewer: src/transport/nvls.cc,
    ``ncclNvlsInit``, ``if (!ncclParamNvlsEnable() || gpuCount <= 2) return ncclSuccess;`` with
    ``nvlsSupport = 0``, so neither NVLS nor NVLSTree is a candidate there)."""
    g, cc = spec.gpus, spec.compcap
    if pattern == "nvls" and (not spec.nvls or g <= 2):
        return None
    has_net = spec.nodes > 1
    sm90 = cc >= 90
    speeds = (K.SM90_SPEED_INTER if sm90 else K.SPEED_INTER) if has_net else (
        K.SM90_SPEED_INTRA if sm90 else K.SPEED_INTRA)
    nvl = spec.gpu_nvlink_bw / 1e9
    max_bw = min(spec.nic_bw, spec.pcie_bw) / 1e9 if has_net else nvl
    total_bw = nvl  # getTotalBw: a GPU's NVLinks
    search_total = total_bw * g / (g - 1) if (g > 1 and pattern != "ring") else total_bw
    max_ch = g if pattern == "nvls" else K.MAXCHANNELS // 2
    min_ch = g if (pattern == "nvls" and not has_net) else 1

    i = 0
    while (speeds[i] > max_bw or speeds[i] * min_ch > search_total) and i < len(speeds) - 1:
        i += 1
    best: Graph | None = None
    while True:  # pass 1
        s = speeds[i]
        k = _fit(spec, pattern, s, s, max_ch)
        if k >= min_ch:
            cand = Graph(pattern, k, s, s)
            if best is None or _better(cand, best, g):
                best = cand
        if best is not None and best.nchannels * best.bw_inter >= total_bw:
            break
        if i < len(speeds) - 1 and (best is None or speeds[i + 1] / best.bw_inter > .49):
            i += 1
            continue
        break
    if best is None:
        return None if pattern == "nvls" else Graph(pattern, 1, 0.1, 0.1)  # NCCL's "simple order" fallback
    best = _dup(best, cc, max_ch)
    i = 0
    while speeds[i] > best.bw_inter and i < len(speeds) - 1:
        i += 1
    tmp_intra = tmp_inter = speeds[i]
    while i > 0:  # pass 2
        if pattern == "ring":
            i -= 1
            tmp_intra = tmp_inter = speeds[i]
        elif pattern == "nvls" and tmp_inter == best.bw_inter and tmp_inter < tmp_intra * 2:
            i -= 1
            tmp_inter = speeds[i]
        elif pattern == "tree" and tmp_intra == best.bw_intra and tmp_intra < tmp_inter * 2:
            i -= 1
            tmp_intra = speeds[i]
        else:
            break
        k = _fit(spec, pattern, tmp_intra, tmp_inter, best.nchannels if pattern == "nvls" else max_ch)
        if k >= best.nchannels:
            cand = Graph(pattern, best.nchannels if pattern == "nvls" else k, tmp_intra, tmp_inter)
            if _better(cand, best, g):
                best = cand
    return best


def _better(a: Graph, b: Graph, ngpus: int) -> bool:
    """``ncclTopoCompareGraphs``: should ``a`` replace ``b``?"""
    if a.pattern == "nvls":
        return (b.nchannels < a.nchannels <= ngpus) or a.nchannels * a.bw_inter > b.nchannels * b.bw_inter
    return a.nchannels * a.bw_intra > b.nchannels * b.bw_intra


def _dup(gr: Graph, cc: int, max_ch: int) -> Graph:
    """``ncclTopoDupChannels``: twice the channels at half the speed for fast graphs."""
    if gr.pattern == "nvls" or gr.bw_intra < 25.0 or (cc > 80 and gr.bw_intra < 50.0 and gr.nchannels > 4):
        return gr
    dup = min(gr.nchannels * 2, max_ch)
    div = -(-dup // gr.nchannels)
    return Graph(gr.pattern, dup, gr.bw_intra / div, gr.bw_inter / div)


def graphs(spec: NodeSpec) -> dict[str, Graph | None]:
    """The ring, tree and NVLS graphs of a cluster preset."""
    return {p: search(spec, p) for p in ("ring", "tree", "nvls")}
