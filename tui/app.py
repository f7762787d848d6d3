"""The Textual app and the entry points the ``rankscope`` CLI calls.

- :func:`replay_main` opens one trace (the replay screen) or two traces of one program (the
  compare screen). Every file is read and checked before the app starts: a bad or missing file,
  or two traces that join neither op by op nor collective by collective, print one line to
  stderr and return 2, and nothing opens.
- :func:`demo_main` simulates the ring all-reduce on 8 ranks, 64 MiB, on ``switch:8`` and opens
  it: the built-in default.

``python -m rankscope.tui.app FILE [FILE2] [--salvage]`` does what ``rankscope replay`` does; with no file
it runs the demo.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from rankscope.simulator.compare import CompareError, compare
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.trace import Trace, read_trace
from rankscope.simulator.units import format_bytes

from . import heap, training
from .replay import Replay
from .screens.compare import CompareScreen
from .screens.cursor import CursorScreen
from .screens.replay import ReplayScreen
from .screens.side import SideBySideScreen


def describe(trace: Trace, name: str) -> str:
    """The subtitle: file, program, size, topology and clock (never the machine: snapshots and
    screenshots must not leak host names)."""
    p = trace.program
    size = format_bytes(p.meta["nbytes"]) if "nbytes" in p.meta else ""
    what = p.describe()
    if p.meta.get("kind") == "train":  # a training step: name the model and the strategy
        what = f"{p.meta.get('model', 'a model')} {p.meta.get('strategy', '')} training step on {p.nranks} ranks"
    topo = trace.meta.get("topology")
    where = topo.get("name") if isinstance(topo, dict) else None
    clock = f"{trace.meta.get('clock')} clock"
    return " · ".join(x for x in (name, what, size, where, clock) if x)


class RankscopeApp(App):
    """Shows one screen: a :class:`ReplayScreen` or a :class:`CompareScreen`."""

    TITLE = "rankscope"

    def __init__(self, screen: CursorScreen) -> None:
        super().__init__()
        self._first = screen

    def get_default_screen(self) -> Screen:
        return self._first

    def on_mount(self) -> None:
        self.call_after_refresh(heap.settle)  # once the first screen is drawn (see tui.heap)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """An SVG of the screen into the user's downloads folder when there is one, else the
        current folder (Textual's default folder need not exist: a fresh account, a container, CI).
        Written here, synchronously, with a notification: Textual's own delivery writes from a
        thread that then waits on the app, so quitting right after it hung the process at exit."""
        if path is None:
            from platformdirs import user_downloads_path

            downloads = user_downloads_path()
            path = str(downloads) if downloads.is_dir() else os.getcwd()
        saved = self.save_screenshot(filename, path, time_format)
        self.notify(f"Saved screenshot to {saved}", title="Screenshot saved")
        return saved

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, then one per key of the screen, so the palette can do all that
        the keys do."""
        yield from super().get_system_commands(screen)
        if isinstance(screen, CursorScreen):
            for b in screen.key_bindings():
                if b.action != "app.quit":
                    yield SystemCommand(b.description.capitalize(), f"key: {b.key}",
                                        partial(self.run_action, b.action, screen))


def replay_app(traces: list[Trace], names: list[str]) -> RankscopeApp:
    """The app for one trace (replay) or two (compare); RankscopeError when they cannot be
    shown (ops not sorted by step, two different programs)."""
    if len(traces) == 1:
        return RankscopeApp(ReplayScreen(Replay(traces[0]), describe(traces[0], names[0])))
    try:
        return RankscopeApp(CompareScreen(compare(traces[0], traces[1], (names[0], names[1]))))
    except CompareError:
        if traces[0].program.nranks != traces[1].program.nranks or \
                training.is_training(traces[0].program) or training.is_training(traces[1].program):
            raise
        # two different collectives on the same ranks: side by side on one clock
        return RankscopeApp(SideBySideScreen(Replay(traces[0]), Replay(traces[1]), (names[0], names[1])))


def replay_main(paths: list[str], *, salvage: bool = False) -> int:
    """Open one trace, or two side by side; 2 and one line on stderr when that cannot be done."""
    try:
        if len(paths) not in (1, 2):
            raise RankscopeError(f"replay takes one trace, or two to compare; got {len(paths)}")
        traces = [read_trace(p, salvage=salvage) for p in paths]
        app = replay_app(traces, [os.path.basename(p) for p in paths])
    except RankscopeError as e:
        print(f"rankscope: error: {e}", file=sys.stderr)
        return 2
    app.run()
    return 0


def learn_app(name: str, data: dict | None = None) -> RankscopeApp:
    """The app for lesson ``name``, with what the CLI measured for it in ``data``."""
    from .lessons import lesson
    from .lessons.run import LessonRun
    from .screens.lesson import LessonScreen

    return RankscopeApp(LessonScreen(LessonRun(lesson(name), data)))


def learn_main(name: str, data: dict | None = None) -> int:
    try:
        app = learn_app(name, data)
    except RankscopeError as e:
        print(f"rankscope: error: {e}", file=sys.stderr)
        return 2
    app.run()
    return 0


def demo_trace() -> Trace:
    """The demo: ring all-reduce on 8 ranks, 64 MiB, simulated on ``switch:8``."""
    from rankscope.simulator.collectives import build
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.topology import parse_topology

    prog = build("all-reduce", "ring", 8, 64 << 20)
    topo = parse_topology("switch:8")
    return simulate(prog, topo).to_trace(prog, topo, {"example": "demo"})


def demo_main(trace: Trace | None = None) -> int:
    """Open ``trace`` (``rankscope demo``'s simulation), by default :func:`demo_trace`."""
    replay_app([trace if trace is not None else demo_trace()], ["demo"]).run()
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--salvage"]
    sys.exit(replay_main(args, salvage="--salvage" in sys.argv[1:]) if args else demo_main())
