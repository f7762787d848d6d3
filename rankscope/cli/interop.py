"""The ``export`` and ``import`` verbs. :func:`register` adds them to ``rankscope``'s subparsers.

- ``rankscope export FILE --format chrome|kineto|chakra [-o OUT]``: Chrome trace JSON (Perfetto),
  per-rank Kineto JSON in a folder (HTA), or Chakra-style JSON in a folder.
  Default OUT: ``FILE`` without ``.trace`` plus ``.chrome.json``, ``.kineto/`` or ``.chakra/``.
- ``rankscope import kineto FILES|DIR [-o OUT]`` and ``rankscope import flight-recorder FILES|DIR
  [-o OUT]``: one rankscope trace from per-rank files; default OUT ``DIR.trace`` for one folder,
  else ``kineto.trace`` / ``flight-recorder.trace``. Both print a summary (``--json`` for JSON).
Bad input raises :class:`~rankscope.simulator.errors.RankscopeError` subclasses: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rankscope.simulator.program import OpKind
from rankscope.simulator.units import format_bytes, format_seconds

from . import nccl
from .args import Parser

FORMATS = ("chrome", "kineto", "chakra")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``import`` to ``sub`` (subparsers made with parser_class=Parser)."""
    e = sub.add_parser("export", help="write a trace for another tool: chrome (Perfetto), kineto (HTA), chakra")
    e.add_argument("file", help="a rankscope trace")
    e.add_argument("--format", "-f", choices=FORMATS, default="chrome", help="default chrome")
    e.add_argument("--out", "-o", help="output file (chrome) or folder (kineto, chakra)")
    e.add_argument("--salvage", action="store_true", help="export the readable prefix of a truncated trace")
    e.set_defaults(func=cmd_export)
    i = sub.add_parser("import", help="make a rankscope trace from PyTorch profiler traces or flight-recorder dumps")
    isub = i.add_subparsers(dest="source", metavar="SOURCE", parser_class=Parser, required=True)
    k = isub.add_parser("kineto", help="per-rank PyTorch profiler (Kineto) JSON: files or a folder")
    k.add_argument("paths", nargs="+", help="rank files (*.json, *.json.gz) or folders of them")
    f = isub.add_parser("flight-recorder", help="per-rank flight-recorder dumps (JSON or pickle): files or a folder")
    f.add_argument("paths", nargs="+", help="dump files or folders of them")
    for p in (k, f):
        p.add_argument("--out", "-o", help="trace file to write (default: FOLDER.trace, or <source>.trace)")
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
    k.set_defaults(func=cmd_import_kineto)
    f.set_defaults(func=cmd_import_fr)
    nccl.add_import_sources(isub)  # nccl-tests, nccl-log (rankscope/cli/nccl.py)


def _default_out(paths: list[str], fallback: str) -> str:
    if len(paths) == 1 and os.path.isdir(paths[0]):
        return os.path.normpath(paths[0]) + ".trace"
    return fallback


def _import_out(a: argparse.Namespace, fallback: str) -> str:
    """``--out`` (an empty one is an error, not the default), checked before any work."""
    from rankscope.simulator.errors import check_output

    out = a.out if a.out is not None else _default_out(a.paths, fallback)
    check_output(out)
    return out


def cmd_import_kineto(a: argparse.Namespace) -> int:
    from rankscope.simulator.interop.kineto_import import import_kineto

    out = _import_out(a, "kineto.trace")
    return _finish_import(import_kineto(a.paths), out, a.json)


def cmd_import_fr(a: argparse.Namespace) -> int:
    from rankscope.simulator.interop.flight_recorder import import_flight_recorder

    out = _import_out(a, "flight-recorder.trace")
    return _finish_import(import_flight_recorder(a.paths), out, a.json)


