"""Routes on a GPU cluster preset without a search, where its shortest paths are unique.

[Note: the cluster's unique paths]
On :func:`simulator.topology.cluster_topology` (every node's GPUs on one NVSwitch, GPU ``g`` on NIC
``rail(g)``, every NIC on one fabric) two kinds of pairs have exactly one shortest path, in the
rule routes follow (least latency, then fewest hops, then the smallest link ids), when every
NVSwitch link has one latency, every NIC and fabric link another, larger one, both positive:
- two GPUs of one node: GPU -> NVSwitch -> GPU. Any other path ends NVSwitch -> b after more links
  (each of positive latency), or leaves a through its NIC: at least two NIC links (a's and b's,
  when they share it) against two NVSwitch links, each slower;
- GPUs of one local index on two nodes: GPU -> NIC -> fabric -> NIC -> GPU. Every path crosses the
  fabric through at least four NIC and fabric links, all of one latency, and this one has no link
  besides those four (with a slower NIC, a path through a neighbour GPU's NIC could be shorter:
  hence one latency per kind).
So any correct search returns these paths: :func:`cluster_routes` writes them down (tested
against the search on every view of several clusters); other pairs are searched as before. The
views NCCL's model runs on keep the links and change latencies by kind, and keep the condition
(NVSwitch link 0.3 / 0.95 / 1.7 us against 0.675 / 1.0 / 3.5 us for a NIC or fabric link).
"""

from __future__ import annotations

import numpy as np

from .cluster import NodeSpec
from .topology import cluster_links


def unique_paths(topo) -> dict | None:
    """What :func:`cluster_routes` needs of ``topo``: its spec and link ids, where ``topo`` is a
    cluster preset link for link and the condition of [Note: the cluster's unique paths] holds;
    None otherwise."""
    meta = topo.meta or {}
    if "cluster" not in meta:
        return None
    spec = NodeSpec.from_dict(meta["cluster"])
    if not spec.nvswitch or spec.nranks != topo.nranks:
        return None
    ends = list(topo._ends)
    if [(u, v) for u, v, *_ in cluster_links(spec)] != ends:
        return None
    lat = np.asarray(topo.link_lat, dtype=np.float64)
    sw = np.array(["nvswitch" in f"{u}{v}" for u, v in ends])
    net = lat[~sw]
    if (lat.size == 0 or not np.all(lat > 0) or np.ptp(lat[sw]) != 0
            or (net.size and (np.ptp(net) != 0 or not lat[sw][0] < net[0]))):
        return None
    index = {e: i for i, e in enumerate(ends)}
    n, g = spec.nranks, spec.gpus
    r = np.arange(n)
    ids = {"spec": spec,
           "up": np.array([index[(int(x), f"nvswitch{x // g}")] for x in r]),
           "down": np.array([index[(f"nvswitch{x // g}", int(x))] for x in r])}
    if spec.nodes > 1:
        nic = [f"nic{x // g}.{spec.rail(x % g)}" for x in r]
        ids.update(nic_up=np.array([index[(int(x), nic[x])] for x in r]),
                   fab_up=np.array([index[(nic[x], "fabric")] for x in r]),
                   fab_down=np.array([index[("fabric", nic[x])] for x in r]),
                   nic_down=np.array([index[(nic[x], int(x))] for x in r]))
    return ids


def cluster_routes(ids: dict, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which pairs are written down, their hops (K, 4) int32 padded with -1) for the pairs
    ``src -> dst`` (distinct ranks) on the topology ``ids`` came from (:func:`unique_paths`)."""
    g = ids["spec"].gpus
    intra = src // g == dst // g
    rail = (~intra) & (src % g == dst % g) if "nic_up" in ids else np.zeros(src.size, dtype=bool)
    hops = np.full((src.size, 4), -1, dtype=np.int32)
    hops[intra, 0], hops[intra, 1] = ids["up"][src[intra]], ids["down"][dst[intra]]
    if rail.any():
        s, d = src[rail], dst[rail]
        hops[rail] = np.stack([ids["nic_up"][s], ids["fab_up"][s], ids["fab_down"][d], ids["nic_down"][d]], axis=1)
    ok = intra | rail
    return ok, hops[ok]
