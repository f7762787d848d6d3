"""The ``rankscope`` command. Every verb that prints a table takes ``--json``.

Errors that come from bad input (:class:`~simulator.errors.RankscopeError`, argparse usage) print
one line on stderr and exit with code 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .collectives import ALGORITHMS, build
from .costs import algbw, busbw
from .errors import RankscopeError, UsageError, check_output
from .program import OpKind, Program
from .provenance import Layout, layout
from .traffic import traffic
from .units import format_bytes, format_count, format_dec_bytes, format_seconds, parse_size

GRID_MAX_RANKS = 16


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int_at_least(lo: int) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return conv


# -- formatting -------------------------------------------------------------------------------
def format_ranks(ranks: Sequence[int], nranks: int) -> str:
    """``{0-3,5}``; ``all`` when every rank contributed, ``-`` when none did."""
    if len(ranks) == 0:
        return "-"
    if len(ranks) == nranks and nranks > 1:
        return "all"
    runs, start, prev = [], ranks[0], ranks[0]
    for r in list(ranks[1:]) + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}" if prev > start + 1 else f"{start},{prev}")
        if r is not None:
            start = prev = r
    return "{" + ",".join(runs) + "}"


def _grid(lay: Layout) -> list[list[list[int]]]:
    n = lay.program.nranks
    return [[lay.contributors(0, r, s) for s in range(lay.bounds[0].size - 1)] for r in range(n)]


def _grid_lines(grid: list[list[list[int]]], nranks: int, changed: set[tuple[int, int]]) -> list[str]:
    cells = [[format_ranks(c, nranks) + ("*" if (r, s) in changed else " ") for s, c in enumerate(row)]
             for r, row in enumerate(grid)]
    width = max([len(c) for row in cells for c in row] + [4])
    nseg = len(cells[0]) if cells else 0
    head = "          " + " ".join(f"{'s' + str(s) + ' ':>{width}}" for s in range(nseg))
    return [head] + [f"  rank {r:<3}" + " ".join(f"{c:>{width}}" for c in row) for r, row in enumerate(cells)]


def _transfer_dict(prog: Program, op: int) -> dict[str, Any]:
    c = int(prog.arg[op])
    return {"op": op, "src": int(prog.rank[op]), "dst": int(prog.peer[op]), "chunk": c,
            "buffer": prog.buffers[int(prog.chunk_buf[c])].name, "offset": int(prog.chunk_off[c]),
            "nbytes": int(prog.chunk_len[c]), "kind": "reduce" if prog.kind[op] == OpKind.REDUCE else "copy"}


def steps_report(prog: Program, limit: int, grid: bool, sim=None) -> tuple[list[dict[str, Any]], int]:
    """One dict per step (transfers, the step's time window when ``sim`` is given and, when
    ``grid``, the provenance after it); and the number of ops left out."""
    bounds = prog.step_bounds()
    lay = layout(prog, 0)
    steps, shown = [], 0
    for s in range(prog.n_steps):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        if limit and shown >= limit:
            break
        ops = range(lo, min(hi, lo + limit - shown) if limit else hi)
        shown += len(ops)
        ph = prog.phase_of(s)
        entry: dict[str, Any] = {"step": s, "phase": ph[0].name if ph else None,
                                 "phase_step": ph[1] if ph else None, "phase_steps": ph[0].nsteps if ph else None,
                                 "transfers": [_transfer_dict(prog, op) for op in ops
                                               if prog.kind[op] <= OpKind.COPY]}
        if sim is not None and hi > lo:
            entry["t0"], entry["t1"] = float(sim.start[lo:hi].min()), float(sim.end[lo:hi].max())
        if grid:
            before = lay.counts(0).copy()
            lay.advance_to(hi)
            entry["provenance"] = _grid(lay)
            entry["changed"] = [list(map(int, rc)) for rc in np.argwhere(lay.counts(0) != before)]
        steps.append(entry)
    return steps, prog.n_ops - shown


def timing_summary(prog: Program, sim, topo) -> dict[str, Any]:
    s = prog.buffers[0].nbytes if prog.buffers else 0
    t = sim.makespan
    coll = prog.meta.get("collective", "")
    return {"topology": topo.name, "method": sim.info["method"], "gamma": sim.info["gamma"],
            "seconds": t, "algbw": algbw(s, t), "busbw": busbw(coll, prog.nranks, s, t) if coll else None}


def print_sim(prog: Program, limit: int, sim=None, topo=None, out=None) -> None:
    out = out or sys.stdout
    n, S = prog.nranks, prog.buffers[0].nbytes if prog.buffers else 0
    grid = n <= GRID_MAX_RANKS
    steps, left = steps_report(prog, limit, grid, sim)
    w = out.write
    w(f"{prog.describe()}, {format_bytes(S)} ({S} bytes): {prog.n_steps} steps, "
      f"{int(prog.is_transfer.sum())} transfers\n")
    if grid:
        w("\ninitial provenance: the ranks whose input each segment s holds (* = changed by the step)\n")
        w("\n".join(_grid_lines(_grid(layout(prog, 0)), n, set())) + "\n")
    for st in steps:
        phase = f"  {st['phase']} {st['phase_step']}/{st['phase_steps']}" if st["phase"] else ""
        when = f"  [{format_seconds(st['t0'])} .. {format_seconds(st['t1'])}]" if "t0" in st else ""
        w(f"\nstep {st['step']}{phase}{when}\n")
        for t in st["transfers"]:
            rng = f"[{t['offset']}..{t['offset'] + t['nbytes']})"
            w(f"  {t['src']:>4} -> {t['dst']:<4} chunk {t['chunk']:<4} {rng:<24} "
              f"{format_bytes(t['nbytes']):>8}  {t['kind']}\n")
        if grid:
            w("\n".join(_grid_lines(st["provenance"], n, {tuple(c) for c in st["changed"]})) + "\n")
    if left:
        w(f"\n... {left} more ops not shown (--limit 0 prints all)\n")
    tr = traffic(prog)
    w("\nbytes moved per rank\n  rank        sent    received\n")
    for r in range(n) if n <= 64 else ():
        w(f"  {r:<4} {int(tr.sent[r]):>11} {int(tr.received[r]):>11}\n")
    w(f"  total {tr.total} bytes in {tr.messages} messages; per rank sent min {int(tr.sent.min())} "
      f"max {int(tr.sent.max())}\n")
    if sim is not None:
        ts = timing_summary(prog, sim, topo)
        bus = f", busbw {ts['busbw'] / 1e9:.2f} GB/s" if ts["busbw"] is not None else ""
        w(f"\nsimulated on {ts['topology']} ({ts['method']}): {format_seconds(ts['seconds'])}, "
          f"algbw {ts['algbw'] / 1e9:.2f} GB/s{bus}\n")


def sim_json(prog: Program, limit: int, sim=None, topo=None) -> dict[str, Any]:
    steps, left = steps_report(prog, limit, prog.nranks <= GRID_MAX_RANKS, sim)
    tr = traffic(prog)
    return {"timing": timing_summary(prog, sim, topo) if sim is not None else None,
            "program": {**prog.meta, "n_ops": prog.n_ops, "n_steps": prog.n_steps,
                        "phases": [{"name": p.name, "first_step": p.first_step, "nsteps": p.nsteps}
                                   for p in prog.phases]},
            "steps": steps, "ops_not_shown": left,
            "bytes": {"sent": tr.sent.tolist(), "received": tr.received.tolist(),
                      "pairs": tr.pairs.tolist(), "total": tr.total, "messages": tr.messages}}


# -- verbs --------------------------------------------------------------------------------------
def _add_collective_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("collective", help=f"one of {', '.join(ALGORITHMS)}, or train (a training step)")
    p.add_argument("--algo", default="ring", help="ring (default), hd, ps, hier for all-reduce; "
                   "ring or tree for broadcast")
    p.add_argument("--ranks", "-n", type=_int_at_least(1),
                   help="number of ranks N (default: the --topology's, else 4)")
    p.add_argument("--size", "-s", type=_size, default=parse_size("64MiB"),
                   help="buffer size S: 4096, 1.5e6, 64MiB, 1GB (default 64MiB)")
    p.add_argument("--pieces", type=_int_at_least(1), default=4, help="pipelined broadcast pieces (default 4)")
    p.add_argument("--root", type=_int_at_least(0), default=0, help="broadcast root (default 0)")
    p.add_argument("--nodes", type=_int_at_least(1), help="M for the hierarchical all-reduce (N = M x G)")


def program_from_args(a: argparse.Namespace) -> Program:
    return build(a.collective, a.algo, a.ranks, a.size, pieces=a.pieces, root=a.root, nodes=a.nodes)


def _add_topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", "-t", help="ring:N, switch:N (default), dgx-a100, dgx-h100, nodes:MxG, "
                   "or a .toml file")
    p.add_argument("--bw", help="per-link bandwidth override for ring/switch, e.g. 25GB/s")
    p.add_argument("--lat", help="per-link latency override for ring/switch, e.g. 5us")
    p.add_argument("--gamma", type=float, default=0.0, help="reduction cost in seconds per byte (default 0)")


def resolve_ranks(a: argparse.Namespace, default: int) -> int:
    """``--ranks``, else the rank count of a ``--topology`` that has one (``dgx-h100``: 8, a TOML
    file, ``switch:16``), else ``default``; set on ``a`` and returned."""
    if a.ranks is None:
        a.ranks = default
        if a.topology:
            from .errors import TopologyError
            from .topology import parse_topology

            try:
                a.ranks = parse_topology(a.topology, bw=a.bw, lat=a.lat).nranks
            except TopologyError:  # a spec without N ("ring"): the default; a bad one fails later
                pass
    return a.ranks


def topology_from_args(a: argparse.Namespace, nranks: int):
    from .topology import parse_topology

    spec = a.topology or f"switch:{nranks}"
    return parse_topology(spec, nranks, bw=a.bw, lat=a.lat)


def _dump(doc: Any) -> None:
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")


def _gb(x: float) -> str:
    return format_dec_bytes(x)


def _train_config(a: argparse.Namespace, strategy: str):
    from .training import TrainConfig

    return TrainConfig(strategy=strategy, precision=a.precision, bucket_bytes=int(a.bucket_mb * 2**20),
                       fsdp_version=a.fsdp_version, reshard_after_forward=not a.no_reshard_after_forward,
                       forward_prefetch=a.forward_prefetch, backward_prefetch=not a.no_backward_prefetch)


def cmd_train(a: argparse.Namespace) -> int:
    from .engine import simulate
    from .models import parse_device, parse_model
    from .train_report import train_report
    from .training import STRATEGIES, compile_step

    if a.out and a.compare_strategies:
        raise UsageError("--out writes one trace: give --strategy S instead of --compare-strategies")
    check_output(a.out)
    model = parse_model(a.model, a.micro_batch)
    device = parse_device(a.device, a.mfu)
    topo = topology_from_args(a, a.ranks)
    strategies = STRATEGIES if a.compare_strategies else (a.strategy,)
    reports = []
    for strat in strategies:
        prog = compile_step(model, a.ranks, _train_config(a, strat), device)
        sim = simulate(prog, topo, gamma=a.gamma)
        if a.out and not a.compare_strategies:
            from .trace import write_trace

            write_trace(a.out, sim.to_trace(prog, topo))
        reports.append(train_report(prog, sim))
    if a.json:
        _dump({"model": model.name, "params": model.params, "nranks": a.ranks, "topology": topo.name,
               "reports": reports if a.compare_strategies else reports[0]})
        return 0
    print(f"{model.name}: {format_count(model.params)} parameters, micro-batch {model.micro_batch}, {a.precision}, "
          f"{a.ranks} ranks on {topo.name}, device {device.name} at {device.efficiency:.0%} of peak")
    if a.compare_strategies:
        print(f"\n{'strategy':<9}{'model state':>12}{'peak':>9}{'step':>10}{'exposed comm':>13}"
              f"{'sent/rank':>11}  peak at")
        for rep in reports:
            r0 = rep["rows"][0]
            print(f"{rep['program']['strategy']:<9}{_gb(r0['model_state']):>12}{_gb(r0['peak']):>9}"
                  f"{format_seconds(r0['step_time']):>10}{format_seconds(r0['exposed_comm']):>13}"
                  f"{_gb(r0['bytes_sent']):>11}  {r0['peak_at']}")
        return 0
    rep = reports[0]
    pm = rep["program"]
    print(f"strategy {pm['strategy']}" + (f" (FSDP{pm['fsdp_version']}, reshard_after_forward="
          f"{pm['reshard_after_forward']}, forward_prefetch={pm['forward_prefetch']}, backward_prefetch="
          f"{pm['backward_prefetch']})" if pm["strategy"] == "zero3" else "") +
          f"; padding {pm['padding_bytes']} B; {rep['collectives_per_rank']} collectives per rank; "
          f"step {format_seconds(rep['step_time'])}")
    print(f"\n{'rank':>5}{'params':>9}{'grads':>9}{'optim':>9}{'state':>9}{'acts':>9}{'unshard':>9}"
          f"{'peak':>9}{'exposed':>10}{'sent':>9}  peak at")
    rows = rep["rows"]
    shown = rows if len(rows) <= 16 else rows[:8] + rows[-1:]
    for r in shown:
        if len(rows) > 16 and r is rows[-1]:
            print(f"{'...':>5}")
        print(f"{r['rank']:>5}{_gb(r['param']):>9}{_gb(r['grad']):>9}{_gb(r['optim']):>9}"
              f"{_gb(r['model_state']):>9}{_gb(r['activation']):>9}"
              f"{_gb(r['param_unsharded'] + r['grad_unsharded']):>9}{_gb(r['peak']):>9}"
              f"{format_seconds(r['exposed_comm']):>10}{_gb(r['bytes_sent']):>9}  {r['peak_at']}")
    if a.out:
        print(f"trace written to {a.out}")
    return 0


def cmd_sim(a: argparse.Namespace) -> int:
    from .engine import simulate

    resolve_ranks(a, 4)
    if a.collective == "train":
        return cmd_train(a)
    check_output(a.out)
    prog = program_from_args(a)
    topo = topology_from_args(a, prog.nranks)
    sim = simulate(prog, topo, gamma=a.gamma)
    if a.out:
        from .trace import write_trace

        write_trace(a.out, sim.to_trace(prog, topo))
    if a.json:
        _dump(sim_json(prog, a.limit, sim, topo))
    else:
        print_sim(prog, a.limit, sim, topo)
        if a.out:
            print(f"trace written to {a.out}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .trace import read_trace, trace_summary

    tr = read_trace(a.file, salvage=a.salvage)
    doc = trace_summary(tr)
    doc["file"] = a.file
    topo = tr.meta.get("topology")
    doc["topology"] = topo.get("name") if isinstance(topo, dict) else topo
    if a.json:
        _dump(doc)
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
    from .sweep import default_sizes, run_sweep

    resolve_ranks(a, 8)
    coll = a.collective
    algos = [x for x in a.algos.split(",") if x] if a.algos else (
        ["ring", "hd", "ps"] if coll in ("all-reduce", "allreduce") else
        ["ring", "tree"] if coll == "broadcast" else ["ring"])
    sizes = default_sizes(a.min, a.max)
    if not sizes:
        raise UsageError(f"no sizes between --min {a.min} and --max {a.max}")
    topo = topology_from_args(a, a.ranks)
    rows = run_sweep(coll, algos, a.ranks, sizes, topo, gamma=a.gamma, pieces=a.pieces, nodes=a.nodes,
                     progress=False if (a.json or a.csv) else None)
    if a.json:
        _dump({"collective": coll, "nranks": a.ranks, "topology": topo.name, "gamma": a.gamma,
               "rows": [r.__dict__ for r in rows]})
        return 0
    if a.csv:
        print("size,algo,seconds,algbw_GBps,busbw_GBps,method")
        for r in rows:
            print(f"{r.size},{r.algo},{r.seconds:.9g},{r.algbw / 1e9:.6g},{r.busbw / 1e9:.6g},{r.method}")
        return 0
    print(f"# rankscope sweep: {coll} on {a.ranks} ranks, topology {topo.name}, gamma {a.gamma} s/B "
          f"(simulated; GB/s = 1e9 B/s as nccl-tests)")
    print("#" + " " * 13 + "".join(f"{algo:^27}" for algo in algos))
    print(f"#{'size (B)':>12}" + "".join(f"{'time (us)':>11}{'algbw':>8}{'busbw':>8}" for _ in algos))
    by = {(r.size, r.algo): r for r in rows}
    for size in sizes:
        cells = "".join(f"{by[size, x].seconds * 1e6:>11.2f}{by[size, x].algbw / 1e9:>8.2f}"
                        f"{by[size, x].busbw / 1e9:>8.2f}" for x in algos)
        print(f" {size:>12}{cells}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from .compare import compare
    from .trace import read_trace

    if a.threshold <= 0:
        raise UsageError(f"--threshold must be > 0 (percent), got {a.threshold}")
    if a.plot:
        from .plot import check_plot_path

        check_plot_path(a.plot)
    cmp = compare(read_trace(a.a), read_trace(a.b), names=(a.a, a.b), threshold=a.threshold / 100)
    if a.plot:
        from .plot import plot_steps

        plot_steps(cmp, a.plot)
    s = cmp.summary()
    if a.json:
        _dump({"summary": s, "by_class": cmp.by_class(), "by_step": cmp.by_step()})
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
    if a.plot:
        print(f"plot written to {a.plot}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """The built-in default: ring all-reduce on 8 ranks, opened in the TUI (``--text``: printed)."""
    if not a.text:
        from tui.app import demo_main  # the TUI layer; imported only when it is asked for

        return demo_main()
    from .engine import simulate
    from .topology import parse_topology

    prog = build("all-reduce", "ring", 8, parse_size("64MiB"))
    topo = parse_topology("switch:8")
    print_sim(prog, 0, simulate(prog, topo), topo)
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from tui.app import replay_main

    return replay_main(a.files, salvage=a.salvage)


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rankscope", description="See what distributed training does to memory and the "
                "network: simulate collective schedules rank by rank.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    s = sub.add_parser("sim", help="simulate a collective: steps, provenance grid, bytes moved")
    _add_collective_args(s)
    _add_topology_args(s)
    t = s.add_argument_group("training step (sim train)")
    t.add_argument("--model", default="mlp:4x1024", help="mlp:LxW, params:P[xUNITS], gpt2, gpt2-medium, "
                   "llama2-7b, llama2-13b, llama2-70b (default mlp:4x1024)")
    t.add_argument("--strategy", default="zero3", help="ddp, zero1, zero2, zero3 (= fsdp); default zero3")
    t.add_argument("--compare-strategies", action="store_true", help="one row per strategy")
    t.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    t.add_argument("--micro-batch", type=_int_at_least(1), help="samples per rank (default 32 for mlp, else 1)")
    t.add_argument("--device", default="h100", help="a100, h100, cpu (default h100)")
    t.add_argument("--mfu", type=float, help="fraction of peak FLOP/s reached (default 0.5)")
    t.add_argument("--fsdp-version", type=int, choices=(1, 2), default=2)
    t.add_argument("--no-reshard-after-forward", action="store_true")
    t.add_argument("--forward-prefetch", action="store_true")
    t.add_argument("--no-backward-prefetch", action="store_true")
    t.add_argument("--bucket-mb", type=float, default=25.0, help="DDP/ZeRO bucket size in MiB (default 25)")
    s.add_argument("--out", "-o", help="write the simulated trace to this file (Arrow IPC, trace format v1)")
    s.add_argument("--limit", type=_int_at_least(0), default=4096,
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
    w.add_argument("--algos", help="comma-separated (default: every algorithm of the collective but hier)")
    w.add_argument("--ranks", "-n", type=_int_at_least(1),
                   help="number of ranks (default: the --topology's, else 8)")
    w.add_argument("--min", type=_size, default=8, help="smallest size (default 8B)")
    w.add_argument("--max", type=_size, default=1 << 30, help="largest size (default 1GiB); sizes double")
    w.add_argument("--pieces", type=_int_at_least(1), default=4, help="pipelined broadcast pieces")
    w.add_argument("--nodes", type=_int_at_least(1), help="M for --algos hier")
    _add_topology_args(w)
    fmt = w.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    w.set_defaults(func=cmd_sweep)
    c = sub.add_parser("compare", help="simulated against measured: per op class and step, error in %%")
    c.add_argument("a", help="a trace (the model if it is simulated)")
    c.add_argument("b", help="a trace of the same program")
    c.add_argument("--threshold", type=float, default=10.0, help="divergence threshold in %% (default 10)")
    c.add_argument("--plot", help="write per-step bars to this PNG (needs matplotlib)")
    c.add_argument("--json", action="store_true", help="print JSON instead of text")
    c.set_defaults(func=cmd_compare)
    d = sub.add_parser("demo", help="the built-in default: ring all-reduce on 8 ranks in the TUI (also bare "
                       "`rankscope`)")
    d.add_argument("--text", action="store_true", help="print the simulation instead of opening the TUI")
    d.set_defaults(func=cmd_demo)
    r = sub.add_parser("replay", help="step through a trace in the TUI; two traces of one program side by side")
    r.add_argument("files", nargs="+", metavar="FILE", help="one trace, or two to compare (e.g. simulated, measured)")
    r.add_argument("--salvage", action="store_true", help="open the readable prefix of a truncated trace")
    r.set_defaults(func=cmd_replay)
    # the other layers add their verbs; importing their CLI modules imports neither torch nor textual
    from real.cli import register as register_real
    from .interop.cli import register as register_interop

    register_real(sub)
    register_interop(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["real", "train"]:  # its own parser: see real/train_cli.py
        from real.train_cli import train_main

        return train_main(argv[2:])
    parser = make_parser()
    try:
        args = parser.parse_args(argv or ["demo"])
        return args.func(args)
    except RankscopeError as e:
        print(f"rankscope: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as e:  # an output that could not be written after all (disk full, ...)
        print(f"rankscope: error: {e.strerror or e}" + (f": {e.filename!r}" if e.filename else ""),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