def import_summary(trace) -> dict[str, Any]:
    """Per rank: collectives (and bytes), compute spans, peak memory; and the whole trace's span."""
    from rankscope.simulator.memory import memory_timeline

    p = trace.program
    mt = memory_timeline(p, trace.start, trace.end)
    others = trace.meta.get("other_collectives") or []
    rows = []
    for r in trace.meta.get("ranks", {}):
        r = int(r)
        coll = (p.kind == OpKind.COLLECTIVE) & (p.rank == r)
        oth = [c for c in others if int(c["rank"]) == r]
        rows.append({"rank": r, "collectives": int(coll.sum()) + len(oth),
                     "collective_bytes": int(p.coll_bytes[p.arg[coll]].sum()) + sum(int(c["nbytes"]) for c in oth),
                     "compute_spans": int(((p.kind == OpKind.COMPUTE) & (p.rank == r)).sum()),
                     "peak_memory": int(mt.peak(r)[0]) if mt.total[r].size else 0,
                     "steps": len((trace.meta.get("steps") or {}).get(str(r), []))})
    span = trace.makespan
    return {"executor": trace.meta.get("executor"), "nranks": p.nranks, "n_ops": p.n_ops,
            "collectives_per_rank": rows[0]["collectives"] if rows else 0, "makespan": span, "ranks": rows}


def _finish_import(trace, out: str, as_json: bool) -> int:
    from rankscope.simulator.errors import TraceFormatError
    from rankscope.simulator.interop.errors import ImportFormatError
    from rankscope.simulator.trace import check_trace, write_trace

    try:
        check_trace(trace)
    except TraceFormatError as e:
        raise ImportFormatError(f"the imported trace would not read back: {e}") from None
    try:
        write_trace(out, trace)
    except OSError as e:
        raise ImportFormatError(f"cannot write the trace to {out!r}: {e.strerror or e}") from None
    doc = import_summary(trace)
    doc["out"] = out
    if as_json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return 0
    src = (trace.meta.get("source") or {}).get("format")
    print(f"imported {src} traces of {len(doc['ranks'])} ranks ({doc['executor']}): {doc['n_ops']} ops, "
          f"{doc['collectives_per_rank']} collectives per rank, {format_seconds(doc['makespan'])}")
    print(f"  {'rank':>4} {'collectives':>11} {'bytes':>10} {'compute':>8} {'steps':>6} {'peak memory':>12}")
    for r in doc["ranks"]:
        print(f"  {r['rank']:>4} {r['collectives']:>11} {format_bytes(r['collective_bytes']):>10} "
              f"{r['compute_spans']:>8} {r['steps']:>6} {format_bytes(r['peak_memory']):>12}")
    print(f"trace written to {out}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    try:
        return _export(a)
    except OSError as e:
        from rankscope.simulator.interop.errors import ExportError

        raise ExportError(f"cannot write the {a.format} export: {e.strerror or e} ({e.filename or ''})") from None


def _export(a: argparse.Namespace) -> int:
    from rankscope.simulator.errors import check_output
    from rankscope.simulator.trace import read_trace

    stem = a.file[:-len(".trace")] if a.file.endswith(".trace") else a.file
    default = {"chrome": f"{stem}.chrome.json", "kineto": f"{stem}.kineto", "chakra": f"{stem}.chakra"}
    out = a.out if a.out is not None else default[a.format]  # an empty --out is an error, not the default
    check_output(out, folder=a.format != "chrome")
    trace = read_trace(a.file, salvage=a.salvage)
    if a.format == "chrome":
        from rankscope.simulator.interop.chrome_export import write_chrome

        write_chrome(trace, out)
        print(f"Chrome trace written to {out} (open it in ui.perfetto.dev or chrome://tracing)")
    elif a.format == "kineto":
        from rankscope.simulator.interop.kineto_export import write_kineto

        paths = write_kineto(trace, out)
        print(f"{len(paths)} Kineto traces written to {out}/ (HolisticTraceAnalysis: TraceAnalysis(trace_dir={out!r}))")
    else:
        from rankscope.simulator.interop.chakra_export import write_chakra

        paths = write_chakra(trace, out)
        print(f"{len(paths)} Chakra-style JSON traces written to {out}/")
    return 0
