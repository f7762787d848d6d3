"""Network topologies: which links a message between two ranks crosses, and how fast each one is.

See :mod:`simulator.topology_model` ([Note: links and routes]) for what a topology is; this module
makes them from a spec.

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
"""

from __future__ import annotations

import re
from pathlib import Path

from .cluster import NodeSpec, node_spec, parse_options
from .errors import TopologyError
from .topology_model import Topology, checked
from .topology_toml import MAX_TOML_BYTES, load_toml
from .topology_values import BW_RANGE, LAT_MAX, bounded, parse_count, parse_quantity

__all__ = ["BW_RANGE", "DEFAULT_BW", "DEFAULT_LAT", "LAT_MAX", "MAX_TOML_BYTES", "NET_HOP_LAT", "NIC_BW", "NVLINK",
           "NVLINK_HOP_LAT", "Topology", "cluster_topology", "parse_topology"]

DEFAULT_BW = 25e9  # bytes/s per link for ring:N and switch:N: a round default
DEFAULT_LAT = 5e-6  # seconds per link for ring:N and switch:N: a round default
NVLINK = {"a100": (20.0e9, 12), "h100": (20.6e9, 18)}  # NCCL per-NVLink bytes/s, NVLinks per GPU
NVLINK_HOP_LAT = 3.4e-6  # NCCL Ring/Simple NVLink per-hop latency (tuning.cc)
NET_HOP_LAT = 14e-6  # NCCL Ring/Simple network per-hop latency (tuning.cc)
NIC_BW = 12e9  # NCCL's bytes/s for a 100 Gb/s NIC
_PRESET = re.compile(r"^(?:(ring|switch)(?::(\d+))?|dgx-(a100|h100)|nodes:(\d+)x(\d+))$")
_CLUSTER = re.compile(r"^(?:dgx-(a100|h100)|nodes:(\d+)x(\d+))\s*,(.*)$", re.IGNORECASE)  # units keep case


def parse_topology(spec: str, nranks: int | None = None, **overrides) -> Topology:
    """A topology from ``ring[:N]``, ``switch[:N]``, ``dgx-a100``, ``dgx-h100``, ``nodes:MxG`` or a
    ``.toml`` path. ``nranks`` gives N where the spec has none and must agree where it has one."""
    if not isinstance(spec, str):
        raise TopologyError(f"topology spec {spec!r} must be a string such as 'switch:8'")
    if nranks is not None:
        nranks = parse_count(nranks, "nranks")
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
        bounded(nodes * per, spec)
        return cluster_topology(node_spec(nodes, per, options, lambda v, w: parse_quantity(v, w, True)), nranks,
                                name=spec.strip())
    m = _PRESET.match(spec.strip().lower())
    if m is None:
        if spec.strip().lower().endswith(".toml") or "/" in spec or Path(spec).is_file():
            if given:
                raise TopologyError(f"overrides {sorted(given)} do not apply to the file {spec!r}; edit the file")
            return load_toml(Path(spec.strip()), nranks, _cluster_file)
        raise TopologyError(f"unknown topology {spec!r}: use ring:N, switch:N, dgx-a100, dgx-h100, nodes:MxG "
                            "or a path to a .toml file")
    kind, n_text, gpu, m_text, g_text = m.groups()
    if kind:
        if n_text is None and nranks is None:
            raise TopologyError(f"{spec!r} needs a rank count: write {kind}:8 or pass nranks")
        n = parse_count(int(n_text), f"rank count of {spec!r}") if n_text else nranks
        bounded(n, spec)
        o = _overrides(spec, given, bw=DEFAULT_BW, lat=DEFAULT_LAT)
        links = _ring_links(n, o) if kind == "ring" else _star_links(range(n), "sw", o["bw"], o["lat"])
        return checked(f"{kind}:{n}", n, nranks, links, {"preset": kind, "nranks": n, **o})
    if gpu:
        per_link, count = NVLINK[gpu]
        o = _overrides(spec, given, intra_bw=per_link * count, intra_lat=NVLINK_HOP_LAT / 2)
        meta = {"preset": f"dgx-{gpu}", "nvlink_bw": per_link, "nvlinks": count, **o}
        return checked(f"dgx-{gpu}", 8, nranks, _star_links(range(8), "nvswitch0", o["intra_bw"],
                                                            o["intra_lat"]), meta)
    nodes, per = parse_count(int(m_text), f"node count of {spec!r}"), parse_count(int(g_text), f"ranks per node of {spec!r}")
    bounded(nodes * per, spec)
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
    return checked(f"nodes:{nodes}x{per}", n, nranks, links, meta)


def cluster_topology(spec: NodeSpec, nranks: int | None = None, name: str | None = None) -> Topology:
    """The links of a GPU cluster (see the module docstring); ``meta["cluster"]`` keeps the spec."""
    label = name or f"nodes:{spec.nodes}x{spec.gpus},gpu={spec.gpu}"
    meta = {"preset": "cluster", "nodes": spec.nodes, "ranks_per_node": spec.gpus, "cluster": spec.to_dict()}
    return checked(label, spec.nranks, nranks, cluster_links(spec), meta)


def cluster_links(spec: NodeSpec) -> list:
    """The rows (src, dst, bandwidth, latency, name) of :func:`cluster_topology`, in its link order."""
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
    return links


def _overrides(spec: str, given: dict, **defaults) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TopologyError(f"override {unknown[0]!r} does not apply to {spec!r}; use {', '.join(defaults)}")
    return {k: parse_quantity(given.get(k, v), f"override {k}", k.endswith("bw")) for k, v in defaults.items()}


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


def _cluster_file(spec: NodeSpec, nranks: int | None, name: str) -> Topology:
    """A TOML ``[cluster]`` table's topology (the loader's ``cluster`` builder)."""
    return cluster_topology(spec, nranks, name=name)
