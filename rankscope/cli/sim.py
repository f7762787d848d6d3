"""The simulator's verbs: ``sim`` (a collective, or ``sim train``: a training step), ``sweep``,
``info`` and ``compare``. Importing this module imports neither torch nor textual."""

from __future__ import annotations

import argparse
import os
import sys

from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.errors import UsageError, check_output
from rankscope.simulator.program import Program
from rankscope.simulator.sim_report import link_words, print_sim, sim_json
from rankscope.simulator.units import format_bytes, format_seconds, parse_size

from .args import add_topology_args, byte_size, dump_json, int_at_least, resolve_ranks, topology_from_args
from .sim_train import add_train_args, cmd_train


def add_collective_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """The arguments that say which collective to build (``sim``'s; ``demo`` takes them too, with
    ``default`` as the collective when none is given)."""
    if default is None:
        p.add_argument("collective", help=f"one of {', '.join(ALGORITHMS)}, or train (a training step)")
    else:
        p.add_argument("collective", nargs="?", default=default,
                       help=f"one of {', '.join(ALGORITHMS)} (default {default})")
    p.add_argument("--algo", default=None, help="ring (default), hd, ps, hier, nccl-ring, nccl-tree for "
                   "all-reduce; ring or tree for broadcast; nccl: what NCCL 2.20.3's tuner picks on a GPU "
                   "cluster --topology. For sim train, how its collectives are timed: nccl or ring (the "
                   "closed form); default nccl where the topology names its GPUs (nodes:MxG,gpu=..., or a "
                   "TOML [cluster]), else ring (also on nodes:MxG without gpu=, dgx-a100, dgx-h100)")
    p.add_argument("--nccl-algo", help="with --algo nccl: allow only these NCCL algorithms, as NCCL_ALGO "
                   "(ring, tree, nvls, nvls_tree; ^x excludes)")
    p.add_argument("--nccl-proto", help="with --algo nccl: allow only these protocols, as NCCL_PROTO "
                   "(ll, ll128, simple; ^x excludes)")
    p.add_argument("--explain", action="store_true", help="with --algo nccl: print every candidate "
                   "(algorithm/protocol) and NCCL's predicted time for it")
    p.add_argument("--ranks", "-n", type=int_at_least(1),
                   help="number of ranks N (default: the --topology's, else 4)")
    p.add_argument("--size", "-s", type=byte_size, default=parse_size("64MiB"),
                   help="buffer size S: 4096, 1.5e6, 64MiB, 1GB (default 64MiB)")
    p.add_argument("--pieces", type=int_at_least(1), default=4, help="pipelined broadcast pieces (default 4)")
    p.add_argument("--root", type=int_at_least(0), default=0, help="broadcast root (default 0)")
    p.add_argument("--nodes", type=int_at_least(1), help="M for the hierarchical all-reduce (N = M x G)")


def program_from_args(a: argparse.Namespace) -> Program:
    return build(a.collective, a.algo, a.ranks, a.size, pieces=a.pieces, root=a.root, nodes=a.nodes)


def _check_nccl_flags(a: argparse.Namespace) -> None:
    if a.algo is None and a.collective == "train":
        return  # sim train picks its default from the topology, then checks (cmd_train)
    if a.algo != "nccl" and (a.nccl_algo or a.nccl_proto or a.explain):
        raise UsageError("--nccl-algo, --nccl-proto and --explain go with --algo nccl")


def _explain(ch, out=None) -> None:
    print(f"NCCL {ch.to_dict()['nccl_version']} tuner, {ch.collective} of {ch.nbytes} B: candidates "
          "(predicted time; '-' = disabled)", file=out)
    for name, t in sorted(ch.candidates.items(), key=lambda kv: (kv[1] is None, kv[1] or 0)):
        mark = "  <- chosen" if name == f"{ch.algo}/{ch.proto}" else ""
        print(f"  {name:<18}{'-' if t is None else format_seconds(t):>12}{mark}", file=out)


