"""NCCL's own debug log (``NCCL_DEBUG=INFO``) in: the cluster as NCCL saw it, as a topology TOML.

[Note: NCCL log lines]
Every line NCCL logs starts with src/debug.cc ``ncclDebugLog``'s prefix ``host:pid:tid [cudaDev]
NCCL INFO``. The lines read here, pinned to NVIDIA/nccl 2.19 (later releases print the same
lines; where one changed, both forms are accepted):

- ``NCCL version 2.19.3+cuda12.3`` (src/init.cc ``showVersion``);
- ``NCCL_ALGO set by environment to Ring`` and every other ``X set by environment to V``
  (src/misc/param.cc, src/graph/tuning.cc): kept as the ``env`` table;
- ``comm %p rank %d nRanks %d nNodes %d localRanks %d localRank %d MNNVL %d`` and ``comm %p rank %d
  nranks %d cudaDev %d ... - Init COMPLETE`` (src/init.cc): which process and device is which rank;
- ``NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ... ; OOB eth0:...`` (src/transport/net_ib.cc
  ``ncclIbInit``; ``NET/Socket``, ``NET/OFI`` alike): the NIC names by index, per host;
- the topology dump of src/graph/topo.cc ``ncclTopoPrint``/``ncclTopoPrintRec``: ``=== System :
  maxBw ... ===``, ``+ NVL[370.8] - NVS/0``, ``+ NET[50.0] - NET/0-3 (...)``: NVLink and NIC
  bandwidths in GB/s;
- src/graph/search.cc ``ncclTopoPrintGraph``: ``Pattern %d, crossNic %d, nChannels %d, bw %f/%f,
  type %s/%s, sameChannels %d`` and one `` 0 : NET/0 GPU/0 GPU/1 ... NET/0`` line per channel
  (pattern 4 ring, 1-3 trees, 5 NVLS; graph.h NCCL_TOPO_PATTERN_*);
- ``Channel %02d/%02d :   0   1   2 ...`` (src/graph/rings.cc ``ncclBuildRings``, rank 0): each
  ring channel's rank order; ``Trees [0] 1/4/-1->0->-1 [1] ...`` (src/init.cc): per channel a
  rank's tree children and parent;
- ``Channel %02d/%d : %d[%d] -> %d[%d] [send] via NET/IB/%d/GDRDMA`` and ``[receive]``
  (src/transport/net.cc ``sendSetup``/``recvSetup``): the NIC (index) each inter-node hop of a
  channel leaves and arrives by; ``... via P2P/...`` (src/transport/p2p.cc) for the others;
- ``NVLS multicast support is (not) available on dev %d`` (src/transport/nvls.cc), ``NVLS Head
  %2d: ...`` (src/graph/connect.cc ``connectNvls``), ``%d coll channels, %d collnet channels, %d
  nvls channels, %d p2p channels, %d p2p channels per peer`` (src/init.cc);
- the tuning table of src/graph/tuning.cc ``ncclTopoTuneModel`` (rank 0): ``Algorithm |`` /
  ``Protocol |`` header lines (or the older single ``Latency/AlgBw | Tree/LL | ...`` line), then
  per collective ``AllReduce |  8.2/  9.5 | ...``: latency in us and bandwidth in GB/s.

One communicator per log is assumed (NCCL's lines after ``comm`` do not name theirs): the
figures of the largest ``nRanks`` are used. Lines of any other shape are skipped.

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
  NCCL's tuning table, where rank 0 printed it (:func:`nccl_predict` reads them).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..topology import NET_HOP_LAT, NIC_BW, NVLINK, NVLINK_HOP_LAT, parse_topology
from .errors import ImportFormatError

_LINE = re.compile(r"^(?:\[\d+,\d+\]<std(?:out|err)>:|\s*\d+:\s)?\s*(?:\[[^\]]*\]\s*)?"
                   r"(?P<host>[^\s:\[]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] NCCL (?P<lvl>INFO|WARN) (?P<msg>.*?)\s*$")
_VERSION = re.compile(r"NCCL version (\d+\.\d+\.\d+)")
_ENV = re.compile(r"^(NCCL_[A-Z0-9_]+) set by environment to (.*?)\.?$")
_COMM = re.compile(r"\bcomm (0x[0-9a-fA-F]+) rank (\d+) n[Rr]anks (\d+)(?: nNodes (\d+) localRanks (\d+) localRank (\d+))?")
_NET_USING = re.compile(r"^NET/(\w+)\s*: Using (.*?)(?:;|$)")
_NET_DEV = re.compile(r"\[(\d+)\]([\w.\-]+)")
_NUM = r"(\d+(?:\.\d*)?)"
_SYSTEM = re.compile(rf"^=== System : maxBw {_NUM} totalBw {_NUM} ===")
_TOPO_LINK = re.compile(rf"\+ (NVL|PCI|NET|SYS|C2C|NVB|LOC)\[{_NUM}\] - (\w+)/([0-9a-fA-Fx\-]+)")
_PATTERN = re.compile(rf"^Pattern (\d+), crossNic (\d+), nChannels (\d+), (?:bw|speed) {_NUM}/{_NUM}"
                      r"(?:, type (\w+)/(\w+))?")
_GRAPH_CH = re.compile(r"^\s*(\d+) :((?: (?:NET|GPU)/[0-9a-fA-F\-]+)+)\s*$")
_RING = re.compile(r"^Channel (\d+)/(\d+) :((?:\s+\d+)+)\s*$")
_TREES = re.compile(r"\[(\d+)\] (-?\d+)/(-?\d+)/(-?\d+)->(\d+)->(-?\d+)")
_CONN = re.compile(r"^Channel (\d+)/\d+ : (\d+)\[[0-9a-fA-Fx]+\] -> (\d+)\[[0-9a-fA-Fx]+\]"
                   r"(?: (\[send\]|\[receive\]))? via (\S+)")
_NVLS = re.compile(r"^NVLS multicast support is (not )?available")
_NVLS_HEAD = re.compile(r"^NVLS Head\s+(\d+):((?:\s+\d+)+)")
_CHANNELS = re.compile(r"^(\d+) coll channels, (\d+) collnet channels, (\d+) nvls channels, (\d+) p2p channels")
_TUNE_ROW = re.compile(r"^\s*(Broadcast|Reduce|AllGather|ReduceScatter|AllReduce|SendRecv|AllToAll)\s*\|(.*)$")
_PATTERNS = {1: "balanced-tree", 2: "split-tree", 3: "tree", 4: "ring", 5: "nvls", 6: "collnet-direct"}
FUNCS = {"broadcast": "Broadcast", "reduce": "Reduce", "all-gather": "AllGather",
         "reduce-scatter": "ReduceScatter", "all-reduce": "AllReduce"}


@dataclass
class NcclLog:
    """What a log says (see [Note: NCCL log lines]); figures as NCCL prints them (GB/s, us)."""

    name: str
    version: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    comms: dict[str, dict[str, Any]] = field(default_factory=dict)   # pointer -> {"nranks", "nnodes", ...}
    proc_rank: dict[tuple, int] = field(default_factory=dict)         # (host, pid, dev) -> rank
    rank_host: dict[int, str] = field(default_factory=dict)
    nics: dict[str, dict[int, str]] = field(default_factory=dict)      # host -> index -> name
    net_kind: dict[str, str] = field(default_factory=dict)             # host -> IB, Socket, ...
    nvl_bw: dict[str, list[float]] = field(default_factory=dict)       # host -> NVL link figures
    pci_bw: dict[str, list[float]] = field(default_factory=dict)
    net_bw: dict[str, dict[int, float]] = field(default_factory=dict)  # host -> NET index -> GB/s
    graphs: list[dict[str, Any]] = field(default_factory=list)
    rings: dict[int, list[int]] = field(default_factory=dict)
    ring_total: int | None = None
    trees: dict[int, dict[int, tuple[list[int], int]]] = field(default_factory=dict)  # ch -> rank -> (down, up)
    hops: list[dict[str, Any]] = field(default_factory=list)          # inter-node hops seen on NET
    nvls: bool | None = None
    nvls_heads: list[list[int]] = field(default_factory=list)
    channels: dict[str, int] = field(default_factory=dict)
    tuning: dict[str, list[list]] = field(default_factory=dict)
    lines: int = 0


def _tune_header(msg: str, state: dict) -> bool:
    """The tuning table's header lines, in either form; fills ``state["pairs"]`` (algo, proto)."""
    body = msg.split("|", 1)[1] if "|" in msg else ""
    cells = [c.strip() for c in body.split("|")]
    if msg.lstrip().startswith("Latency/AlgBw"):
        state["pairs"] = [tuple(x.strip() for x in c.split("/", 1)) for c in cells if "/" in c]
        return True
    if msg.lstrip().startswith("Algorithm"):
        state["algos"] = [c.split()[0] for c in cells if c]
        return True
    if msg.lstrip().startswith("Protocol") and state.get("algos"):
        protos = [c for c in cells if c]
        per = len(protos) // max(1, len(state["algos"]))
        state["pairs"] = [(state["algos"][i // per], protos[i])
                          for i in range(min(len(protos), per * len(state["algos"])))] if per else []
        return True
    return msg.lstrip().startswith("Max NThreads")


def parse_nccl_log(text: str, name: str = "<log>") -> NcclLog:
    """Every line of [Note: NCCL log lines] found in ``text``; others are skipped."""
    log = NcclLog(name)
    last_host: str | None = None
    tune: dict[str, Any] = {}
    for raw in text.splitlines():
        if "NCCL version" in raw and log.version is None:
            v = _VERSION.search(raw)
            if v:
                log.version = v.group(1)
        m = _LINE.match(raw)
        if m is None:
            continue
        log.lines += 1
        host, key, msg = m.group("host"), (m.group("host"), int(m.group("pid")), int(m.group("dev"))), m.group("msg")
        if (e := _ENV.match(msg)):
            log.env[e.group(1)] = e.group(2)
        elif (c := _COMM.search(msg)):
            rank, n = int(c.group(2)), int(c.group(3))
            info = log.comms.setdefault(c.group(1), {"nranks": n})
            if c.group(4):
                info.update(nnodes=int(c.group(4)), local_ranks=int(c.group(5)))
            log.proc_rank[key] = rank
            log.rank_host[rank] = host
        elif (u := _NET_USING.match(msg)):
            log.net_kind[host] = u.group(1)
            log.nics.setdefault(host, {}).update({int(i): nm for i, nm in _NET_DEV.findall(u.group(2))})
        elif _SYSTEM.match(msg):
            last_host = host
            log.nvl_bw.setdefault(host, [])
        elif (t := _TOPO_LINK.search(msg)):
            kind, bw, target, ident = t.group(1), float(t.group(2)), t.group(3), t.group(4)
            if not bw > 0:  # a figure of 0 says nothing: the default is taken, and said
                continue
            if kind == "NVL":
                log.nvl_bw.setdefault(host, []).append(bw)
            elif kind == "PCI" and target == "GPU":
                log.pci_bw.setdefault(host, []).append(bw)
            elif kind == "NET":
                idx = ident.split("-")[-1]
                try:
                    log.net_bw.setdefault(host, {})[int(idx, 16)] = bw
                except ValueError:
                    pass
        elif (p := _PATTERN.match(msg)):
            log.graphs.append({"host": host, "pattern": int(p.group(1)),
                               "algo": _PATTERNS.get(int(p.group(1)), str(p.group(1))),
                               "cross_nic": int(p.group(2)), "nchannels": int(p.group(3)),
                               "bw_intra": float(p.group(4)), "bw_inter": float(p.group(5)),
                               "type_intra": p.group(6) or "", "type_inter": p.group(7) or "", "channels": []})
        elif (g := _GRAPH_CH.match(msg)) and log.graphs and log.graphs[-1]["host"] == host:
            log.graphs[-1]["channels"].append(g.group(2).split())
        elif (r := _RING.match(msg)):
            log.rings[int(r.group(1))] = [int(x) for x in r.group(3).split()]
            log.ring_total = int(r.group(2))
        elif msg.startswith("Trees"):
            for ch, d0, d1, d2, rank, up in _TREES.findall(msg):
                downs = [int(x) for x in (d0, d1, d2) if int(x) >= 0]
                log.trees.setdefault(int(ch), {})[int(rank)] = (downs, int(up))
        elif (c := _CONN.match(msg)):
            ch, src, dst, side, via = int(c.group(1)), int(c.group(2)), int(c.group(3)), c.group(4), c.group(5)
            if via.startswith("NET/") and side:
                parts = via.split("/")
                dev = re.match(r"\d+", parts[2]) if len(parts) > 2 else None
                if dev:
                    log.hops.append({"channel": ch, "src": src, "dst": dst, "side": side.strip("[]"),
                                     "host": host, "dev": int(dev.group(0)), "net": parts[1], "via": via})
        elif (v := _NVLS.match(msg)):
            log.nvls = bool(log.nvls) or v.group(1) is None
        elif (h := _NVLS_HEAD.match(msg)):
            log.nvls_heads.append([int(x) for x in h.group(2).split()])
        elif (c := _CHANNELS.match(msg)):
            log.channels = {"coll": int(c.group(1)), "collnet": int(c.group(2)), "nvls": int(c.group(3)),
                            "p2p": int(c.group(4))}
        elif _tune_header(msg, tune):
            continue
        elif (t := _TUNE_ROW.match(msg)) and tune.get("pairs"):
            cells = [x.strip() for x in t.group(2).split("|") if x.strip()]
            out = log.tuning.setdefault(t.group(1), [])
            for (algo, proto), cell in zip(tune["pairs"], cells):
                try:
                    lat, bw = (float(x) for x in cell.split("/"))
                except ValueError:
                    continue
                if math.isfinite(lat) and math.isfinite(bw):
                    out[:] = [x for x in out if (x[0], x[1]) != (algo, proto)] + [[algo, proto, lat, bw]]
    del last_host
    return log


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


# -- NCCL's own prediction, from the tuning table the log printed ---------------------------------
# src/graph/tuning.cc (2.19) treeCorrectionFactor[protocol][log2(nBytes / 64)], 64 B to 256 MiB
TREE_CORRECTION = {
    "LL": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    "LL128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    "Simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9),
}


def nccl_predict(layout: dict[str, Any] | None, collective: str, nbytes: int, nranks: int):
    """(seconds, algorithm, protocol) NCCL's tuning table predicts for one collective, or None.

    src/graph/tuning.cc ``ncclTopoGetAlgoTime`` (2.19): time = latency + nBytes / (1000 x
    bandwidth) us, the table's bandwidth (GB/s) times ``treeCorrectionFactor`` for trees, the
    fastest (algorithm, protocol) with bandwidth > 0 (the table already holds 0 for what NCCL_ALGO /
    NCCL_PROTO disabled). nBytes is the whole buffer S for every collective (src/include/info.h
    ``ncclInfoSetDerived``: all-gather and reduce-scatter multiply the per-rank count by nRanks).
    Left out: the ring plateau factor of multi-node all-reduce (it needs the GPUs' compute
    capability, which the lines read here do not give) and the batching of many ops.
    """
    del nranks  # nBytes is S for every collective (see above)
    func = FUNCS.get(collective)
    rows = ((layout or {}).get("tuning") or {}).get(func or "", [])
    best = None
    for algo, proto, lat, bw in rows:
        if not bw > 0:
            continue
        if algo == "Tree" and proto in TREE_CORRECTION:
            k = max(0, int(nbytes) >> 6).bit_length() - 1
            if 0 <= k < 23:
                bw *= TREE_CORRECTION[proto][k]
        t = (lat + nbytes / (1000 * bw)) * 1e-6
        if best is None or t < best[0]:
            best = (t, algo, proto)
    return best
