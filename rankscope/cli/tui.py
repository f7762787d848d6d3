"""The verbs that open the TUI: ``demo`` (also bare ``rankscope``), ``replay`` and ``learn``.
Textual is imported only by the handlers, when a screen is asked for; ``demo --text`` and
``learn`` without a lesson never import it. ``learn`` runs what a lesson measures for real (gloo
ranks, through :mod:`rankscope.real`) here, in the CLI layer, and hands the results to the TUI as
data: the TUI never imports torch."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from rankscope.simulator.errors import RankscopeError

from .args import DEFAULT_LINKS, add_topology_args, dump_json, resolve_ranks, topology_from_args
from .sim import add_collective_args, program_from_args


def _demo_trace(a: argparse.Namespace):
    from rankscope.simulator.engine import simulate

    resolve_ranks(a, 8)
    a.algo = a.algo or "ring"
    if a.algo == "nccl":
        from rankscope.simulator.errors import UsageError

        raise UsageError("demo opens a rankscope builder's program; for NCCL's choice run "
                         "`rankscope sim COLLECTIVE --algo nccl --topology T --out f.trace` and `rankscope replay f.trace`")
    prog = program_from_args(a)
    topo = topology_from_args(a, prog.nranks)
    return prog, topo, simulate(prog, topo, gamma=a.gamma)


def cmd_demo(a: argparse.Namespace) -> int:
    """A simulated collective (default: ring all-reduce on 8 ranks, 64 MiB, switch:8) in the TUI;
    ``--text``: printed as ``sim`` prints it."""
    prog, topo, sim = _demo_trace(a)
    if a.text:
        from rankscope.simulator.sim_report import print_sim

        print_sim(prog, 0, sim, topo)
        return 0
    from rankscope.tui.app import demo_main

    return demo_main(sim.to_trace(prog, topo, {"example": "demo"}))


def cmd_replay(a: argparse.Namespace) -> int:
    from rankscope.tui.app import replay_main

    return replay_main(a.files, salvage=a.salvage)


def measure_for(needs: tuple[str, ...], timeout: float = 120.0) -> dict[str, Any]:
    """Run what a lesson measures for real (see :data:`rankscope.tui.lessons.model.Lesson.needs`):
    ``dp_equivalence`` (N gloo ranks against one device) and ``gloo_ring`` (the ring all-reduce on
    4 gloo ranks, as a trace). What cannot run is said in ``<name>_error``."""
    data: dict[str, Any] = {}
    for need in needs:
        print(f"rankscope: running {need} on gloo ranks for the lesson ...", file=sys.stderr)
        try:
            data[need] = _measure(need, timeout)
        except ImportError as e:
            if not (e.name or "").startswith("torch"):
                raise
            data[f"{need}_error"] = f"torch is not installed here ({e.name} missing)"
        except RankscopeError as e:
            data[f"{need}_error"] = str(e)
    return data


def _measure(need: str, timeout: float) -> Any:
    if need == "dp_equivalence":
        from rankscope.real.dp_equivalence import run

        return run(timeout=timeout)
    if need == "gloo_ring":
        from rankscope.real.encoding import Encoding, aligned_program
        from rankscope.real.runner import run_programs
        from rankscope.simulator.trace import read_trace
        from rankscope.tui.lessons.measured import RING

        coll, algo, n, nbytes = RING
        prog = aligned_program(coll, algo, n, nbytes, Encoding(n).elem_bytes)
        with tempfile.TemporaryDirectory(prefix="rankscope-learn-") as d:
            out = os.path.join(d, "ring.trace")
            run_programs([prog], [out], nranks=n, backend="gloo", timeout=timeout)
            return read_trace(out)
    raise RankscopeError(f"nothing measures {need!r}")


def cmd_learn(a: argparse.Namespace) -> int:
    from rankscope.tui.lessons import LESSONS, lesson

    if a.name is None:
        if a.json:
            dump_json([{"name": x.name, "title": x.title, "summary": x.summary, "runs": list(x.needs)}
                       for x in LESSONS])
            return 0
        print("Lessons, in order (rankscope learn NAME opens one):")
        for i, x in enumerate(LESSONS, 1):
            real = " [runs on gloo ranks]" if x.needs else ""
            print(f"  {i}. {x.name:<18} {x.title}: {x.summary}{real}")
        return 0
    les = lesson(a.name)
    data = {} if a.no_run else measure_for(les.needs)
    if a.text:
        print_walk(les, data)
        return 0
    from rankscope.tui.app import learn_main

    return learn_main(les.name, data)


def print_walk(les, data: dict[str, Any]) -> None:
    """The lesson on stdout, page by page, every question with its answer: teacher's notes."""
    from rankscope.tui.lessons.run import LessonRun

    run = LessonRun(les, data)
    print(f"{les.title}\n")
    for i in range(len(run.pages)):
        run.open(i)
        print(f"-- page {i + 1}/{len(run.pages)}: {run.page.title}\n{run.narration()}\n")
        while run.replay.can_forward:
            q = run.pending()
            if q is None:
                run.forward()
                continue
            v = run.answer("")
            print(f"Q (before step {q.step}): {q.prompt}\nA: {v.right}. {v.reason}\n")
        print(f"at the end:\n{run.narration()}\n")


def register(sub) -> None:
    """Add ``demo``, ``replay`` and ``learn`` to the subparsers ``sub``."""
    d = sub.add_parser("demo", help="a simulated collective in the TUI, sim's arguments (default: ring "
                       "all-reduce on 8 ranks, 64MiB, switch:8; also bare `rankscope`)")
    add_collective_args(d, default="all-reduce")
    add_topology_args(d)
    d.add_argument("--text", action="store_true", help="print the simulation instead of opening the TUI")
    d.set_defaults(func=cmd_demo)
    r = sub.add_parser("replay", help="step through a trace in the TUI; two traces of one program side by side")
    r.add_argument("files", nargs="+", metavar="FILE", help="one trace, or two to compare (e.g. simulated, measured)")
    r.add_argument("--salvage", action="store_true", help="open the readable prefix of a truncated trace")
    r.set_defaults(func=cmd_replay)
    e = sub.add_parser("learn", help="guided lessons: list them, or open one in the TUI",
                       description="Guided lessons, from one device to measured collectives. Their pages are "
                       f"simulated on switch:N with the default links ({DEFAULT_LINKS}) unless a page "
                       "names another topology (nodes:MxG for two levels); two lessons also run on gloo ranks.")
    e.add_argument("name", nargs="?", help="the lesson to open (none: list the lessons)")
    e.add_argument("--text", action="store_true", help="print the lesson with every answer instead of opening it")
    e.add_argument("--no-run", action="store_true", help="do not run the lesson's real gloo ranks")
    e.add_argument("--json", action="store_true", help="with no NAME: the list as JSON")
    e.set_defaults(func=cmd_learn)
