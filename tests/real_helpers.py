"""Helpers for the real-backend tests (no tests here): run a verb in-process, list our children."""

from __future__ import annotations

import os

from rankscope.cli.args import Parser
from rankscope.cli.real import register


def run_cli(argv: list[str]) -> int:
    """Parse ``argv`` with the ``real``/``calibrate`` verbs and run the handler (in this process:
    ranks fork from here). Bad input raises, as the rankscope CLI expects of handlers."""
    p = Parser(prog="rankscope")
    register(p.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser))
    args = p.parse_args(argv)
    return args.func(args)


def children() -> list[int]:
    """Pids of live (not zombie) processes whose parent is this process, from /proc."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(name))
    return out
