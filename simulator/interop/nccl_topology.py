"""What NCCL's log says (:mod:`.nccl_log`) as a topology TOML with NCCL's channel layout.

[Note: channel layout]
``rankscope import nccl-log`` writes an ordinary topology TOML (README "Topologies"): per node a
hub ``HOST/nvswitch`` joined to each of its ranks at the node's NVLink figure; with several nodes,
each rank joined to the NICs the log says it sends or receives by (``HOST/mlx5_0``), each NIC to
one non-blocking ``fabric``, at the NIC's NET figure; latencies NCCL's per-hop Ring/Simple
figures as in the ``nodes:MxG`` preset; ``ring`` = channel 0's ring. Beside the links, the
``[nccl]`` table says what NCCL chose, as plain data (``parse_topology`` keeps it as
``topology.meta["nccl"]``):

- ``version``, ``nranks``, ``nnodes``, ``hosts``, ``rank_node`` (each rank's index in ``hosts``);
- ``nchannels`` (the ``coll channels`` count, else the number of rings printed);
- ``rings``: per channel the ranks in ring order; ``ring_nics``: per channel each inter-node hop
  as ``[src, dst, send NIC, receive NIC]``; ``rank_nics``: per rank the NICs it uses;
- ``trees``: per tree channel ``[rank, parent, [children]]`` (-1: none);
- ``nvls``, ``nvls_channels``, ``nvls_heads``; ``graphs``: each graph search result (pattern,
  nChannels, bw intra/inter in GB/s, path types, channel lines); ``env``: the NCCL_* variables
  the log says were set; ``defaults``: every figure the log lacked and the default taken;
- ``[nccl.tuning]``: per collective ``[algorithm, protocol, latency us, bandwidth GB/s]`` rows of
  NCCL's tuning table, where rank 0 printed it (:func:`.nccl_compare.nccl_predict` reads them).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ..topology import NET_HOP_LAT, NIC_BW, NVLINK, NVLINK_HOP_LAT, parse_topology
from .errors import ImportFormatError
from .nccl_log import NcclLog, parse_nccl_log

# -- the topology --------------------------------------------------------------------------------
MAX_RANKS = 1 << 16  # the largest rank count a topology is built for


def _nranks(log: NcclLog) -> int:
    if log.comms:
        n = max(c["nranks"] for c in log.comms.values())
    else:
        n = max([len(r) for r in log.rings.values()] + [max(log.rank_host, default=-1) + 1])
    if n > MAX_RANKS or max(log.rank_host, default=0) >= max(n, 1):
        raise ImportFormatError(f"{log.name}: the log names {n} ranks (and rank {max(log.rank_host, default=0)}): "
                                f"more than {MAX_RANKS}, or a rank outside 0..nRanks-1; check its 'comm ... rank R "
                                "nRanks N' lines")
    if n < 1:
        raise ImportFormatError(f"{log.name}: no NCCL INFO line says how many ranks there are (no 'comm ... rank R "
                                "nRanks N' and no 'Channel 00/NN : 0 1 ...' line); run with NCCL_DEBUG=INFO "
                                "NCCL_DEBUG_SUBSYS=INIT,GRAPH,ENV,TUNING")
    return n


def _node_of(log: NcclLog, n: int, defaults: list[str]) -> tuple[list[str], list[int]]:
    """The hosts in order of first rank, and each rank's node index."""
    comm = max(log.comms.values(), key=lambda c: c["nranks"], default={})
    per = comm.get("local_ranks")
    hosts: list[str] = []
    node = [-1] * n
    for r in range(n):
        h = log.rank_host.get(r)
        if h is not None:
            if h not in hosts:
                hosts.append(h)
            node[r] = hosts.index(h)
    missing = [r for r in range(n) if node[r] < 0]
    if missing:
        per = per or max(1, n // max(1, comm.get("nnodes") or len(hosts) or 1))
        for r in missing:
            k = r // per
            while len(hosts) <= k:
                hosts.append(f"node{len(hosts)}")
            node[r] = k
        defaults.append(f"{len(missing)} ranks with no line of their own ({_span(missing)}): placed by rank // "
                        f"{per} ranks per node")
    return hosts, node


def _span(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks[:8])) + (" ..." if len(ranks) > 8 else "")


