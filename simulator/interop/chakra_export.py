"""Export a trace as per-rank Chakra execution traces in JSON (the MLCommons Chakra ET schema).

[Note: the Chakra export]
Chakra's own files are protobuf (``mlc-chakra``'s ``et_def.proto``); this writes the same nodes as
JSON, the shape ``chakra_jsonizer`` prints, one ``rank{r}.et.json`` per rank: a ``GlobalMetadata``
(version) and ``nodes``, one per op of that rank that a network simulator replays:
- COMPUTE ops: ``COMP_NODE`` with ``duration_micros`` (the op's time in the trace);
- COLLECTIVE ops: ``COMM_COLL_NODE`` with attributes ``comm_type`` (Chakra's
  ``CollectiveCommType``: ALL_REDUCE 0, ALL_GATHER 2, REDUCE_SCATTER 7) and ``comm_size`` (S bytes);
- transfers: ``COMM_SEND_NODE`` on the sender and ``COMM_RECV_NODE`` on the receiver, with
  ``comm_src``, ``comm_dst``, ``comm_size`` and ``comm_tag`` (the op id, shared by the pair).
``data_deps`` are the program's dependencies between ops of the same rank (a receive's node
carries the sender's in-rank dependencies on the sender side only). Memory ops are left out: Chakra
replays compute and communication. Node ids are op ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..program import CollKind, OpKind
from ..trace import Trace
from .kineto_export import write_rank_documents

COMP_NODE, COMM_SEND_NODE, COMM_RECV_NODE, COMM_COLL_NODE = 4, 5, 6, 7
COMM_TYPE = {CollKind.ALL_REDUCE: 0, CollKind.ALL_GATHER: 2, CollKind.REDUCE_SCATTER: 7}


def _attr(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": name, "bool_val": value}
    if isinstance(value, int):
        return {"name": name, "int64_val": value}
    return {"name": name, "string_val": str(value)}


def chakra_documents(trace: Trace) -> dict[int, dict[str, Any]]:
    p = trace.program
    docs = {r: {"schema": "chakra-et-json", "GlobalMetadata": {"version": "0.0.4", "source": "rankscope"},
                "rank": r, "nodes": []} for r in range(p.nranks)}
    keep = (p.kind == OpKind.COMPUTE) | (p.kind == OpKind.COLLECTIVE) | p.is_transfer
    for op in np.flatnonzero(keep):
        k, r, a = OpKind(int(p.kind[op])), int(p.rank[op]), int(p.arg[op])
        dur = float(trace.end[op] - trace.start[op]) if trace.ran[op] else 0.0
        deps = [int(d) for d in p.deps(int(op)) if keep[d] and int(p.rank[d]) == r]
        node = {"id": int(op), "name": p.describe_op(int(op)), "ctrl_deps": [], "data_deps": deps,
                "start_time_micros": int(round(float(trace.start[op]) * 1e6)) if trace.ran[op] else 0,
                "duration_micros": int(round(dur * 1e6)), "attrs": [_attr("is_cpu_op", False)]}
        if k == OpKind.COMPUTE:
            node["type"] = COMP_NODE
            node["attrs"].append(_attr("num_ops", int(p.compute_flops[a])))
        elif k == OpKind.COLLECTIVE:
            node["type"] = COMM_COLL_NODE
            node["attrs"] += [_attr("comm_type", COMM_TYPE[CollKind(int(p.coll_kind[a]))]),
                              _attr("comm_size", int(p.coll_bytes[a]))]
        else:
            dst = int(p.peer[op])
            comm = [_attr("comm_src", r), _attr("comm_dst", dst), _attr("comm_size", int(p.chunk_len[a])),
                    _attr("comm_tag", int(op))]
            node["type"] = COMM_SEND_NODE
            node["attrs"] += comm
            recv = {**node, "type": COMM_RECV_NODE, "data_deps": [], "attrs": [_attr("is_cpu_op", False)] + comm}
            docs[dst]["nodes"].append(recv)
        docs[r]["nodes"].append(node)
    for d in docs.values():
        d["nodes"].sort(key=lambda n: (n["id"], n["type"]))
    return docs


def write_chakra(trace: Trace, folder: str) -> list[str]:
    """Write ``rank{r}.et.json`` per rank into ``folder`` (created); returns the paths."""
    return write_rank_documents(chakra_documents(trace), folder, "rank{}.et.json")
