"""Export a trace as Chrome trace-event JSON, which Perfetto UI (ui.perfetto.dev) and chrome://tracing open.

[Note: the Chrome export]
- one process per rank (``pid`` = rank, named ``rank r``), and one more, ``links``, when the trace
  has link rows;
- threads: ``compute`` (COMPUTE ops), ``collectives`` (COLLECTIVE ops and a measured trace's other
  collectives), ``send -> rD`` and ``recv <- rS`` per peer (transfers: a connection carries one
  message at a time, so these never overlap in a simulated trace), and one thread per link;
- a thread's slices must nest (Perfetto draws overlapping siblings wrongly), so slices that would
  overlap without nesting go to an overflow thread (``compute #2``, ...): measured traces do
  overlap (gloo runs two collectives at once on its two workers);
- a flow arrow (``ph`` s/f, ``bp`` e) from each transfer's send slice to its receive slice;
- counters: memory per rank by category (``memory``), and bytes per second on each link
  (``link L``), from the link rows.
Times are microseconds (the format's unit) with nanosecond decimals.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..memory import memory_timeline
from ..program import CollKind, OpKind
from ..trace import Trace, write_text_atomic
from ..units import format_bytes
from .errors import ExportError

TID_COMPUTE, TID_COLL = 1, 2
SEND_BASE, RECV_BASE, OVERFLOW = 1_000, 100_000, 10_000_000


def _us(t: float) -> float:
    return round(float(t) * 1e6, 3)


class _Threads:
    """Slices per (pid, tid), moved to overflow threads where they would not nest."""

    def __init__(self) -> None:
        self.names: dict[tuple[int, int], str] = {}
        self.slices: dict[tuple[int, int], list[dict[str, Any]]] = {}

    def add(self, pid: int, tid: int, name: str, ev: dict[str, Any]) -> None:
        self.names.setdefault((pid, tid), name)
        self.slices.setdefault((pid, tid), []).append(ev)

    def events(self) -> tuple[list[dict[str, Any]], dict[int, tuple[int, int]]]:
        """All slices placed so each thread nests, and where each op id's slice ended up."""
        out: list[dict[str, Any]] = []
        where: dict[int, tuple[int, int]] = {}
        for (pid, tid), evs in self.slices.items():
            evs.sort(key=lambda e: (e["ts"], -e["dur"]))
            lanes: list[list[float]] = []   # per overflow level, the stack of open slice ends
            for e in evs:
                start, end = e["ts"], e["ts"] + e["dur"]
                for k, stack in enumerate(lanes):  # noqa: B007 (k is the level the slice lands on)
                    while stack and stack[-1] <= start:
                        stack.pop()
                    if not stack or end <= stack[-1]:
                        stack.append(end)
                        break
                else:
                    k = len(lanes)
                    lanes.append([end])
                t = tid if k == 0 else tid + OVERFLOW * k
                if k and (pid, t) not in self.names:
                    self.names[(pid, t)] = f"{self.names[(pid, tid)]} #{k + 1}"
                e = {**e, "pid": pid, "tid": t}
                if "op" in e["args"]:
                    where[int(e["args"]["op"])] = (pid, t)
                out.append(e)
        return out, where


