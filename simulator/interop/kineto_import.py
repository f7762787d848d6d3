"""Import per-rank PyTorch profiler (Kineto) traces of a distributed job into one rankscope trace.

[Note: what is read from a Kineto file]
- rank: ``distributedInfo.rank`` (what HTA reads), else ``rank<N>`` in the file name.
- clock: ``ts`` is microseconds on the profiler's monotonic clock; ``baseTimeNanoseconds + ts*1000``
  is wall-clock nanoseconds, so ranks are aligned on that (one host: one monotonic clock anyway).
- collectives, NCCL builds: ``record_param_comms`` CPU ops (``Collective name``, ``In msg nelems``,
  ``Out msg nelems``, ``dtype``, ``Group size``, ``Process Group Name``/``Ranks``) give the issue
  order, kind and size; the NCCL kernel each one launched (through the ``correlation`` id of the
  launch inside it, else in order) gives when it ran on the GPU. A launch is a ``cuda_runtime``
  event (``cudaLaunchKernel``, ``cudaLaunchKernelExC``) or a ``cuda_driver`` one: NCCL >= 2.19
  launches its ``ncclDevKernel_*`` kernels with the driver's ``cuLaunchKernelEx``, which Kineto
  files under ``cuda_driver`` (pytorch/kineto#1380). Kernel names: ``ncclKernel_*`` (NCCL < 2.19)
  and ``ncclDevKernel_*`` both start with ``nccl``.
- collectives, gloo (no ``record_param_comms`` there): ``c10d::*`` CPU ops give the issue order,
  kind and shapes (``record_shapes=True``); ``gloo:*`` ops on gloo's worker threads give when it
  ran. They are matched in order: gloo's workers take work first in, first out. gloo runs a
  reduce-scatter as ``gloo:all_reduce`` (a full all-reduce plus a copy): the kind stays the one the
  program issued, the implementation is kept in ``impl``.
- annotations: only ``cat == "user_annotation"`` events, the CPU-side ``record_function``
  ranges. On CUDA, Kineto also writes a ``gpu_user_annotation`` copy of each range on every GPU
  stream that ran kernels inside it (pytorch/kineto#1022, #1393): taken as well, one training step
  would become one window per stream.
- compute spans: ``rankscope::<label>`` annotations (what ``rankscope real train`` and the Kineto
  exporter write); else FSDP2's own: ``fwd X`` from the end of ``FSDP::pre_forward (X)`` to the
  start of ``FSDP::post_forward (X)``, ``bwd X`` from the end of ``FSDP::pre_backward (X)`` to the
  start of its first ``FSDP::post_backward_*``; and ``Optimizer.step#...`` as ``optimizer step``.
- training steps: ``ProfilerStep#k`` annotations (CPU side, see above).
- memory: ``[memory]`` instant events (``profile_memory=True``): the CUDA caching allocator's on a
  GPU run (device type 1), else the CPU allocator's; :mod:`.kineto_memory` rebuilds the
  allocations (see its [Note: frees the profiler misses]).
"""

from __future__ import annotations

import bisect
import gzip
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from .collectives import MeasuredCollective, collective_kind, dtype_bytes, numel
from .errors import ImportFormatError
from .files import input_files
from .kineto_memory import allocations
from .measured import RankRecord, Span, build_trace

RANK_IN_NAME = re.compile(r"rank[_\-.]?(\d+)", re.I)
SUFFIXES = (".json", ".json.gz")
ANNOTATION = "user_annotation"               # record_function ranges on the CPU thread
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")  # kernel launches: runtime API, or the driver's


def kineto_files(items: list[str]) -> list[str]:
    """Files from a list of files and folders (a folder: its ``*.json`` and ``*.json.gz``, but not
    the ``*.stats.json`` side files that ``rankscope real train`` writes next to them)."""
    return input_files(items, lambda f: f.endswith(SUFFIXES) and not f.endswith(".stats.json"),
                       "*.json or *.json.gz profiler traces")