def nccl_notes(notes) -> None:
    """What NCCL did with --nccl-algo / --nccl-proto (re-enabled ring and tree, restored the ring),
    one line each on stderr: NCCL overrides these sets itself, so they are notes, not errors."""
    for line in notes:
        print(f"note: {line}", file=sys.stderr)


def cmd_sim_nccl(a: argparse.Namespace) -> int:
    from rankscope.simulator.nccl import nccl_collective, simulate_nccl
    from rankscope.simulator.units import format_seconds as fs

    topo = topology_from_args(a, a.ranks)
    prog, ch = nccl_collective(a.collective, topo, a.size, algo=a.nccl_algo, proto=a.nccl_proto)
    nccl_notes(ch.notes)
    sim, view, seconds = simulate_nccl(prog, topo, gamma=a.gamma)
    if a.out:
        from rankscope.simulator.trace import write_trace

        write_trace(a.out, sim.to_trace(prog, view, meta={"nccl": ch.to_dict(), "simulated_seconds": seconds}))
    from rankscope.simulator.costs import algbw, busbw

    # what nccl-tests would report: the schedule plus NCCL's base latency, over the whole message
    rates = {"algbw": algbw(prog.message_bytes, seconds),
             "busbw": busbw(ch.collective, prog.nranks, prog.message_bytes, seconds)}
    if a.json:
        doc = sim_json(prog, a.limit, sim, view)
        doc["nccl"] = {**ch.to_dict(), "simulated": seconds, **rates}
        dump_json(doc)
        return 0
    print(f"NCCL {ch.to_dict()['nccl_version']} on {topo.name}: {ch.collective} of {ch.nbytes} B -> {ch.algo}/"
          f"{ch.proto}, {ch.nchannels} channels; NCCL predicts {fs(ch.predicted)}, simulated {fs(seconds)} "
          f"(schedule {fs(sim.makespan)} + base latency)")
    if a.explain:
        _explain(ch)
    print()
    print_sim(prog, a.limit, sim, view)
    print(f"with NCCL's base latency: {fs(seconds)}, algbw {rates['algbw'] / 1e9:.2f} GB/s, busbw "
          f"{rates['busbw'] / 1e9:.2f} GB/s (as nccl-tests reports; `sweep --algos nccl` shows these)")
    if a.out:
        print(f"trace written to {a.out}")
    return 0


def cmd_sim(a: argparse.Namespace) -> int:
    from rankscope.simulator.engine import simulate

    resolve_ranks(a, 4)
    if a.collective != "train":
        a.algo = a.algo or "ring"
    _check_nccl_flags(a)
    if a.collective == "train":
        return cmd_train(a)
    check_output(a.out)
    if a.algo == "nccl":
        return cmd_sim_nccl(a)
    _check_collective_size(a, a.algo)
    prog = program_from_args(a)
    topo = topology_from_args(a, prog.nranks)
    sim = simulate(prog, topo, gamma=a.gamma)
    if a.out:
        from rankscope.simulator.trace import write_trace

        write_trace(a.out, sim.to_trace(prog, topo))
    if a.json:
        dump_json(sim_json(prog, a.limit, sim, topo))
    else:
        print_sim(prog, a.limit, sim, topo)
        if a.out:
            print(f"trace written to {a.out}")
    return 0


def _check_collective_size(a: argparse.Namespace, algo: str) -> None:
    """Refuse, before building, a program that would not fit (rankscope.simulator.limits)."""
    from rankscope.simulator import limits

    if a.pieces > limits.MAX_PIECES:
        raise UsageError(f"--pieces {a.pieces} is over the limit of {limits.MAX_PIECES}")
    ops = limits.collective_ops(a.collective, algo, a.ranks, pieces=a.pieces, nodes=a.nodes)
    limits.check_ops(ops, f"{a.collective} ({algo}) on {a.ranks} ranks")