def chrome_events(trace: Trace) -> list[dict[str, Any]]:
    """The trace's events (see [Note: the Chrome export])."""
    p = trace.program
    n = p.nranks
    th = _Threads()
    ran = trace.ran
    for op in np.flatnonzero(ran):
        k, r, a = OpKind(int(p.kind[op])), int(p.rank[op]), int(p.arg[op])
        t0, t1 = _us(trace.start[op]), _us(trace.end[op])
        ev = {"ph": "X", "ts": t0, "dur": round(max(0.0, t1 - t0), 3), "args": {"op": int(op)}}
        if k == OpKind.COMPUTE:
            th.add(r, TID_COMPUTE, "compute", {**ev, "name": p.describe_op(int(op)), "cat": "compute",
                                               "args": {**ev["args"], "seconds": float(trace.end[op] - trace.start[op])}})
        elif k == OpKind.COLLECTIVE:
            nb = int(p.coll_bytes[a])
            th.add(r, TID_COLL, "collectives", {**ev, "name": f"{p.describe_op(int(op))} {format_bytes(nb)}",
                                                 "cat": "collective",
                                                 "args": {**ev["args"], "kind": CollKind(int(p.coll_kind[a])).label,
                                                          "collective": a, "bytes": nb}})
        elif k in (OpKind.REDUCE, OpKind.COPY):
            dst = int(p.peer[op])
            nb = int(p.chunk_len[a])
            what = OpKind(int(k)).label
            args = {**ev["args"], "bytes": nb, "chunk": a, "step": int(p.step[op]), "kind": what}
            th.add(r, SEND_BASE + dst, f"send -> r{dst}", {**ev, "name": f"send {format_bytes(nb)} to r{dst}",
                                                           "cat": "transfer", "args": args})
            th.add(dst, RECV_BASE + r, f"recv <- r{r}", {**ev, "name": f"{what} {format_bytes(nb)} from r{r}",
                                                         "cat": "transfer", "args": {**args, "op": -1 - int(op)}})
    for c in trace.meta.get("other_collectives", []):
        if np.isfinite(c["start"]) and np.isfinite(c["end"]):
            t0, t1 = _us(c["start"]), _us(c["end"])
            th.add(int(c["rank"]), TID_COLL, "collectives",
                   {"ph": "X", "ts": t0, "dur": round(max(0.0, t1 - t0), 3), "cat": "collective",
                    "name": f"{c['kind']} {format_bytes(int(c['nbytes']))}",
                    "args": {"kind": c["kind"], "bytes": int(c["nbytes"]), "name": c.get("name", "")}})
    link_names = _link_names(trace)
    for i in range(trace.n_links):
        lk = int(trace.link_id[i])
        t0, t1 = _us(trace.link_t0[i]), _us(trace.link_t1[i])
        th.add(n, 1 + lk, link_names.get(lk, f"link {lk}"),
               {"ph": "X", "ts": t0, "dur": round(max(0.0, t1 - t0), 3), "cat": "link",
                "name": format_bytes(float(trace.link_bytes[i])), "args": {"bytes": float(trace.link_bytes[i])}})
    slices, where = th.events()
    events: list[dict[str, Any]] = []
    for r in range(n):
        events.append({"ph": "M", "name": "process_name", "pid": r, "tid": 0, "args": {"name": f"rank {r}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": r, "tid": 0, "args": {"sort_index": r}})
    if trace.n_links:
        events.append({"ph": "M", "name": "process_name", "pid": n, "tid": 0, "args": {"name": "links"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": n, "tid": 0, "args": {"sort_index": n}})
    for (pid, tid), name in sorted(th.names.items()):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    events += slices
    for op in np.flatnonzero(ran & p.is_transfer):
        src, dst = where.get(int(op)), where.get(-1 - int(op))
        if src is None or dst is None:
            continue
        events.append({"ph": "s", "id": int(op), "cat": "transfer", "name": "transfer", "pid": src[0],
                       "tid": src[1], "ts": _us(trace.start[op])})
        events.append({"ph": "f", "bp": "e", "id": int(op), "cat": "transfer", "name": "transfer",
                       "pid": dst[0], "tid": dst[1], "ts": _us(trace.start[op])})
    events += _memory_counters(trace) + _link_counters(trace, n, link_names)
    return events


def _link_names(trace: Trace) -> dict[int, str]:
    topo = trace.meta.get("topology")
    links = topo.get("links") if isinstance(topo, dict) else None
    out = {}
    if isinstance(links, list):
        for i, lk in enumerate(links):
            if isinstance(lk, dict) and "src" in lk and "dst" in lk:
                out[i] = f"link {i}: {lk['src']} -> {lk['dst']}"
            elif isinstance(lk, (list, tuple)) and len(lk) >= 2:
                out[i] = f"link {i}: {lk[0]} -> {lk[1]}"
    return out


def _memory_counters(trace: Trace) -> list[dict[str, Any]]:
    p = trace.program
    if not p.buffers:
        return []
    mt = memory_timeline(p, trace.start, trace.end)
    out = []
    for r in range(p.nranks):
        t, cat = mt.times[r], mt.by_category[r]
        if t.size <= 1 and not cat.any():
            continue
        t = t.copy()
        if t.size > 1:
            t[0] = min(t[0], float(np.nanmin(t[1:])))
        keep = np.append(t[1:] != t[:-1], True)  # the last state at each instant
        for i in np.flatnonzero(keep):
            out.append({"ph": "C", "name": "memory", "pid": r, "ts": _us(t[i]),
                        "args": {c: int(v) for c, v in zip(mt.categories, cat[i])}})
    return out


def _link_counters(trace: Trace, pid: int, names: dict[int, str]) -> list[dict[str, Any]]:
    out = []
    if not trace.n_links:
        return out
    dur = trace.link_t1 - trace.link_t0
    rate = np.where(dur > 0, trace.link_bytes / np.where(dur > 0, dur, 1), 0.0)
    for lk in np.unique(trace.link_id):
        sel = np.flatnonzero(trace.link_id == lk)
        times = np.concatenate([trace.link_t0[sel], trace.link_t1[sel]])
        delta = np.concatenate([rate[sel], -rate[sel]])
        o = np.lexsort((delta, times))
        times, level = times[o], np.cumsum(delta[o])
        keep = np.append(times[1:] != times[:-1], True)
        name = f"{names.get(int(lk), f'link {int(lk)}')} bytes/s"
        for t, v in zip(times[keep], level[keep]):
            out.append({"ph": "C", "name": name, "pid": pid, "ts": _us(t), "args": {"bytes/s": max(0.0, float(v))}})
    return out


def write_chrome(trace: Trace, path: str) -> None:
    """Write the Chrome trace JSON to ``path`` (atomically)."""
    doc = {"traceEvents": chrome_events(trace), "displayTimeUnit": "ms",
           "otherData": {"rankscope": {"executor": trace.meta.get("executor"), "clock": trace.meta.get("clock"),
                                       "nranks": trace.program.nranks}}}
    try:
        write_text_atomic(path, lambda f: json.dump(doc, f))
    except OSError as e:
        raise ExportError(f"cannot write {path!r}: {e}") from None