def load_json(path: str) -> Any:
    """A JSON file (gzip-compressed if it ends in .gz), with one clear error if it is not."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"{path}: cannot read the file ({e})") from None
    if not text.strip():
        raise ImportFormatError(f"{path}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        tail = text.rstrip()[-1:]
        cut = " (the file looks cut short)" if tail not in ("}", "]") else ""
        raise ImportFormatError(f"{path}: not valid JSON{cut}: {e.msg} (line {e.lineno}, "
                                f"column {e.colno})") from None


@dataclass
class _Doc:
    path: str
    rank: int
    base_ns: int
    events: list[dict]
    info: dict


def _open(path: str) -> _Doc:
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise ImportFormatError(f"{path}: no 'traceEvents' list; not a PyTorch profiler trace")
    dist = doc.get("distributedInfo")
    rank = None
    if isinstance(dist, dict) and "rank" in dist:
        try:
            rank = int(dist["rank"])
        except (TypeError, ValueError):
            raise ImportFormatError(f"{path}: distributedInfo.rank is {dist['rank']!r}, not a number") from None
    if rank is None:
        m = RANK_IN_NAME.search(os.path.basename(path))
        if not m:
            raise ImportFormatError(f"{path}: no distributedInfo.rank and no rank<N> in the file name; "
                                    f"cannot tell which rank recorded it")
        rank = int(m.group(1))
    base = doc.get("baseTimeNanoseconds", 0)
    if not isinstance(base, (int, float)):
        raise ImportFormatError(f"{path}: baseTimeNanoseconds is {base!r}, not a number")
    info = {"backend": dist.get("backend") if isinstance(dist, dict) else None,
            "world_size": dist.get("world_size") if isinstance(dist, dict) else None}
    return _Doc(path, rank, int(base), doc["traceEvents"], info)


def _check_event(path: str, i: int, e: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(e, dict):
        raise ImportFormatError(f"{path}: traceEvents[{i}] is {type(e).__name__}, not an object")
    for k in keys:
        if k not in e:
            raise ImportFormatError(f"{path}: traceEvents[{i}] ({e.get('name', '?')!r}) has no {k!r}")
        if k in ("ts", "dur") and not isinstance(e[k], (int, float)):
            raise ImportFormatError(f"{path}: traceEvents[{i}] ({e.get('name', '?')!r}) has {k} = "
                                    f"{e[k]!r}, not a number")


@dataclass
class _Ev:
    name: str
    cat: str
    t: float      # seconds, shared clock
    end: float
    tid: Any
    args: dict
    i: int


class _RankParser:
    def __init__(self, doc: _Doc, base0: int, world: int):
        self.doc = doc
        self.world = world
        off = (doc.base_ns - base0) / 1e9
        self.x: list[_Ev] = []
        self.mem: list[_Ev] = []
        for i, e in enumerate(doc.events):
            if not isinstance(e, dict):
                _check_event(doc.path, i, e, ())
            ph = e.get("ph")
            if ph == "X":
                _check_event(doc.path, i, e, ("name", "ts", "dur"))
                t = e["ts"] * 1e-6 + off
                self.x.append(_Ev(str(e["name"]), str(e.get("cat", "")), t, t + e["dur"] * 1e-6,
                                  e.get("tid"), e.get("args") or {}, i))
            elif ph == "i" and e.get("name") == "[memory]":
                _check_event(doc.path, i, e, ("ts", "args"))
                t = e["ts"] * 1e-6 + off
                self.mem.append(_Ev("[memory]", "", t, t, e.get("tid"), e["args"], i))
        self.x.sort(key=lambda e: (e.t, -e.end, e.i))
        self.mem.sort(key=lambda e: (e.t, e.i))
        self.notes: list[str] = []

    def where(self, e: _Ev) -> str:
        return f"{self.doc.path}: traceEvents[{e.i}] ({e.name!r})"

    # -- collectives ---------------------------------------------------------------------------
    def collectives(self) -> tuple[list[MeasuredCollective], list[_Ev]]:
        rpc = [e for e in self.x if e.name == "record_param_comms"]
        if rpc:
            return self._nccl(rpc), []
        return self._gloo()

    def _nccl(self, rpc: list[_Ev]) -> list[MeasuredCollective]:
        kernels = [e for e in self.x if e.cat == "kernel" and e.name.lower().startswith("nccl")]
        launches = [e for e in self.x if e.cat in LAUNCH_CATS and "Launch" in e.name]
        by_corr = {k.args.get("correlation"): k for k in kernels if "correlation" in k.args}
        out, used = [], set()
        calls = []
        for e in rpc:
            name = e.args.get("Collective name")
            if name is None:
                raise ImportFormatError(f"{self.where(e)}: record_param_comms without 'Collective name'")
            kind = collective_kind(str(name))
            if kind is None:  # "coalesced", "wait", "init": not a collective of their own
                continue
            calls.append((e, str(name), kind))
        per_tid: dict[Any, tuple[list[float], list[_Ev]]] = {}
        for ln in launches:
            ts, evs = per_tid.setdefault(ln.tid, ([], []))
            ts.append(ln.t)
            evs.append(ln)
        for e, name, kind in calls:
            k = None
            ts, evs = per_tid.get(e.tid, ([], []))
            for ln in evs[bisect.bisect_left(ts, e.t):bisect.bisect_right(ts, e.end)]:
                cand = by_corr.get(ln.args.get("correlation"))
                if cand is not None and id(cand) not in used:
                    k = cand
                    break
            if k is not None:
                used.add(id(k))
            out.append([e, name, kind, k])
        rest = [k for k in kernels if id(k) not in used]
        unmatched = [c for c in out if c[3] is None]
        if unmatched and len(rest) == len(unmatched):
            for c, k in zip(unmatched, rest):
                c[3] = k
        elif unmatched and kernels:
            self.notes.append(f"{len(unmatched)} collectives without a matching NCCL kernel: "
                              f"timed by their CPU-side call")
        res = []
        for e, name, kind, k in out:
            a = e.args
            for key in ("In msg nelems", "Out msg nelems"):
                if key not in a:
                    raise ImportFormatError(f"{self.where(e)}: record_param_comms without {key!r}")
            dtype = str(a.get("dtype", ""))
            size = dtype_bytes(dtype, self.where(e))
            n_in, n_out = int(a["In msg nelems"]), int(a["Out msg nelems"])
            elems = n_out if kind == "all-gather" else n_in
            ranks = _ranks(a.get("Process Group Ranks"))
            group = str(a.get("Process Group Name", a.get("pg_name", ranks or "0")))
            if "Group size" in a and ranks and int(a["Group size"]) != len(ranks):
                raise ImportFormatError(f"{self.where(e)}: Group size {a['Group size']} but "
                                        f"{len(ranks)} Process Group Ranks")
            t0, t1 = (k.t, k.end) if k is not None else (e.t, e.end)
            if kind == "p2p":  # a rank's sends and receives are its own: not aligned across ranks
                group = f"{group}:p2p:{self.doc.rank}"
            res.append(MeasuredCollective(self.doc.rank, kind, elems * size, t0, t1, name=name,
                                          impl=k.name if k is not None else "", group=group,
                                          group_ranks=ranks, dtype=dtype, issue=e.t))
        return res

    def _gloo(self) -> tuple[list[MeasuredCollective], list[_Ev]]:
        calls = [e for e in self.x if e.name.startswith("c10d::") and collective_kind(e.name)]
        runs = [e for e in self.x if e.name.startswith("gloo:")]
        used = [False] * len(runs)
        res = []
        first = 0
        for e in calls:
            kind = collective_kind(e.name)
            run = None
            while first < len(runs) and used[first]:
                first += 1
            for j in range(first, len(runs)):
                g = runs[j]
                if used[j] or g.t < e.t - 1e-6:
                    continue
                if _compatible(kind, collective_kind(g.name)):
                    used[j] = True
                    run = g
                    break
            dims = e.args.get("Input Dims")
            if not isinstance(dims, list) or not dims:
                raise ImportFormatError(f"{self.where(e)}: no 'Input Dims' (profile with "
                                        f"record_shapes=True to import gloo collectives)")
            types = e.args.get("Input type") or []
            dtype = next((t for t in types if t not in ("", "TensorList", "Scalar", "GenericList")), None)
            if dtype is None and run is not None:
                rt = run.args.get("Input type") or []
                dtype = rt[0] if rt else None
            if dtype is None:
                dtype = "float"
                self.notes.append(f"{e.name}: no element type recorded, assumed float (4 B)")
            try:
                elems = _gloo_elems(kind, dims, self.world)
            except (TypeError, IndexError):
                raise ImportFormatError(f"{self.where(e)}: 'Input Dims' {dims!r} is not a list of shapes") from None
            size = dtype_bytes(dtype, self.where(e))
            t0, t1 = (run.t, run.end) if run is not None else (e.t, e.end)
            group = f"0:p2p:{self.doc.rank}" if kind == "p2p" else "0"
            res.append(MeasuredCollective(self.doc.rank, kind, elems * size, t0, t1, name=e.name,
                                          impl=run.name if run is not None else "", group=group,
                                          dtype=dtype, issue=e.t))
        missed = sum(1 for c in res if not c.impl)
        if missed:
            self.notes.append(f"{missed} c10d calls without a gloo:* event: timed by their call")
        return res, calls

    # -- compute spans and steps ---------------------------------------------------------------
    def spans(self) -> list[Span]:
        notes = [e for e in self.x if e.cat == ANNOTATION]
        ours = [Span(e.name[len("rankscope::"):], e.t, e.end) for e in notes
                if e.name.startswith("rankscope::")]
        if ours:
            return ours
        out = []
        fsdp = [e for e in notes if e.name.startswith("FSDP::")]
        for e in fsdp:
            m = re.match(r"FSDP::pre_(forward|backward) \((.*)\)$", e.name)
            if not m:
                continue
            what, unit = m.groups()
            if what == "forward":
                end = next((f for f in fsdp if f.name == f"FSDP::post_forward ({unit})" and f.t >= e.end), None)
            else:
                end = next((f for f in fsdp if f.name.startswith("FSDP::post_backward")
                            and f.name.endswith(f"({unit})") and f.t >= e.end), None)
            if end is not None:
                out.append(Span(f"{'fwd' if what == 'forward' else 'bwd'} {unit}", e.end, end.t))
        out += [Span("optimizer step", e.t, e.end) for e in notes if e.name.startswith("Optimizer.step#")]
        return out

    def steps(self) -> list[tuple[float, float]]:
        st = [e for e in self.x if e.cat == ANNOTATION and re.match(r"ProfilerStep\s*#\s*\d+", e.name)]
        return [(e.t, e.end) for e in sorted(st, key=lambda e: e.t)]


def _gloo_elems(kind: str, dims: list, world: int) -> int:
    """Elements of the whole buffer from a c10d op's argument shapes (see [Note: collective bytes]).
    The first argument is the output, the second the input; a list of tensor lists is not
    recorded (an empty shape): then the other side times the group size."""
    out, inp = dims[0], dims[1] if len(dims) > 1 else []
    if kind == "all-gather":
        return numel(out) if out else numel(inp) * world
    if kind in ("reduce-scatter", "all-to-all"):
        return numel(inp) if inp else numel(out) * world
    return numel(out) if out else numel(inp)


def _compatible(call: str | None, run: str | None) -> bool:
    """Whether a gloo:* execution can be the c10d call's: gloo runs reduce-scatter as all-reduce."""
    if call == run:
        return True
    return call == "reduce-scatter" and run == "all-reduce"


