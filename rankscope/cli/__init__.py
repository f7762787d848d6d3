"""The ``rankscope`` command: the top layer, the only package that knows every other one.

One module per group of verbs, each with a ``register(sub)`` that adds its verbs to the
subparsers ``sub``; :data:`VERBS` says which module holds which verb, so that ``rankscope sim``
builds the parser of :mod:`.sim` alone. No verb module imports torch or textual at import time:
their handlers do, once a run or a screen is asked for.

Every verb that prints a table takes ``--json``. Bad input (a
:class:`~rankscope.simulator.errors.RankscopeError`, an argparse usage error) prints one line on
stderr and exits with code 2; a run that failed (a rank died, a mismatch) exits with 1.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from rankscope.simulator.errors import RankscopeError

from .args import Parser

VERBS: dict[str, str] = {
    "sim": "sim", "info": "sim", "sweep": "sim", "compare": "sim",
    "demo": "tui", "replay": "tui", "learn": "tui",
    "real": "real", "calibrate": "real", "validate": "real",
    "import": "interop", "export": "interop",
    "whatif": "whatif",
}
"""verb -> the module of this package that registers it."""


def make_parser(verb: str | None = None) -> Parser:
    """The ``rankscope`` parser: with the verbs of ``verb``'s module only, or (None, or a verb that
    is not known, so that argparse names the choices) with every verb."""
    p = Parser(prog="rankscope", description="See what distributed training does to memory and the "
               "network: simulate collective schedules rank by rank, run them on real ranks, replay them.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    modules = [VERBS[verb]] if verb in VERBS else list(dict.fromkeys(VERBS.values()))
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def run() -> int:
    """The console script: :func:`main`, then, where the compiled event loop was loaded, the exit
    without the interpreter's teardown. numba's compiled code costs 0.2-0.4 s to tear down at exit
    (LLVM's state; measured on this project's 2-core machine), longer than many a command's work;
    nothing of rankscope's needs it: outputs are written and closed (trace files atomically, before
    their command returns), so once stdout and stderr are flushed the process can end. Not after a
    real run (torch loaded), whose library cleans up at exit."""
    code = main()
    if "numba" in sys.modules and "torch" not in sys.modules:  # torch's exit handlers stay
        import os

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, OSError):
            pass
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv) or ["demo"]
    try:
        args = make_parser(argv[0]).parse_args(argv)
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