def cmd_info(a: argparse.Namespace) -> int:
    from rankscope.simulator.trace import read_trace, trace_summary

    tr = read_trace(a.file, salvage=a.salvage)
    doc = trace_summary(tr)
    doc["file"] = a.file
    topo = tr.meta.get("topology")
    doc["topology"] = topo.get("name") if isinstance(topo, dict) else topo
    if a.json:
        dump_json(doc)
        return 0
    what = f"{doc['collective'] or 'program'}" + (f" ({doc['algo']})" if doc["algo"] else "")
    print(f"{a.file}: {what} on {doc['nranks']} ranks, {doc['n_ops']} ops, executor {doc['executor']}, "
          f"clock {doc['clock']}, topology {doc['topology']}")
    print(f"  complete: {'yes' if doc['complete'] else 'NO (partial trace)'}; ops that never ran: "
          f"{doc['ops_never_ran']}; link rows: {doc['n_link_rows']}")
    print(f"  makespan {format_seconds(doc['makespan'])}; bytes moved {doc['bytes_moved']} "
          f"({format_bytes(doc['bytes_moved'])})")
    n = doc["nranks"]
    if n <= 64:
        print("  rank        sent    received")
        for r in range(n):
            print(f"  {r:<4} {doc['bytes_sent'][r]:>11} {doc['bytes_received'][r]:>11}")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from rankscope.simulator.sweep import default_sizes, run_sweep

    resolve_ranks(a, 8)
    coll = a.collective
    algos = [x for x in a.algos.split(",") if x] if a.algos else (
        ["ring", "hd", "ps"] if coll in ("all-reduce", "allreduce") else
        ["ring", "tree"] if coll == "broadcast" else ["ring"])
    if a.min < 1:
        raise UsageError(f"--min must be >= 1 byte (sizes double from it), got {a.min}")
    for algo in algos:
        _check_collective_size(a, algo)
    sizes = default_sizes(a.min, a.max)
    if not sizes:
        raise UsageError(f"no sizes between --min {a.min} and --max {a.max}")
    topo = topology_from_args(a, a.ranks)
    if (a.nccl_algo or a.nccl_proto) and "nccl" not in algos:
        raise UsageError("--nccl-algo and --nccl-proto go with --algos nccl")
    if "nccl" in algos and (a.nccl_algo or a.nccl_proto):
        from rankscope.simulator.collectives import ALIASES
        from rankscope.simulator.nccl import tuning

        nccl_notes(tuning(topo, a.nccl_algo, a.nccl_proto).choose(ALIASES.get(coll, coll), sizes[0]).notes)
    rows = run_sweep(coll, algos, a.ranks, sizes, topo, gamma=a.gamma, pieces=a.pieces, nodes=a.nodes,
                     progress=False if (a.json or a.csv) else None, nccl_algo=a.nccl_algo, nccl_proto=a.nccl_proto,
                     jobs=a.jobs or os.cpu_count() or 1)
    if a.json:
        dump_json({"collective": coll, "nranks": a.ranks, "topology": topo.name, "gamma": a.gamma,
               "rows": [r.__dict__ for r in rows]})
        return 0
    if a.csv:
        nccl = "nccl" in algos  # two more columns: NCCL's choice and its predicted seconds
        print("size,algo,seconds,algbw_GBps,busbw_GBps,method" + (",nccl_choice,nccl_predicted_seconds" if nccl else ""))
        for r in rows:
            pred = "" if r.predicted is None else f"{r.predicted:.9g}"
            print(f"{r.size},{r.algo},{r.seconds:.9g},{r.algbw / 1e9:.6g},{r.busbw / 1e9:.6g},{r.method}"
                  + (f",{r.choice},{pred}" if nccl else ""))
        return 0
    if "nccl" in algos:
        return _print_nccl_sweep(coll, a, topo, rows, sizes, [x for x in algos if x != "nccl"])
    links = f" ({link_words(topo.meta)})" if link_words(topo.meta) else ""
    print(f"# rankscope sweep: {coll} on {a.ranks} ranks, topology {topo.name}{links}, gamma {a.gamma} s/B "
          f"(simulated; GB/s = 1e9 B/s as nccl-tests)")
    print("#" + " " * 13 + "".join(f"{algo:^27}" for algo in algos))
    print(f"#{'size (B)':>12}" + "".join(f"{'time (us)':>11}{'algbw':>8}{'busbw':>8}" for _ in algos))
    by = {(r.size, r.algo): r for r in rows}
    for size in sizes:
        cells = "".join(f"{by[size, x].seconds * 1e6:>11.2f}{by[size, x].algbw / 1e9:>8.2f}"
                        f"{by[size, x].busbw / 1e9:>8.2f}" for x in algos)
        print(f" {size:>12}{cells}")
    return 0


