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
from .errors import RankscopeError, UsageError
from .program import OpKind, Program
from .provenance import Layout, layout
from .traffic import traffic
from .units import format_bytes, parse_size

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


def steps_report(prog: Program, limit: int, grid: bool) -> tuple[list[dict[str, Any]], int]:
    """One dict per step (transfers and, when ``grid``, the provenance after it); ops left out."""
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
        if grid:
            before = lay.counts(0).copy()
            lay.advance_to(hi)
            entry["provenance"] = _grid(lay)
            entry["changed"] = [list(map(int, rc)) for rc in np.argwhere(lay.counts(0) != before)]
        steps.append(entry)
    return steps, prog.n_ops - shown


def print_sim(prog: Program, limit: int, out=None) -> None:
    out = out or sys.stdout
    n, S = prog.nranks, prog.buffers[0].nbytes if prog.buffers else 0
    grid = n <= GRID_MAX_RANKS
    steps, left = steps_report(prog, limit, grid)
    w = out.write
    w(f"{prog.describe()}, {format_bytes(S)} ({S} bytes): {prog.n_steps} steps, "
      f"{int(prog.is_transfer.sum())} transfers\n")
    if grid:
        w("\ninitial provenance: the ranks whose input each segment s holds (* = changed by the step)\n")
        w("\n".join(_grid_lines(_grid(layout(prog, 0)), n, set())) + "\n")
    for st in steps:
        phase = f"  {st['phase']} {st['phase_step']}/{st['phase_steps']}" if st["phase"] else ""
        w(f"\nstep {st['step']}{phase}\n")
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


def sim_json(prog: Program, limit: int) -> dict[str, Any]:
    steps, left = steps_report(prog, limit, prog.nranks <= GRID_MAX_RANKS)
    tr = traffic(prog)
    return {"program": {**prog.meta, "n_ops": prog.n_ops, "n_steps": prog.n_steps,
                        "phases": [{"name": p.name, "first_step": p.first_step, "nsteps": p.nsteps}
                                   for p in prog.phases]},
            "steps": steps, "ops_not_shown": left,
            "bytes": {"sent": tr.sent.tolist(), "received": tr.received.tolist(),
                      "pairs": tr.pairs.tolist(), "total": tr.total, "messages": tr.messages}}


# -- verbs --------------------------------------------------------------------------------------
def _add_collective_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("collective", help=f"one of {', '.join(ALGORITHMS)}")
    p.add_argument("--algo", default="ring", help="ring (default), hd, ps, hier for all-reduce; "
                   "ring or tree for broadcast")
    p.add_argument("--ranks", "-n", type=_int_at_least(1), default=4, help="number of ranks N (default 4)")
    p.add_argument("--size", "-s", type=_size, default=parse_size("64MiB"),
                   help="buffer size S: 4096, 1.5e6, 64MiB, 1GB (default 64MiB)")
    p.add_argument("--pieces", type=_int_at_least(1), default=4, help="pipelined broadcast pieces (default 4)")
    p.add_argument("--root", type=_int_at_least(0), default=0, help="broadcast root (default 0)")
    p.add_argument("--nodes", type=_int_at_least(1), help="M for the hierarchical all-reduce (N = M x G)")


def program_from_args(a: argparse.Namespace) -> Program:
    return build(a.collective, a.algo, a.ranks, a.size, pieces=a.pieces, root=a.root, nodes=a.nodes)


def cmd_sim(a: argparse.Namespace) -> int:
    prog = program_from_args(a)
    if a.json:
        json.dump(sim_json(prog, a.limit), sys.stdout)
        sys.stdout.write("\n")
    else:
        print_sim(prog, a.limit)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    prog = build("all-reduce", "ring", 8, parse_size("64MiB"))
    print_sim(prog, 0)
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rankscope", description="See what distributed training does to memory and the "
                "network: simulate collective schedules rank by rank.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    s = sub.add_parser("sim", help="simulate a collective: steps, provenance grid, bytes moved")
    _add_collective_args(s)
    s.add_argument("--limit", type=_int_at_least(0), default=4096,
                   help="print at most this many ops (default 4096; 0 = all)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_sim)
    d = sub.add_parser("demo", help="the built-in default: ring all-reduce on 8 ranks (also bare `rankscope`)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    try:
        args = parser.parse_args(argv or ["demo"])
        return args.func(args)
    except RankscopeError as e:
        print(f"rankscope: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
