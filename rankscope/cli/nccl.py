"""Validating against a GPU cluster: ``import nccl-tests``, ``import nccl-log`` and ``compare`` of a
nccl-tests import. :func:`add_import_sources` adds the two import sources to ``rankscope import``
(:mod:`.interop` calls it); :func:`wants_table` and :func:`cmd_compare_table` are the
``compare FILE.nccltests --topology T`` path (:mod:`.sim`'s ``compare`` has the ``--topology``
option and dispatches here).

- ``rankscope import nccl-tests FILE [-o OUT] [--collective C] [--ranks N] [--json]``: the table
  trace of nccl-tests output (default OUT: FILE without its extension plus ``.nccltests``).
- ``rankscope import nccl-log FILE [-o OUT.toml] [--json]``: the topology TOML of an
  ``NCCL_DEBUG=INFO`` log with its ``[nccl]`` channel layout (default OUT: FILE's stem + ``.toml``).
- ``rankscope compare RUN.nccltests --topology T [--plot P.png] [--json]``, or ``compare
  RUN.nccltests SWEEP.json``: per size measured, simulated, error, NCCL's prediction.
"""

from __future__ import annotations

import argparse
import os

from rankscope.simulator.units import format_bytes, format_seconds

from .args import dump_json


def add_import_sources(isub) -> None:
    """Add ``nccl-tests`` and ``nccl-log`` to the sub-parsers of ``rankscope import``."""
    t = isub.add_parser("nccl-tests", help="nccl-tests output (all_reduce_perf ...) as printed: a table trace")
    t.add_argument("file", help="a file of nccl-tests output (MPI / Slurm noise around it is skipped)")
    t.add_argument("--out", "-o", help="trace to write (default: FILE without extension + .nccltests)")
    t.add_argument("--collective", help="the collective, where the file does not name its test")
    t.add_argument("--ranks", type=int, help="the rank count, where the file has no '#  Rank' device lines")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=cmd_import_nccl_tests)
    g = isub.add_parser("nccl-log", help="an NCCL_DEBUG=INFO log: a topology TOML with NCCL's channel layout")
    g.add_argument("file", help="the job's output with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,GRAPH,ENV,TUNING")
    g.add_argument("--out", "-o", help="topology file to write (default: FILE's stem + .toml)")
    g.add_argument("--json", action="store_true", help="print the layout as JSON")
    g.set_defaults(func=cmd_import_nccl_log)


def _stem(path: str) -> str:
    return os.path.splitext(path)[0] if os.path.splitext(path)[1] in (".txt", ".log", ".out", "") else path


def cmd_import_nccl_tests(a: argparse.Namespace) -> int:
    from rankscope.simulator.errors import UsageError, check_output
    from rankscope.simulator.interop.errors import ImportFormatError
    from rankscope.simulator.interop.nccl_tests import import_nccl_tests, table_runs
    from rankscope.simulator.trace import write_trace

    out = a.out if a.out is not None else _stem(a.file) + ".nccltests"
    if not out:
        raise UsageError("-o needs a file name")
    if a.ranks is not None and a.ranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {a.ranks}")
    check_output(out)
    trace = import_nccl_tests(a.file, collective=a.collective, ranks=a.ranks)
    try:
        write_trace(out, trace)
    except OSError as e:
        raise ImportFormatError(f"cannot write the trace to {out!r}: {e.strerror or e}") from None
    runs = table_runs(trace)
    if a.json:
        dump_json({"out": out, "runs": runs})
        return 0
    for r in runs:
        where = f"{r['nodes']} node{'s' if (r['nodes'] or 0) != 1 else ''}" if r["nodes"] else "nodes unknown"
        print(f"{r['test'] or r['collective']}: {r['collective']} on {r['nranks']} ranks ({where}), "
              f"NCCL {r['nccl_version'] or 'version unknown'}, {len(r['rows'])} sizes "
              f"{format_bytes(r['rows'][0]['size'])}..{format_bytes(r['rows'][-1]['size'])} (line {r['first_line']})"
              + (f", avg busbw {r['avg_busbw']:g} GB/s" if r["avg_busbw"] is not None else ""))
        wrong = sum((x["wrong"] or 0) + (x["in_wrong"] or 0) for x in r["rows"])
        if wrong:
            print(f"  WARNING: {wrong} wrong elements reported (#wrong): the run computed wrong results")
    print(f"table trace written to {out} (rankscope compare {out} --topology T)")
    return 0


