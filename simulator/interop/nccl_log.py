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
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

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
            ring = [int(x) for x in r.group(3).split()]
            if len(ring) >= len(log.rings.get(int(r.group(1)), ())):  # a smaller communicator's ring after it: not ours
                log.rings[int(r.group(1))] = ring
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
