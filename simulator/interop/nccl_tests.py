"""nccl-tests output (``all_reduce_perf`` and friends, as printed) in, a table trace out.

[Note: nccl-tests output]
What NVIDIA/nccl-tests prints, line by line (src/util.cu of nccl-tests 2.13 and later:
``writeDeviceReport``, ``writeResultHeader``, ``writeBenchmarkLinePreamble``,
``writeBenchmarkLineBody``, ``writeResultFooter``; src/common.cu ``run`` and ``Reporter`` in older
releases, which print the same lines without the version line):

- ``# nccl-tests version 2.13.9 nccl-headers=21903 nccl-library=21903`` (NCCL's version code,
  ``major*10000 + minor*100 + patch`` from 2.9 on, ``major*1000 + minor*100 + patch`` before);
  ``# Collective test starting: all_reduce_perf``;
- ``# nThread 1 nGpus 1 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20
  agg iters: 1 validation: 1 graph: 0``;
- ``#  Rank %2d Group %2d Pid %6d on %10s device %2d [%04x:%02x:%02x] %s``: one line per rank
  (``[0x%02x]`` in older releases), gathered to rank 0 under MPI;
- the column names ``# size count type redop root time algbw busbw #wrong time algbw busbw
  #wrong`` (out-of-place, then in-place; ``cputime`` for ``-C 1``; ``#bitdiff``, ``i_min`` ...
  and a timestamp in the newer optional modes), and the units line;
- one row per size: ``%12li  %12li  %8s  %6s  %6s`` (bytes, elements, type, redop, root), then
  per placement ``  %7s  %6s  %6s  %6g`` (time in us, algbw and busbw in GB/s, wrong elements;
  ``N/A`` without ``-c``);
- ``# Out of bounds values : 0 OK``, ``# Avg bus bandwidth    : 41.2``, ``# Collective test
  concluded: all_reduce_perf``.

Around it come other tools' lines: mpirun's ``--tag-output`` prefixes (``[1,0]<stdout>:``), srun's
``--label`` prefixes (``0: ``), NCCL's own ``host:pid:tid [dev] NCCL INFO ...`` lines (whose
``NCCL version 2.19.3+cuda12.3`` line names the library when the version line is absent), job
banners, warnings. Rows are recognised by their shape, everything else that is not one of the
lines above is skipped. A file may hold several tests one after another (a ``# nThread`` or version
line after result rows starts the next one).

[Note: table trace]
An import is one ordinary trace (trace format v1) whose program has one COLLECTIVE op per rank
and size, laid end to end on each rank in the file's order, each lasting the out-of-place time the
row states (the clock, ``nccl-tests``, is that sum, not a wall clock). Collectives a program cannot
hold (broadcast, all-to-all, ...) are in ``meta.other_collectives`` as in every import. The rows
themselves, both placements, and what the header says are in ``meta.nccl_tests``:
``{"file", "runs": [{"test", "collective", "nranks", "nodes", "hosts", "devices", "nccl_version",
"nccl_tests_version", "params", "avg_busbw", "out_of_bounds", "first_line", "rows": [{"size",
"count", "type", "redop", "root", "time_us", "algbw", "busbw", "wrong", "in_time_us", "in_algbw",
"in_busbw", "in_wrong", "line"}]}]}`` (GB/s as printed: 1e9 bytes/s). :func:`table_runs` reads
it back; ``rankscope compare FILE.nccltests --topology T`` compares it with a simulation.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .collectives import MeasuredCollective, collective_kind
from .errors import ImportFormatError
from .measured import RankRecord, build_trace

FORMAT = "nccl-tests"
MAX_RANKS = 1 << 16      # the largest rank count an import takes
MAX_OPS = 20_000_000     # ranks x sizes: one COLLECTIVE op each
# element sizes of nccl-tests' type names (src/common.cu test_typenames)
TYPE_BYTES = {"int8": 1, "uint8": 1, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "half": 2,
              "float": 4, "double": 8, "bfloat16": 2, "f8e4m3": 1, "f8e5m2": 1, "char": 1, "int": 4}

_NOISE_PREFIX = re.compile(r"^(?:\[\d+,\d+\]<std(?:out|err)>:|\s*\d+:\s)")   # mpirun --tag-output, srun -l
_VERSION = re.compile(r"^#\s*nccl-tests version\s+(\S+)(?:.*?nccl-headers=(\d+))?(?:.*?nccl-library=(\d+))?")
_STARTING = re.compile(r"^#\s*Collective test (starting|concluded):\s*(\S+)")
_PARAMS = re.compile(r"^#\s*nThread\s+(\d+)\s+nGpus\s+(\d+)\s+minBytes\s+(\d+)\s+maxBytes\s+(\d+)"
                     r"\s+step:\s*(\d+)\((factor|bytes)\)\s+warmup iters:\s*(\d+)\s+iters:\s*(\d+)"
                     r"(?:\s+agg iters:\s*(\d+))?(?:\s+validation:\s*(\d+))?(?:\s+graph:\s*(\d+))?")
_DEVICE = re.compile(r"^#\s+Rank\s+(\d+)\s+Group\s+(\d+)\s+Pid\s+(\d+)\s+on\s+(\S+)\s+device\s+(\d+)"
                     r"\s+\[([^\]]*)\]\s*(.*?)\s*$")
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([A-Za-z0-9_]+)\s+([A-Za-z0-9_]+)\s+(-?\d+)\s+(\S.*?)\s*$")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")
_NCCL_VERSION = re.compile(r"NCCL (?:INFO )?(?:version|Version)\s+(\d+\.\d+\.\d+)")
_PROGRAM = re.compile(r"\b([a-z_]+?)_perf(?:_mpi)?\b")
_TIME_NAMES = ("time", "cputime")


@dataclass
class Row:
    size: int
    count: int
    type: str
    redop: str
    root: int
    time_us: float
    algbw: float
    busbw: float
    wrong: int | None
    in_time_us: float
    in_algbw: float
    in_busbw: float
    in_wrong: int | None
    line: int


@dataclass
class Run:
    """One test of a file (one ``*_perf`` run): header, devices, rows, footer."""

    first_line: int
    test: str | None = None
    collective: str | None = None
    nccl_version: str | None = None
    nccl_tests_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] | None = None
    rows: list[Row] = field(default_factory=list)
    avg_busbw: float | None = None
    out_of_bounds: int | None = None
    ended: bool = False
    nranks: int | None = None

    @property
    def hosts(self) -> list[str]:
        return list(dict.fromkeys(d["host"] for d in self.devices))


def version_from_code(code: int) -> str:
    """NCCL's version code as ``major.minor.patch`` (src/nccl.h.in NCCL_VERSION: ``major*10000 +
    minor*100 + patch`` from 2.9, ``major*1000 + minor*100 + patch`` before)."""
    if code >= 20900:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def _clean(line: str) -> str:
    line = line.rstrip("\r\n")
    for _ in range(2):  # srun -l around mpirun --tag-output, or the other way round
        m = _NOISE_PREFIX.match(line)
        if m is None or _ROW.match(line):
            break
        line = line[m.end():]
    return line


def _number(tok: str, where: str, what: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise ImportFormatError(f"{where}: {what} {tok!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise ImportFormatError(f"{where}: {what} {tok!r} must be a finite number >= 0")
    return v


def _wrong(tok: str, where: str) -> int | None:
    if tok == "N/A":
        return None
    v = _number(tok, where, "#wrong")
    if v != int(v):
        raise ImportFormatError(f"{where}: #wrong {tok!r} is not a whole number")
    return int(v)


def _row(m: re.Match, columns: list[str] | None, where: str) -> Row:
    size, count, typ, redop, root = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4), int(m.group(5))
    toks = m.group(6).split()
    width = 4   # time, algbw, busbw, #wrong; wider in the optional modes (#bitdiff, i_min, ...)
    if columns:
        c = columns[5:]
        times = [i for i, name in enumerate(c) if name in _TIME_NAMES]
        if len(times) >= 2 and c[times[0]:times[0] + 4] == [c[times[0]], "algbw", "busbw", "#wrong"]:
            width = max(4, times[1] - times[0])
    if len(toks) < 2 * width:
        raise ImportFormatError(f"{where}: a result row needs {5 + 2 * width} columns (size, count, type, redop, "
                                f"root, then time, algbw, busbw, #wrong out-of-place and in-place), got {5 + len(toks)}")
    out, inp = toks[:width], toks[width:2 * width]
    vals = [_number(t, where, name) for t, name in zip(out[:3] + inp[:3], ("time", "algbw", "busbw") * 2)]
    return Row(size, count, typ, redop, root, vals[0], vals[1], vals[2], _wrong(out[3], where),
               vals[3], vals[4], vals[5], _wrong(inp[3], where), 0)


def parse_nccl_tests(text: str, name: str = "<text>") -> list[Run]:
    """The tests in a file of nccl-tests output (see [Note: nccl-tests output]); each with its rows.
    :class:`ImportFormatError` names the line of a malformed row and says when no row was found."""
    runs: list[Run] = []
    cur: Run | None = None
    hint_test: str | None = None
    lib_version: str | None = None

    def fresh(lineno: int) -> Run:
        nonlocal cur
        if cur is None or cur.rows or cur.ended:
            cur = Run(first_line=lineno)
            runs.append(cur)
        return cur

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _clean(raw)
        where = f"{name}:{lineno}"
        if not line.startswith("#"):
            m = _ROW.match(line)
            if m and (cur is None or not cur.ended):
                run = cur if cur is not None else fresh(lineno)
                row = _row(m, run.columns, where)
                row.line = lineno
                run.rows.append(row)
                continue
            if m and cur is not None and cur.ended:
                raise ImportFormatError(f"{where}: a result row after the end of the test that began at line "
                                        f"{cur.first_line}, with no header of its own")
            v = _NCCL_VERSION.search(line)
            if v:
                lib_version = v.group(1)
                if cur is not None and not cur.ended and cur.nccl_version is None:
                    cur.nccl_version = lib_version
            elif m is None and "NCCL INFO" not in line and "NCCL WARN" not in line:
                p = _PROGRAM.search(line)
                if p:
                    hint_test = p.group(0)
            continue
        if (m := _VERSION.match(line)):
            run = fresh(lineno)
            run.nccl_tests_version = m.group(1)
            code = m.group(3) or m.group(2)
            if code:
                run.nccl_version = version_from_code(int(code))
        elif (m := _STARTING.match(line)):
            if m.group(1) == "starting":
                run = fresh(lineno) if (cur is None or cur.rows or cur.ended or cur.test) else cur
                run.test = m.group(2)
            elif cur is not None:
                cur.test = cur.test or m.group(2)
                cur.ended, hint_test = True, None
        elif (m := _PARAMS.match(line)):
            run = cur if cur is not None and not cur.rows and not cur.ended and not cur.params else fresh(lineno)
            g = [int(x) if x is not None else None for x in m.groups()[:5]] + [m.group(6)] + \
                [int(x) if x is not None else None for x in m.groups()[6:]]
            run.params = {"nthreads": g[0], "ngpus": g[1], "min_bytes": g[2], "max_bytes": g[3],
                          "step": g[4], "step_kind": g[5], "warmup_iters": g[6], "iters": g[7],
                          "agg_iters": g[8], "validation": g[9], "graph": g[10]}
        elif (m := _DEVICE.match(line)):
            run = cur if cur is not None and not cur.rows and not cur.ended else fresh(lineno)
            run.devices.append({"rank": int(m.group(1)), "group": int(m.group(2)), "pid": int(m.group(3)),
                                "host": m.group(4), "device": int(m.group(5)), "bus": m.group(6),
                                "name": m.group(7), "line": lineno})
        elif line.lstrip("# ").startswith("size") and "count" in line and ("time" in line or "cputime" in line):
            run = cur if cur is not None and not cur.rows and not cur.ended else fresh(lineno)
            run.columns = line.lstrip("#").split()
        elif (m := _OOB.match(line)):
            if cur is not None:
                cur.out_of_bounds = int(m.group(1))
        elif (m := _AVG.match(line)):
            if cur is not None:
                try:
                    cur.avg_busbw = float(m.group(1))
                except ValueError:
                    raise ImportFormatError(f"{where}: Avg bus bandwidth {m.group(1)!r} is not a number") from None
                cur.test = cur.test or hint_test
                cur.ended, hint_test = True, None
        if cur is not None and not cur.ended:
            cur.test = cur.test or hint_test
            cur.nccl_version = cur.nccl_version or lib_version
    runs = [r for r in runs if r.rows]
    if not runs:
        raise ImportFormatError(f"{name}: no nccl-tests result rows (lines of size, count, type, redop, root, "
                                "time, algbw, busbw, #wrong ...) in this file")
    return runs


def _factor(kind: str, n: int) -> float:
    """busbw / algbw in nccl-tests (doc/PERFORMANCE.md; src/*.cu GetBw)."""
    if kind == "all-reduce":
        return 2 * (n - 1) / n
    if kind in ("all-gather", "reduce-scatter", "all-to-all"):
        return (n - 1) / n
    return 1.0


def _ranks_from_ratio(run: Run, kind: str | None) -> int | None:
    """The rank count that busbw / algbw implies (all-reduce: 2(n-1)/n; all-gather, reduce-scatter,
    all-to-all: (n-1)/n), from the largest row; None where the ratio says nothing."""
    if kind not in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all"):
        return None
    row = max(run.rows, key=lambda r: r.algbw)
    if row.algbw <= 0:
        return None
    q = row.busbw / row.algbw / (2 if kind == "all-reduce" else 1)   # (n-1)/n
    if not 0 <= q < 1:
        return None
    n = round(1 / (1 - q)) if q < 1 - 1 / MAX_RANKS else 0
    return n if n >= 1 and abs(_factor(kind, n) - row.busbw / row.algbw) < 0.02 else None


def _infer_kind(run: Run, nranks: int | None) -> str | None:
    """The collective from a row's shape, where the file does not name the test: count x type size
    = size for all-reduce, broadcast and reduce (root >= 0); = size / N for all-gather (redop none)
    and reduce-scatter (a redop)."""
    r = run.rows[-1]
    w = TYPE_BYTES.get(r.type)
    if w is None:
        return None
    if r.count * w == r.size and r.size:
        if r.root >= 0:
            return "broadcast" if r.redop == "none" else "reduce"
        return "all-reduce" if r.redop != "none" else None
    if nranks and r.count * w * nranks == r.size:
        return "all-gather" if r.redop == "none" else "reduce-scatter"
    return None


def _resolve(run: Run, name: str, collective: str | None, ranks: int | None) -> None:
    where = f"{name}:{run.first_line}"
    if collective:
        run.collective = collective_kind(collective)
        if run.collective is None:
            raise ImportFormatError(f"--collective {collective!r} is no collective: give all-reduce, all-gather, "
                                    "reduce-scatter, broadcast, reduce, all-to-all ...")
    elif run.test:
        run.collective = collective_kind(run.test)
    if ranks:
        run.nranks = ranks
    elif run.devices:
        run.nranks = max(d["rank"] for d in run.devices) + 1
    else:
        run.nranks = _ranks_from_ratio(run, run.collective)
    if run.collective is None:
        run.collective = _infer_kind(run, run.nranks)
    if run.collective is None:
        raise ImportFormatError(f"{where}: cannot tell which collective this test ran (no 'Collective test "
                                "starting' line, no *_perf command line); pass --collective all-reduce (or ...)")
    if run.nranks is None:
        run.nranks = _ranks_from_ratio(run, run.collective)
    if run.nranks is None:
        raise ImportFormatError(f"{where}: cannot tell the rank count (no '#  Rank ... device' lines); "
                                "pass --ranks N")


def _doc(run: Run) -> dict[str, Any]:
    return {"test": run.test, "collective": run.collective, "nranks": run.nranks, "nodes": len(run.hosts) or None,
            "hosts": run.hosts, "devices": run.devices, "nccl_version": run.nccl_version,
            "nccl_tests_version": run.nccl_tests_version, "params": run.params, "avg_busbw": run.avg_busbw,
            "out_of_bounds": run.out_of_bounds, "first_line": run.first_line,
            "rows": [asdict(r) for r in run.rows]}


def import_nccl_tests(path: str, *, collective: str | None = None, ranks: int | None = None):
    """The table trace of a file of nccl-tests output (see [Note: table trace])."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ImportFormatError(f"cannot read {path!r}: {e.strerror or e}") from None
    return nccl_tests_trace(text, os.path.basename(path), path, collective=collective, ranks=ranks)


def nccl_tests_trace(text: str, name: str, path: str = "", *, collective: str | None = None,
                     ranks: int | None = None):
    """The table trace of nccl-tests output ``text`` (``name`` for messages, ``path`` for meta)."""
    path = path or name
    runs = parse_nccl_tests(text, name)
    for run in runs:
        _resolve(run, name, collective, ranks)
    counts = {run.nranks for run in runs}
    if len(counts) > 1:
        a, b = runs[0], next(r for r in runs if r.nranks != runs[0].nranks)
        raise ImportFormatError(f"{name}: the tests ran on different rank counts ({a.nranks} at line {a.first_line}, "
                                f"{b.nranks} at line {b.first_line}); split the file, one rank count per import")
    nranks = counts.pop()
    if nranks > MAX_RANKS or nranks * sum(len(r.rows) for r in runs) > MAX_OPS:
        raise ImportFormatError(f"{name}: {nranks} ranks x {sum(len(r.rows) for r in runs)} sizes is more than an "
                                f"import holds ({MAX_RANKS} ranks, {MAX_OPS} collective ops); check the file's "
                                "'#  Rank' lines or --ranks")
    records = [RankRecord(r, name) for r in range(nranks)]
    t = 0.0
    for run in runs:
        for row in run.rows:
            dt = row.time_us * 1e-6
            for rec in records:
                rec.collectives.append(MeasuredCollective(
                    rec.rank, run.collective, row.size, t, t + dt, name=run.test or run.collective,
                    impl=FORMAT, dtype=row.type, extra={"line": row.line}))
            t += dt
    meta = {"executor": FORMAT, "clock": FORMAT,
            "source": {"format": FORMAT, "files": [path]},
            "nccl_tests": {"file": path, "runs": [_doc(r) for r in runs]},
            "program_meta": {"source": FORMAT}}
    return build_trace(records, meta)


def is_table_trace(trace) -> bool:
    return (trace.meta.get("source") or {}).get("format") == FORMAT and "nccl_tests" in trace.meta


def table_runs(trace) -> list[dict[str, Any]]:
    """The runs of a table trace (see [Note: table trace])."""
    if not is_table_trace(trace):
        raise ImportFormatError("this trace is not an import of nccl-tests output (rankscope import nccl-tests)")
    return list(trace.meta["nccl_tests"]["runs"])