def _intra_bw(log: NcclLog, host: str, defaults: list[str]) -> float:
    nvl = log.nvl_bw.get(host) or []
    if nvl:
        return max(nvl) * 1e9
    ring = [g for g in log.graphs if g["host"] == host and g["pattern"] == 4 and g["bw_intra"] * g["nchannels"] > 0]
    if ring:
        g = ring[0]
        defaults.append(f"{host}: no NVL[...] link in the topology dump; intra-node bandwidth from the ring graph: "
                        f"bw {g['bw_intra']} GB/s x {g['nchannels']} channels")
        return g["bw_intra"] * g["nchannels"] * 1e9
    pci = log.pci_bw.get(host) or []
    if pci:
        defaults.append(f"{host}: no NVLink in the log; intra-node bandwidth from its PCI[...] links, {max(pci)} GB/s")
        return max(pci) * 1e9
    per_link, count = NVLINK["h100"]
    defaults.append(f"{host}: the log gives no intra-node bandwidth (no topology dump: add GRAPH to "
                    f"NCCL_DEBUG_SUBSYS); took NCCL's H100 NVLink figure, {per_link / 1e9:g} GB/s x {count}")
    return per_link * count


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else "0.0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"not a TOML value: {v!r}")


def build_layout(log: NcclLog, source: str) -> tuple[dict[str, Any], list[tuple], list[int]]:
    """(the ``[nccl]`` table, the links as (src, dst, bw, lat) both ways, the ring) of a parsed log."""
    n = _nranks(log)
    defaults: list[str] = []
    hosts, node = _node_of(log, n, defaults)
    rings = [log.rings[c] for c in sorted(log.rings) if sorted(log.rings[c]) == list(range(n))]
    bad = [c for c in sorted(log.rings) if sorted(log.rings[c]) != list(range(n))]
    if bad:
        defaults.append(f"ring channel(s) {bad} do not list each of the {n} ranks once (cut short?): left out")
    if not rings:
        defaults.append(f"no 'Channel NN/MM : ranks' ring line (rank 0's INIT lines): ring order 0..{n - 1}")
    nchannels = log.channels.get("coll") or len(rings) or None
    if nchannels is None:
        defaults.append("no channel count in the log ('N coll channels' or ring lines): 1 channel")
        nchannels = 1
    nic_name = lambda h, d: f"{h}/{log.nics.get(h, {}).get(d, f'net{d}')}"
    attach: dict[int, list[str]] = {}
    ring_nics: list[list[list]] = [[] for _ in range(max(nchannels, len(rings)))]
    hop_nic: dict[tuple, dict[str, str]] = {}
    for hp in log.hops:
        if not (0 <= hp["src"] < n and 0 <= hp["dst"] < n):
            continue
        r = hp["src"] if hp["side"] == "send" else hp["dst"]
        nm = nic_name(hosts[node[r]], hp["dev"])
        attach.setdefault(r, [])
        if nm not in attach[r]:
            attach[r].append(nm)
        hop_nic.setdefault((hp["channel"], hp["src"], hp["dst"]), {})[hp["side"]] = nm
    for (ch, src, dst), sides in sorted(hop_nic.items()):
        if ch < len(ring_nics):
            ring_nics[ch].append([src, dst, sides.get("send", ""), sides.get("receive", "")])
    links: list[tuple] = []
    intra_lat, nic_lat = NVLINK_HOP_LAT / 2, NET_HOP_LAT / 4
    for k, host in enumerate(hosts):
        ranks = [r for r in range(n) if node[r] == k]
        if len(ranks) > 1:
            bw = _intra_bw(log, host, defaults)
            links += [(r, f"{host}/nvswitch", bw, intra_lat) for r in ranks]
    if len(hosts) > 1:
        nic_bw: dict[str, float] = {}
        unattached = []
        for r in range(n):
            host = hosts[node[r]]
            if r not in attach:
                names = sorted(log.nics.get(host, {}).items())
                local = sum(1 for q in range(r) if node[q] == node[r])
                attach[r] = [nic_name(host, names[local % len(names)][0]) if names else f"{host}/nic0"]
                unattached.append(r)
            for nm in attach[r]:
                if nm not in nic_bw:
                    dev = next((d for d, x in log.nics.get(host, {}).items() if f"{host}/{x}" == nm), None)
                    figure = log.net_bw.get(host, {}).get(dev if dev is not None else -1)
                    if figure is None and log.net_bw.get(host):
                        figure = max(log.net_bw[host].values())
                    if figure is None:
                        defaults.append(f"{nm}: no NET[...] bandwidth in the topology dump; took NCCL's figure for a "
                                        f"100 Gb/s NIC, {NIC_BW / 1e9:g} GB/s")
                        figure = NIC_BW / 1e9
                    nic_bw[nm] = figure * 1e9
                links.append((r, nm, nic_bw[nm], nic_lat))
        if unattached:
            defaults.append(f"{len(unattached)} ranks with no 'via NET' line ({_span(unattached)}): each given "
                            "its node's NIC local rank mod NICs")
        links += [(nm, "fabric", bw, nic_lat) for nm, bw in nic_bw.items()]
    defaults.append(f"latencies: NCCL's Ring/Simple per-hop figures (src/graph/tuning.cc hwLat), NVLink "
                    f"{NVLINK_HOP_LAT * 1e6:g} us per GPU-to-GPU hop, network {NET_HOP_LAT * 1e6:g} us per node-to-node hop")
    trees = []
    for ch in sorted(log.trees):
        t = log.trees[ch]
        trees.append([[r, t[r][1], t[r][0]] for r in sorted(t) if 0 <= r < n])
    layout: dict[str, Any] = {
        "source": source, "version": log.version or "", "nranks": n, "nnodes": len(hosts), "hosts": hosts,
        "rank_node": node, "nchannels": nchannels, "rings": rings, "ring_nics": ring_nics[:len(rings)],
        "rank_nics": [attach.get(r, []) for r in range(n)], "trees": trees,
        "nvls": bool(log.nvls), "nvls_channels": log.channels.get("nvls", 0), "nvls_heads": log.nvls_heads,
        "graphs": [{k: v for k, v in g.items() if k != "channels"} | {"channels": [" ".join(c) for c in g["channels"]]}
                   for g in log.graphs],
        "env": dict(log.env), "defaults": defaults, "tuning": {k: v for k, v in log.tuning.items() if v},
    }
    if log.version is None:
        defaults.insert(0, "no 'NCCL version' line: version unknown")
    return layout, links, rings[0] if rings else list(range(n))


