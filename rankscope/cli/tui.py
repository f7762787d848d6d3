"""The verbs that open the TUI: ``demo`` (also bare ``rankscope``) and ``replay``. Textual is
imported only by the handlers, when a screen is asked for; ``demo --text`` never imports it."""

from __future__ import annotations

import argparse


def cmd_demo(a: argparse.Namespace) -> int:
    """The built-in default: ring all-reduce on 8 ranks, opened in the TUI (``--text``: printed)."""
    if not a.text:
        from rankscope.tui.app import demo_main

        return demo_main()
    from rankscope.simulator.collectives import build
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.sim_report import print_sim
    from rankscope.simulator.topology import parse_topology

    prog = build("all-reduce", "ring", 8, 64 << 20)
    topo = parse_topology("switch:8")
    print_sim(prog, 0, simulate(prog, topo), topo)
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from rankscope.tui.app import replay_main

    return replay_main(a.files, salvage=a.salvage)


def register(sub) -> None:
    """Add ``demo`` and ``replay`` to the subparsers ``sub``."""
    d = sub.add_parser("demo", help="the built-in default: ring all-reduce on 8 ranks in the TUI (also bare "
                       "`rankscope`)")
    d.add_argument("--text", action="store_true", help="print the simulation instead of opening the TUI")
    d.set_defaults(func=cmd_demo)
    r = sub.add_parser("replay", help="step through a trace in the TUI; two traces of one program side by side")
    r.add_argument("files", nargs="+", metavar="FILE", help="one trace, or two to compare (e.g. simulated, measured)")
    r.add_argument("--salvage", action="store_true", help="open the readable prefix of a truncated trace")
    r.set_defaults(func=cmd_replay)
