"""Export a trace as per-rank PyTorch-profiler (Kineto) JSON, the shape HTA and Kineto's viewers load.

[Note: the Kineto export]
One file per rank, ``rank{r}.json``, shaped like a GPU run of PyTorch's profiler:
- ``distributedInfo`` with ``"rank": r`` written with a space after the colon: HTA finds a file's
  rank with the regex ``"rank":\\s+(\\d+)`` (compact JSON would make every file rank 0);
  ``baseTimeNanoseconds`` so that ``ts`` (microseconds, ns precision) converts to wall clock.
- each training step (``meta["steps"]`` of a measured trace; else the whole trace) is a
  ``ProfilerStep#k`` annotation. HTA leaves out the kernels of the last of several steps in some
  analyses (``include_last_profiler_step``); the overlap analysis uses every kernel.
- a COMPUTE op is a ``rankscope::<label>`` annotation on the CPU thread, a ``cudaLaunchKernel``
  and a kernel named ``<label>`` on stream 7;
- a collective (COLLECTIVE ops and ``meta["other_collectives"]``) is a ``record_param_comms`` CPU
  op (``Collective name``, ``In msg nelems``, ``Out msg nelems``, ``dtype``, ``Group size``,
  ``Process Group Name``/``Ranks``) on a second CPU thread, a launch, and an NCCL-named kernel
  (``ncclKernel_AllGather_RING_LL_Sum_float(...)``: HTA's straggler analysis knows only names that
  start with ``ncclKernel``) on stream 20; a transfer is an ``ncclKernel_SendRecv`` kernel on the
  sender and on the receiver (stream 21), with ``record_param_comms`` ``send``/``recv``;
- ALLOC and FREE ops are ``[memory]`` events (``Bytes``, ``Total Allocated``, ``Addr``, the device)
  carrying the buffer's name and category (``rankscope buffer``/``rankscope category``), so
  :mod:`.kineto_import` reads back the same timeline.
Element counts use the collective's dtype when the trace knows it, else bytes (``Byte``), so the
whole-buffer size S survives the round trip exactly. Ops that never ran are left out.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..program import CollKind, OpKind
from ..trace import Trace, write_text_atomic
from .collectives import DTYPE_BYTES
from .errors import ExportError

STREAM_COMPUTE, STREAM_COMM, STREAM_P2P = 7, 20, 21
TID_CPU, TID_COMM = 1, 2
_CAMEL = {"all-reduce": "AllReduce", "reduce-scatter": "ReduceScatter", "all-gather": "AllGather",
          "broadcast": "Broadcast", "all-to-all": "AllToAll", "barrier": "AllReduce", "p2p": "SendRecv",
          "reduce": "Reduce", "gather": "Gather", "scatter": "Scatter"}
_NAME = {"all-reduce": "allreduce", "reduce-scatter": "_reduce_scatter_base", "all-gather": "_allgather_base",
         "broadcast": "broadcast", "all-to-all": "all_to_all", "barrier": "barrier", "p2p": "send",
         "reduce": "reduce", "gather": "gather", "scatter": "scatter"}


def _us(t: float) -> float:
    return round(float(t) * 1e6, 3)


class _Rank:
    def __init__(self, rank: int, pid: int):
        self.rank, self.pid = rank, pid
        self.events: list[dict[str, Any]] = []
        self.corr = 0

    def span(self, name: str, cat: str, t0: float, t1: float, tid: int, args: dict | None = None,
             pid: int | None = None) -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": self.pid if pid is None else pid,
                            "tid": tid, "ts": _us(t0), "dur": round(max(0.0, _us(t1) - _us(t0)), 3),
                            "args": args or {}})

    def kernel(self, name: str, t0: float, t1: float, stream: int, cpu_tid: int, t_launch: float,
               args: dict | None = None) -> None:
        self.corr += 1
        c = self.corr
        self.span("cudaLaunchKernel", "cuda_runtime", t_launch, t_launch, cpu_tid,
                  {"correlation": c, "External id": c})
        self.span(name, "kernel", t0, t1, stream, {"stream": stream, "correlation": c, "External id": c,
                                                   "device": 0, "context": 1, **(args or {})}, pid=0)


def _coll_args(kind: str, nbytes: int, dtype: str, group: str, ranks: list[int], name: str) -> dict[str, Any]:
    size = DTYPE_BYTES.get(dtype)
    if not size or nbytes % size:
        dtype, size = "Byte", 1
    n = nbytes // size
    g = max(1, len(ranks))
    inn, out = n, n
    if kind == "all-gather":
        inn = n // g
    elif kind == "reduce-scatter":
        out = n // g
    return {"Collective name": name or _NAME.get(kind, kind), "In msg nelems": inn, "Out msg nelems": out,
            "dtype": dtype, "Group size": g, "Process Group Name": group,
            "Process Group Ranks": json.dumps(ranks), "In split size": "[]", "Out split size": "[]"}


def _kernel_name(kind: str, dtype: str) -> str:
    if kind == "p2p":
        return "ncclKernel_SendRecv(ncclWorkElem)"
    return f"ncclKernel_{_CAMEL.get(kind, 'AllReduce')}_RING_LL_Sum_{dtype or 'int8_t'}(ncclWorkElem)"


def kineto_documents(trace: Trace) -> dict[int, dict[str, Any]]:
    """Per rank, the Kineto-shaped document (see [Note: the Kineto export])."""
    p = trace.program
    n = p.nranks
    ran = trace.ran
    base = int(trace.meta.get("epoch_ns") or 0) + int(round(float(trace.meta.get("t0") or 0.0) * 1e9))
    ranks = {r: _Rank(r, 1000 + r) for r in range(n)}
    all_ranks = list(range(n))
    info = trace.meta.get("collectives") or []
    precision = p.meta.get("precision")
    default_dtype = {"bf16": "BFloat16", "fp32": "Float"}.get(precision, "")
    for op in np.flatnonzero(ran):
        k, r, a = OpKind(int(p.kind[op])), int(p.rank[op]), int(p.arg[op])
        t0, t1 = float(trace.start[op]), float(trace.end[op])
        R = ranks[r]
        if k == OpKind.COMPUTE:
            label = p.compute_label[a] or f"compute {op}"
            R.span(f"rankscope::{label}", "user_annotation", t0, t1, TID_CPU)
            R.kernel(label, t0, t1, STREAM_COMPUTE, TID_CPU, t0)
        elif k == OpKind.COLLECTIVE:
            kind = CollKind(int(p.coll_kind[a])).label
            ci = info[a] if a < len(info) else {}
            group_ranks = ci.get("group_ranks") or all_ranks
            dtype = ci.get("dtype") or default_dtype
            args = _coll_args(kind, int(p.coll_bytes[a]), _scalar_name(dtype), str(ci.get("group", "0")),
                              group_ranks, ci.get("name", "").replace("c10d::", "").rstrip("_")
                              if ci.get("name", "").startswith("c10d::") else ci.get("name", ""))
            _collective(R, kind, t0, t1, args, op)
        elif k in (OpKind.REDUCE, OpKind.COPY):
            nbytes = int(p.chunk_len[a])
            dst = int(p.peer[op])
            for who, name in ((r, "send"), (dst, "recv")):
                args = _coll_args("p2p", nbytes, "Byte", f"p2p:{r}->{dst}", [r, dst], name)
                ranks[who].span("record_param_comms", "cpu_op", t0, t0, TID_COMM, args)
                ranks[who].kernel(_kernel_name("p2p", ""), t0, t1, STREAM_P2P, TID_COMM, t0, args)
    for c in trace.meta.get("other_collectives", []):
        r = int(c["rank"])
        if r not in ranks or not np.isfinite(c["start"]) or not np.isfinite(c["end"]):
            continue
        nm = c.get("name", "")
        args = _coll_args(c["kind"], int(c["nbytes"]), _scalar_name(c.get("dtype", "")), str(c.get("group", "0")),
                          c.get("group_ranks") or all_ranks,
                          nm.replace("c10d::", "").rstrip("_") if nm.startswith("c10d::") else nm)
        _collective(ranks[r], c["kind"], float(c["start"]), float(c["end"]), args, None)
    _memory(trace, ranks)
    docs = {}
    for r, R in ranks.items():
        mine = np.flatnonzero(ran & (p.rank == r))
        windows = (trace.meta.get("steps") or {}).get(str(r))
        if not windows:
            lo = float(trace.start[mine].min()) if mine.size else 0.0
            hi = float(trace.end[mine].max()) if mine.size else 0.0
            windows = [[lo, hi]]
        for i, (a, b) in enumerate(windows):
            R.span(f"ProfilerStep#{i}", "user_annotation", a, b, TID_CPU)
        R.events.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
        meta_ev = [{"ph": "M", "name": "process_name", "pid": R.pid, "tid": 0, "args": {"name": f"rank {r}"}},
                   {"ph": "M", "name": "process_labels", "pid": R.pid, "tid": 0, "args": {"labels": "CPU"}},
                   {"ph": "M", "name": "thread_name", "pid": R.pid, "tid": TID_CPU, "args": {"name": "main"}},
                   {"ph": "M", "name": "thread_name", "pid": R.pid, "tid": TID_COMM, "args": {"name": "comm issue"}},
                   {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "GPU 0"}}]
        meta_ev += [{"ph": "M", "name": "thread_name", "pid": 0, "tid": s, "args": {"name": f"stream {s}"}}
                    for s in (STREAM_COMPUTE, STREAM_COMM, STREAM_P2P)]
        docs[r] = {
            "schemaVersion": 1,
            "deviceProperties": [{"id": 0, "name": "rankscope device", "totalGlobalMem": 0}],
            "distributedInfo": {"backend": str(trace.meta.get("executor", "nccl")), "rank": r, "world_size": n},
            "baseTimeNanoseconds": base,
            "displayTimeUnit": "ms",
            "rankscope": {"source": "rankscope trace export", "executor": trace.meta.get("executor"),
                          "clock": trace.meta.get("clock")},
            "traceEvents": meta_ev + R.events,
        }
    return docs


def _scalar_name(dtype: str) -> str:
    """A dtype as record_param_comms writes it (ScalarType names)."""
    table = {"float": "Float", "double": "Double", "c10::Half": "Half", "c10::BFloat16": "BFloat16",
             "long int": "Long", "int": "Int", "short int": "Short", "signed char": "Char",
             "unsigned char": "Byte", "bool": "Bool"}
    return table.get(dtype, dtype or "Byte")


def _collective(R: _Rank, kind: str, t0: float, t1: float, args: dict[str, Any], op) -> None:
    R.span("record_param_comms", "cpu_op", t0, t0, TID_COMM, args)
    stream = STREAM_P2P if kind == "p2p" else STREAM_COMM
    R.kernel(_kernel_name(kind, args["dtype"].lower() if args["dtype"] != "Byte" else "int8_t"), t0, t1,
             stream, TID_COMM, t0, {k: args[k] for k in ("Collective name", "In msg nelems", "Out msg nelems",
                                                         "Group size", "dtype")})


def _memory(trace: Trace, ranks: dict[int, _Rank]) -> None:
    p = trace.program
    mem = np.flatnonzero(((p.kind == OpKind.ALLOC) | (p.kind == OpKind.FREE)) & trace.ran)
    if not mem.size and not any(b.alive for b in p.buffers):
        return
    devices = {v.get("memory", {}).get("device") for v in (trace.meta.get("ranks") or {}).values()}
    dev_type = 0 if devices == {"cpu"} else 1
    when = np.where(p.kind[mem] == OpKind.ALLOC, trace.start[mem], trace.end[mem])
    order = np.lexsort((mem, when))
    total = {r: 0 for r in ranks}
    t_first = float(np.nanmin(trace.start[trace.ran])) if trace.ran.any() else 0.0
    for b, buf in enumerate(p.buffers):
        if buf.alive:
            for r, R in ranks.items():
                total[r] += buf.nbytes
                R.events.append(_mem_event(R, t_first, buf.nbytes, total[r], b, buf, dev_type))
    for i in order:
        op = int(mem[i])
        r, b = int(p.rank[op]), int(p.arg[op])
        buf = p.buffers[b]
        sign = 1 if p.kind[op] == OpKind.ALLOC else -1
        total[r] += sign * buf.nbytes
        ranks[r].events.append(_mem_event(ranks[r], float(when[i]), sign * buf.nbytes, total[r], b, buf, dev_type))


def _mem_event(R: _Rank, t: float, nbytes: int, total: int, b: int, buf, dev_type: int) -> dict[str, Any]:
    return {"ph": "i", "s": "t", "cat": "cpu_instant_event", "name": "[memory]", "pid": R.pid, "tid": TID_CPU,
            "ts": _us(t), "args": {"Total Reserved": 0, "Total Allocated": int(total), "Bytes": int(nbytes),
                                   "Addr": b + 1, "Device Type": dev_type, "Device Id": 0 if dev_type else -1,
                                   "rankscope buffer": buf.name, "rankscope category": buf.category}}


def write_kineto(trace: Trace, folder: str) -> list[str]:
    """Write ``rank{r}.json`` per rank into ``folder`` (created); returns the paths."""
    # separators: '"rank": 0' with the space HTA's regex needs
    return write_rank_documents(kineto_documents(trace), folder, "rank{}.json", separators=(", ", ": "))


def write_rank_documents(docs: dict[int, Any], folder: str, pattern: str, **dump_kw: Any) -> list[str]:
    """Write each rank's JSON document to ``folder/pattern.format(rank)`` (the folder created; each
    file written to a temporary name and renamed into place); returns the paths. Files of the
    pattern for other ranks (an earlier export of a larger trace into the same folder) are
    removed: a tool that loads the folder, as HTA does, would take them for ranks of this one."""
    import re

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the folder {folder!r}: {e}") from None
    paths = []
    for r, doc in docs.items():
        path = os.path.join(folder, pattern.format(r))
        write_text_atomic(path, lambda f, doc=doc: json.dump(doc, f, **dump_kw))
        paths.append(path)
    mine = re.compile(re.escape(pattern).replace(re.escape("{}"), r"(\d+)") + "$")
    for name in os.listdir(folder):
        m = mine.match(name)
        if m and int(m.group(1)) not in docs:
            os.unlink(os.path.join(folder, name))
    return paths