def _print_nccl_sweep(coll: str, a: argparse.Namespace, topo, rows, sizes, others) -> int:
    from rankscope.simulator.costs import busbw

    print(f"# rankscope sweep: {coll} on {a.ranks} ranks, topology {topo.name}; nccl = NCCL 2.20.3's tuner: its "
          "choice (algorithm/protocol/channels), its predicted time and the simulated time of that schedule "
          "(GB/s = 1e9 B/s as nccl-tests)")
    head = f"#{'size (B)':>12}  {'nccl choice':<20}{'NCCL (us)':>11}{'sim (us)':>11}{'busbw NCCL':>11}{'busbw sim':>10}"
    print(head + "".join(f"{x + ' (us)':>14}{'busbw':>8}" for x in others))
    by = {(r.size, r.algo): r for r in rows}
    for size in sizes:
        r = by[size, "nccl"]
        cells = "".join(f"{by[size, x].seconds * 1e6:>14.2f}{by[size, x].busbw / 1e9:>8.2f}" for x in others)
        print(f" {size:>12}  {r.choice:<20}{r.predicted * 1e6:>11.2f}{r.seconds * 1e6:>11.2f}"
              f"{busbw(coll, a.ranks, size, r.predicted) / 1e9:>11.2f}{r.busbw / 1e9:>10.2f}{cells}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from rankscope.simulator.compare import compare
    from rankscope.simulator.trace import read_trace

    from . import nccl

    if nccl.wants_table(a):  # a nccl-tests import against a simulation (rankscope/cli/nccl.py)
        return nccl.cmd_compare_table(a)
    if not 0 < a.threshold < float("inf"):  # also NaN
        raise UsageError(f"--threshold must be > 0 (percent), got {a.threshold}")
    if a.plot:
        from rankscope.simulator.plot import check_plot_path

        check_plot_path(a.plot)
    ta, tb = read_trace(a.a), read_trace(a.b)
    cmp = compare(ta, tb, names=(a.a, a.b), threshold=a.threshold / 100)
    slow = [name for name, t in ((a.a, ta), (a.b, tb)) if t.info.check_steps]
    notes = [f"{name} was measured with --check-steps (provenance checked after every step): its step times "
             "include that check and are not the collective's" for name in slow]
    if a.plot:
        from rankscope.simulator.plot import plot_steps

        plot_steps(cmp, a.plot)
    s = cmp.summary()
    if a.json:
        dump_json({"summary": s, "by_class": cmp.by_class(), "by_step": cmp.by_step(), "notes": notes})
        return 0

    def pct(x: float | None, sign: str = "+") -> str:
        return "-" if x is None or x != x else f"{x:{sign}.1%}"
    print(f"model {s['model']}  vs  measured {s['measured']}  (joined on {s['joined_on']}, {s['ops']} ops)")
    print(f"\n{'class':<16}{'ops':>7}{'model':>11}{'measured':>11}{'error':>9}")
    for c in cmp.by_class():
        print(f"{c['class']:<16}{c['ops']:>7}{format_seconds(c['model']):>11}{format_seconds(c['measured']):>11}"
              f"{pct(c['error']):>9}")
    steps = cmp.by_step()
    print(f"\n{'step':>6}{'model':>11}{'measured':>11}{'error':>9}")
    for st in steps if len(steps) <= 64 else steps[:32]:
        print(f"{st['step']:>6}{format_seconds(st['model']):>11}{format_seconds(st['measured']):>11}"
              f"{pct(st['error']):>9}")
    if len(steps) > 64:
        print(f"   ... {len(steps) - 32} more steps (--json prints all)")
    med, p90 = s["median_abs_error"], s["p90_abs_error"]
    print(f"\nper-op |error|: median {pct(med, '')}, p90 {pct(p90, '')}; total {format_seconds(s['total_model'])} "
          f"vs {format_seconds(s['total_measured'])} ({pct(s['total_error'])})")
    fd = s["first_divergence_step"]
    print(f"first divergence beyond {s['threshold']:.0%}: " + ("none" if fd is None else f"step {fd}"))
    for note in notes:
        print(f"note: {note}")
    if a.plot:
        print(f"plot written to {a.plot}")
    return 0


def register(sub) -> None:
    """Add ``sim``, ``info``, ``sweep`` and ``compare`` to the subparsers ``sub``."""
    s = sub.add_parser("sim", help="simulate a collective: steps, provenance grid, bytes moved")
    add_collective_args(s)
    add_topology_args(s)
    add_train_args(s)
    s.add_argument("--out", "-o", help="write the simulated trace to this file (Arrow IPC, trace format v1)")
    s.add_argument("--limit", type=int_at_least(0), default=4096,
                   help="print at most this many ops (default 4096; 0 = all)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_sim)
    i = sub.add_parser("info", help="summarise a trace file")
    i.add_argument("file")
    i.add_argument("--salvage", action="store_true", help="load the readable prefix of a truncated trace")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=cmd_info)
    w = sub.add_parser("sweep", help="nccl-tests-style table of simulated time, algbw, busbw over sizes")
    w.add_argument("collective", nargs="?", default="all-reduce", help="default all-reduce")
    w.add_argument("--algos", help="comma-separated (default: every algorithm of the collective but hier); "
                   "nccl: NCCL's choice per size, its predicted and the simulated time")
    w.add_argument("--ranks", "-n", type=int_at_least(1),
                   help="number of ranks (default: the --topology's, else 8)")
    w.add_argument("--min", type=byte_size, default=8, help="smallest size (default 8B)")
    w.add_argument("--max", type=byte_size, default=1 << 30, help="largest size (default 1GiB); sizes double")
    w.add_argument("--pieces", type=int_at_least(1), default=4, help="pipelined broadcast pieces")
    w.add_argument("--nodes", type=int_at_least(1), help="M for --algos hier")
    w.add_argument("--nccl-algo", help="with --algos nccl: allow only these NCCL algorithms (as NCCL_ALGO)")
    w.add_argument("--nccl-proto", help="with --algos nccl: allow only these protocols (as NCCL_PROTO)")
    w.add_argument("--jobs", "-j", type=int_at_least(1),
                   help="with --algos nccl: processes for its size groups (default: the machine's cores; the rows "
                        "are the same)")
    add_topology_args(w)
    fmt = w.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    w.set_defaults(func=cmd_sweep)
    c = sub.add_parser("compare", help="simulated against measured: per op class and step, error in %%")
    c.add_argument("a", help="a trace (the model if it is simulated)")
    c.add_argument("b", nargs="?", help="a trace of the same program (for a nccl-tests import: a sweep JSON, "
                   "or none with --topology)")
    c.add_argument("--threshold", type=float, default=10.0, help="divergence threshold in %% (default 10)")
    c.add_argument("--plot", help="write per-step bars to this PNG (needs matplotlib)")
    c.add_argument("--json", action="store_true", help="print JSON instead of text")
    c.add_argument("--topology", "-t", help="for a nccl-tests import: the topology to simulate it on (a preset or "
                   "a .toml file, e.g. from 'rankscope import nccl-log'); see rankscope/cli/nccl.py")
    c.set_defaults(func=cmd_compare)