def _ranks(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return tuple(v)
    return None


def parse_rank(doc: _Doc, base0: int, world: int) -> RankRecord:
    try:
        p = _RankParser(doc, base0, world)
        colls, calls = p.collectives()
        allocs, mem_info = allocations(p, calls, colls)
    except ImportFormatError:
        raise
    except (ValueError, TypeError, OverflowError) as e:  # a field of the wrong type
        raise ImportFormatError(f"{doc.path}: malformed profiler trace ({e})") from None
    info = {k: v for k, v in doc.info.items() if v is not None}
    if mem_info:
        info["memory"] = mem_info
    if p.notes:
        info["notes"] = p.notes
    return RankRecord(doc.rank, doc.path, colls, p.spans(), allocs, p.steps(), info)


def import_kineto(items: list[str], meta: dict[str, Any] | None = None):
    """One :class:`~simulator.trace.Trace` from per-rank profiler traces (files or folders)."""
    files = kineto_files(items)
    docs = [_open(f) for f in files]
    base0 = min(d.base_ns for d in docs)
    backends = {d.info.get("backend") for d in docs} - {None}
    world = {d.info.get("world_size") for d in docs} - {None}
    if len(world) > 1:
        raise ImportFormatError(f"the files come from jobs of different sizes: world_size "
                                f"{', '.join(map(str, sorted(world)))}")
    size = int(next(iter(world))) if world else len(docs)
    records = [parse_rank(d, base0, size) for d in docs]
    m = {"executor": backends.pop() if len(backends) == 1 else "measured",
         "source": {"format": "kineto", "files": [os.path.abspath(f) for f in files]},
         "epoch_ns": base0, **(meta or {})}
    m.setdefault("world_size", size)
    return build_trace(records, m)