def cmd_import_nccl_log(a: argparse.Namespace) -> int:
    from rankscope.simulator.errors import UsageError, check_output
    from rankscope.simulator.interop.nccl_topology import import_nccl_log

    out = a.out if a.out is not None else os.path.splitext(a.file)[0] + ".toml"
    if not out:
        raise UsageError("-o needs a file name")
    check_output(out)
    topo, lay = import_nccl_log(a.file, out)
    if a.json:
        dump_json({"out": out, "topology": topo.name, "links": len(topo.link_names), "nccl": lay})
        return 0
    print(f"{topo.name}: {lay['nranks']} ranks on {lay['nnodes']} node(s) {', '.join(lay['hosts'])}; "
          f"NCCL {lay['version'] or 'version unknown'}; {lay['nchannels']} channels, {len(lay['rings'])} rings "
          f"printed, {len(lay['trees'])} tree channels, NVLS {'on' if lay['nvls'] else 'off'}"
          + (f" ({lay['nvls_channels']} channels)" if lay["nvls"] else ""))
    for c, hops in enumerate(lay["ring_nics"]):
        if hops:
            print(f"  ring {c}: " + ", ".join(f"{s}->{d} via {sn or '?'} / {rn or '?'}" for s, d, sn, rn in hops))
    if lay["env"]:
        print("  environment: " + ", ".join(f"{k}={v}" for k, v in lay["env"].items()))
    if lay["tuning"]:
        print(f"  tuning table: {', '.join(lay['tuning'])}")
    for d in lay["defaults"]:
        print(f"  default taken: {d}")
    print(f"topology written to {out} (--topology {out})")
    return 0


def wants_table(a: argparse.Namespace) -> bool:
    """True when ``compare`` was given a nccl-tests import (by name, or one file and --topology)."""
    return a.a.endswith(".nccltests") or a.b is None or bool(getattr(a, "topology", None))


def cmd_compare_table(a: argparse.Namespace) -> int:
    from rankscope.simulator.errors import UsageError
    from rankscope.simulator.interop.nccl_compare import compare_table, load_sweep, plot_busbw
    from rankscope.simulator.trace import read_trace

    if a.plot:
        from rankscope.simulator.plot import check_plot_path

        check_plot_path(a.plot)
    from rankscope.simulator.interop.nccl_tests import is_table_trace, table_runs

    trace = read_trace(a.a)
    if not is_table_trace(trace):
        raise UsageError(f"{a.a} is not an import of nccl-tests output: compare takes two traces A B, or one "
                         "'rankscope import nccl-tests' trace with --topology T (or a sweep JSON)")
    topo = sweep = None
    if a.b is not None:
        if a.topology:
            raise UsageError("give either --topology or a sweep JSON as the second file, not both")
        sweep = load_sweep(a.b)
    elif a.topology:
        from rankscope.simulator.topology import parse_topology

        topo = parse_topology(a.topology)
    runs = compare_table(trace, topo, sweep)
    skipped = len(table_runs(trace)) - len(runs)
    if a.plot:
        plot_busbw(runs, a.plot)
    if a.json:
        dump_json({"measured": a.a, "runs": runs, "plot": a.plot})
        return 0

    def pct(x):
        return "-" if x is None else f"{x:+.1%}"

    def sec(x):
        return "-" if x is None else format_seconds(x)

    def gbs(x):
        return "-" if x is None else f"{x / 1e9:.2f}"
    for run in runs:
        print(f"measured {run['test'] or run['collective']} ({run['collective']}, {run['nranks']} ranks, NCCL "
              f"{run['nccl_version'] or '?'}) vs simulated on {run['topology']}")
        print(f"{'size':>10}{'measured':>10}{'in-place':>10}{'simulated':>11}{'error':>9}{'busbw':>8}{'sim':>8}"
              f"{'NCCL pred':>11}{'error':>9}  NCCL algo/proto")
        for r in run["rows"]:
            algo = f"{r['nccl_algo']}/{r['nccl_proto']}" if r["nccl_algo"] else "-"
            print(f"{format_bytes(r['size']):>10}{sec(r['measured']):>10}{sec(r['measured_in_place']):>10}"
                  f"{sec(r['simulated']):>11}{pct(r['error']):>9}{gbs(r['busbw_measured']):>8}"
                  f"{gbs(r['busbw_simulated']):>8}{sec(r['nccl_predicted']):>11}{pct(r['nccl_error']):>9}  {algo}")
        if not run["simulated"]:
            print(f"  (no builder simulates {run['collective']}: measured only)")
        else:
            algo = ", ".join(dict.fromkeys(r["sim_algo"] for r in run["rows"] if r["sim_algo"]))
            med, big = run["median_abs_error"], run["median_abs_error_1mib"]
            print(f"  simulated with {algo}; median |error| {med:.1%}"
                  + (f", sizes >= 1 MiB {big:.1%}" if big is not None else ""))
    if skipped:
        print(f"({skipped} other test(s) of the import left out: the sweep is of {sweep['collective']} on "
              f"{sweep['nranks']} ranks)")
    if a.plot:
        print(f"plot written to {a.plot}")
    return 0