def log_to_toml(path: str) -> tuple[str, dict[str, Any]]:
    """The topology TOML of a log file and the layout (see :func:`toml_of_log`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ImportFormatError(f"cannot read {path!r}: {e.strerror or e}") from None
    return toml_of_log(text, os.path.basename(path))


def toml_of_log(text: str, name: str) -> tuple[str, dict[str, Any]]:
    """The topology TOML (README "Topologies", plus the ``[nccl]`` table of [Note: channel layout])
    of a log's text, and the layout; the text loads with ``parse_topology``."""
    log = parse_nccl_log(text, name)
    if log.lines == 0:
        raise ImportFormatError(f"{name}: no 'host:pid:tid [dev] NCCL INFO' line; run the job with NCCL_DEBUG=INFO "
                                "NCCL_DEBUG_SUBSYS=INIT,GRAPH,ENV,TUNING and import its output")
    layout, links, ring = build_layout(log, name)
    stem = os.path.splitext(name)[0]
    out = [f"# rankscope topology from NCCL's log {name} (rankscope import nccl-log)",
           *(f"# default: {d}" for d in layout["defaults"]),
           f"name = {json.dumps(stem)}", f"ranks = {layout['nranks']}", f"ring = {_toml_value(ring)}"]
    for src, dst, bw, lat in links:
        out += ["", "[[link]]", f"src = {_toml_value(src)}", f"dst = {_toml_value(dst)}",
                f"bw = {bw!r}  # {bw / 1e9:g} GB/s", f"lat = {lat!r}", "bidirectional = true"]
    out += ["", "[nccl]"]
    tuning = layout.pop("tuning")
    for k, v in layout.items():
        out.append(f"{k} = {_toml_value(v)}")
    if tuning:
        out += ["", "[nccl.tuning]  # per collective: [algorithm, protocol, latency us, bandwidth GB/s]"]
        out += [f"{k} = {_toml_value(v)}" for k, v in tuning.items()]
    layout["tuning"] = tuning
    text = "\n".join(out) + "\n"
    return text, layout


def import_nccl_log(path: str, out: str) -> tuple[Any, dict[str, Any]]:
    """Write the topology TOML of a log to ``out``; (the loaded topology, the layout)."""
    text, layout = log_to_toml(path)
    tmp = out + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except OSError as e:
        raise ImportFormatError(f"cannot write {out!r}: {e.strerror or e}") from None
    return parse_topology(out), layout
