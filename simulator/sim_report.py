"""The report of one simulated collective, as ``rankscope sim`` prints it (text) or returns it
(``--json``): per step the transfers, the phase, the simulated time window and, for N <= 16, the
provenance grid after the step; bytes moved per rank; time, algbw and busbw.

The training step's report is its neighbour, :mod:`.train_report`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .costs import algbw, busbw
from .program import OpKind, Program
from .provenance import Layout, layout
from .traffic import traffic
from .units import format_bytes, format_ranks, format_seconds

GRID_MAX_RANKS = 16
"""Above this many ranks the provenance grid is not printed (a row per rank would not fit)."""


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
            "nbytes": int(prog.chunk_len[c]), "kind": prog.op_label(op)}


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
    s = prog.message_bytes
    t = sim.makespan
    coll = prog.meta.get("collective", "")
    return {"topology": topo.name, "method": sim.info["method"], "gamma": sim.info["gamma"],
            "seconds": t, "algbw": algbw(s, t), "busbw": busbw(coll, prog.nranks, s, t) if coll else None}


def link_words(meta: dict[str, Any] | None) -> str:
    """The links of a ``ring:N`` or ``switch:N`` topology (its ``meta``), as ``--help`` states
    the defaults: ``25 GB/s and 5 us per link; alpha = 2 links = 10 us`` (on a switch a message
    crosses two links, rank -> switch -> rank; on a ring, one to the next rank); '' for others."""
    meta = meta or {}
    preset = meta.get("preset")
    if preset not in ("ring", "switch") or "bw" not in meta or "lat" not in meta:
        return ""
    bw, lat = float(meta["bw"]), float(meta["lat"])
    hops = 2 if preset == "switch" else 1
    return (f"{bw / 1e9:g} GB/s and {lat * 1e6:g} us per link; alpha = {hops} link{'s' if hops > 1 else ''} = "
            f"{hops * lat * 1e6:g} us" + (" (rank -> switch -> rank)" if hops > 1 else " (to the next rank)"))


def print_sim(prog: Program, limit: int, sim=None, topo=None, out=None) -> None:
    out = out or sys.stdout
    n, S = prog.nranks, prog.message_bytes
    grid = n <= GRID_MAX_RANKS
    steps, left = steps_report(prog, limit, grid, sim)
    w = out.write
    w(f"{prog.describe()}, {format_bytes(S)} ({S} bytes): {prog.n_steps} steps, "
      f"{int(prog.is_transfer.sum())} transfers\n")
    if grid:
        w("\ninitial provenance: the ranks whose input each segment s holds (* = changed by the step)\n")
        if len(prog.buffers) > 1:
            b0 = prog.buffers[0]
            w(f"(grids show buffer '{b0.name}', {format_bytes(b0.nbytes)}, 1 of {len(prog.buffers)}: each channel "
              f"has its own slice of the message; in `rankscope replay`, b shows the next buffer)\n")
        w("\n".join(_grid_lines(_grid(layout(prog, 0)), n, set())) + "\n")
    for st in steps:
        phase = f"  {st['phase']} {st['phase_step']}/{st['phase_steps']}" if st["phase"] else ""
        when = f"  [{format_seconds(st['t0'])} .. {format_seconds(st['t1'])}]" if "t0" in st else ""
        w(f"\nstep {st['step']}{phase}{when}\n")
        for t in st["transfers"]:
            rng = (t["buffer"] if len(prog.buffers) > 1 else "") + f"[{t['offset']}..{t['offset'] + t['nbytes']})"
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
        if link_words(topo.meta):
            w(f"  links: {link_words(topo.meta)}\n")


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
