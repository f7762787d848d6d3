"""The app under Pilot: step, seek and play through a 4-rank ring all-reduce and read what the
widgets show; keys that make no sense are disabled; the command palette can do what the keys do;
the entry points fail with one line; tui/ never imports torch."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_tui_data import measured_copy, ring4_trace, training_trace
from textual.geometry import Region

from rankscope.simulator.trace import TraceWriter, write_trace
from rankscope.tui.app import RankscopeApp, demo_trace, replay_app, replay_main
from rankscope.tui.widgets.grid import ProvenanceGrid
from rankscope.tui.widgets.table import VirtualTable

pytestmark = pytest.mark.anyio  # async tests run under anyio's pytest plugin, on asyncio
ROOT = Path(__file__).resolve().parents[1]
SIZE = (120, 40)
RING4 = ring4_trace()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def rendered(widget) -> list[str]:
    """The widget's lines as drawn, without the side borders."""
    return [s.text.strip("│") for s in widget.render_lines(Region(0, 0, *widget.outer_size))]


def status(app) -> str:
    return app.screen.query_one("#status").content.plain


def detail(app) -> str:
    return app.screen.query_one("#detail").content.plain


async def test_stepping_shows_provenance_changes_and_counters():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        grid = screen.query_one(ProvenanceGrid)
        assert grid.mode == "sets"
        assert "start: no step run yet" in status(app)
        assert "{0}" in rendered(grid)[2] and "{3}" in rendered(grid)[5]
        await pilot.press("right", "right", "right")
        assert screen.replay.step == 2
        lines = rendered(grid)
        assert lines[1].split() == ["s0", "s1", "s2", "s3"]
        assert lines[2].split() == ["r0", "all", "{0,2,3}", "{0,3}", "{0}"]
        assert lines[5].split() == ["r3", "{1-3}", "{2,3}", "{3}", "all"]
        assert sorted(map(tuple, grid.state.changed.tolist())) == [(0, 0), (1, 1), (2, 2), (3, 3)]
        text = status(app)
        assert "step 2 of 0-5" in text and "reduce-scatter 3/3" in text
        assert "time 2.04ms (simulated)" in text and "moved 192MiB (50%)" in text
        transfers = screen.query_one("#transfers", VirtualTable)
        assert transfers.rows.n == 4
        assert transfers.rows.cells(0)[:4] == ("8", "0 -> 1", "1", "16MiB")
        ranks = screen.query_one("#ranks", VirtualTable)
        assert ranks.rows.cells(3) == ("r3", "48MiB", "48MiB")
        assert screen.query_one("#links", VirtualTable).rows.n == 8
        await pilot.press("shift+right")
        assert screen.replay.step == 5 and "all-gather 3/3" in status(app)
        assert "algbw 16.42 GB/s\nbusbw 24.63 GB/s" in status(app)
        await pilot.press("shift+left")
        assert screen.replay.step == -1


async def test_keys_that_make_no_sense_are_disabled():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.check_action("step", (-1,)) is None
        assert screen.check_action("home", ()) is None
        assert screen.check_action("step", (1,)) is True
        assert screen.check_action("view", ()) is None  # no training view for a collective
        await pilot.press("left")
        assert screen.replay.step == -1
        await pilot.press("end")
        assert screen.replay.step == 5
        assert screen.check_action("step", (1,)) is None and screen.check_action("play", ()) is None
        assert screen.check_action("step", (-10,)) is True
        await pilot.press("right")
        assert screen.replay.step == 5
        await pilot.press("home")
        assert screen.replay.step == -1


async def test_play_runs_to_the_end_and_stops():
    """Play's ticks are called here, not waited for: no wall-clock time in a unit test."""
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        intervals = []

        class Timer:  # a timer that never fires by itself
            def stop(self) -> None:
                pass

        screen.set_interval = lambda seconds, tick: intervals.append((seconds, tick)) or Timer()
        await pilot.press("space")
        assert screen.playing and "▶ 2 steps/s" in screen.sub_title
        await pilot.press("plus", "plus", "plus", "plus")
        assert screen.speed == 6 and "▶ 32 steps/s" in screen.sub_title
        assert intervals[-1][0] == pytest.approx(1 / 32)
        for _ in range(7):  # what the timer does on each tick
            intervals[-1][1]()
            screen._tick()
        await pilot.pause()
        assert screen.replay.step == 5 and not screen.playing
        await pilot.press("minus")
        assert screen.speed == 5


async def test_go_to_a_step_or_a_time_and_find_an_op():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("g", *"3", "enter")
        assert (screen.replay.mode, screen.replay.step) == ("step", 3)
        await pilot.press("g", *"1.5ms", "enter")  # step 1 ends at 1.36ms, step 2 at 2.04ms
        assert (screen.replay.mode, screen.replay.step) == ("time", 1)
        assert "time 1.5ms" in status(app)
        await pilot.press("slash", *"13", "enter")
        assert (screen.replay.step, screen.op) == (3, 13)
        assert detail(app).startswith("op 13: rank 1 -> 2 chunk 1 (copy, 16MiB)")
        assert "critical path (4 ops): op 2 -> op 7 -> op 8 -> op 13" in detail(app)
        await pilot.press("g", *"99", "enter")
        assert screen.replay.step == 3  # refused, with a notification
        await pilot.press("g", "escape")
        assert screen.replay.step == 3


async def test_picking_a_cell_shows_who_wrote_it_and_why_its_rank_idles():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right", "right")
        grid = app.screen.query_one(ProvenanceGrid)
        grid.focus()
        await pilot.press("down", "l", "l")  # after step 1: rank 1, segment 2
        assert grid.cursor == (1, 2)
        text = detail(app)
        assert "rank 1 · s2" in text and "3 of 4 contributions: {0,1,3}" in text
        assert "last written by op 4: rank 0 -> 1 chunk 2 (reduce, 16MiB)" in text
        assert ("rank 1 is not waiting: op 9: rank 1 -> 2 chunk 2 (reduce, 16MiB) is ready; "
                "it waited for chunk 2 from rank 0 (op 4)") in text
        await pilot.click(ProvenanceGrid, offset=(1 + 3 + 3 * 10, 4))  # border, label, 3 cells

        assert grid.cursor == (2, 3)


async def test_tab_moves_between_panels_and_zoom_cycles():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        first = app.focused
        await pilot.press("tab")
        assert app.focused is not first
        grid = app.screen.query_one(ProvenanceGrid)
        await pilot.press("z")
        assert (grid.zoom, grid.mode) == ("sets", "sets")
        await pilot.press("z")
        assert grid.mode == "bars"
        await pilot.press("z")
        assert grid.mode == "heat"


async def test_every_key_is_in_the_command_palette():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for title in ("Next", "Prev", "+10 steps", "-10 steps", "Start", "End", "Play/pause",
                      "Faster", "Slower", "Go to", "Find op", "Help", "Zoom", "View", "Quit"):
            assert title in commands, title
        await commands["Next"].callback()
        await commands["Next"].callback()
        await pilot.pause()
        assert app.screen.replay.step == 1
        await commands["Help"].callback()
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "ReplayScreen"


async def test_training_view_follows_the_cursor():
    app = replay_app([training_trace()], ["fsdp.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.view == "training"
        await pilot.press("right", "right", "right", "right")
        assert screen.replay.step == 3
        gantt = rendered(screen.query_one("#gantt"))
        assert "fwd0" in gantt[2] and "bwd0" in gantt[2] and ">1 c" in gantt[3]
        memory = "\n".join(rendered(screen.query_one("#memory")))
        assert "peak 41.9MB" in memory and "41.9MB (peak 41.9MB)" in memory  # 40 MiB, in sim train's units
        await pilot.press("v")
        assert screen.view == "collective" and screen.query_one(ProvenanceGrid).state.nranks == 2


async def test_a_simulated_training_step_shows_its_collectives():
    """`sim train` programs communicate through COLLECTIVE ops: they are on the comm lanes, in the
    list, in the bytes moved, and named in the detail pane."""
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.program import OpKind
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.training import TrainConfig, compile_step
    from rankscope.tui.deps import describe_op

    prog = compile_step(parse_model("mlp:2x256"), 2, TrainConfig(strategy="zero3"), parse_device("h100"))
    topo = parse_topology("switch:2")
    trace = simulate(prog, topo).to_trace(prog, topo)
    colls = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    app = replay_app([trace], ["zero3.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.view == "training"
        await pilot.press("end")
        gantt = "\n".join(rendered(screen.query_one("#gantt")))
        assert "all-gather" in gantt or "all-ga" in gantt
        assert screen.query_one("#ttransfers", VirtualTable).rows.n == colls.size
        r = screen.replay
        assert r.sent.sum() == r.received.sum() == r.total_bytes == prog.op_bytes.sum() > 0
    assert describe_op(prog, int(colls[0])).startswith(f"op {colls[0]}: all-gather of 'layer0.unsharded' on rank 0")


async def test_compare_steps_through_the_divergence():
    app = replay_app([RING4, measured_copy(RING4)], ["sim.trace", "measured.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        summary = screen.query_one("#summary").content.plain
        assert "first divergence at step 3 (-33.3%, threshold 10%)" in summary  # 1/1.5 - 1
        await pilot.press("d")
        assert screen.step == 3
        ops = screen.query_one("#ops", VirtualTable)
        assert ops.rows.cells(0) == ("12", "0 -> 1 c0 copy", "681us", "1.02ms", "-33.3%")
        await pilot.press("end", "right")
        assert screen.step == 5 and screen.check_action("step", (1,)) is None


def test_replay_main_prints_one_line_for_a_bad_file(tmp_path, capsys):
    assert replay_main([str(tmp_path / "missing.trace")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trace file at" in err and "missing.trace" in err
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"not a trace at all")
    assert replay_main([str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a rankscope trace" in err


def test_replay_main_refuses_two_different_programs(tmp_path, capsys):
    a, b = tmp_path / "a.trace", tmp_path / "b.trace"
    write_trace(a, RING4)
    write_trace(b, training_trace())
    assert replay_main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.trace and b.trace hold different programs" in err
    assert replay_main([str(a)] * 3) == 2
    assert "one trace, or two" in capsys.readouterr().err


def test_replay_main_opens_a_crashed_trace_only_with_salvage(tmp_path, capsys, monkeypatch):
    opened = []
    monkeypatch.setattr(RankscopeApp, "run", lambda app: opened.append(app))
    w = TraceWriter(tmp_path / "run.trace", RING4.program, RING4.meta)
    w.append(np.arange(12), RING4.start[:12], RING4.end[:12], RING4.lane[:12])
    shutil.copy(tmp_path / "run.trace.partial", tmp_path / "crash.trace")  # as a crash leaves it
    w.close()
    assert replay_main([str(tmp_path / "crash.trace")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and "--salvage" in err and not opened
    assert replay_main([str(tmp_path / "crash.trace")], salvage=True) == 0
    (app,) = opened
    assert app.get_default_screen().replay.n_steps == 3  # steps 0..2 were recorded


async def test_the_demo_shows_every_set_of_its_8_ranks():
    app = replay_app([demo_trace()], ["demo"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("end")
        grid = app.screen.query_one(ProvenanceGrid)
        assert grid.mode == "sets" and app.screen.replay.phase() == "all-gather 7/7"
        assert rendered(grid)[9].split() == ["r7"] + ["all"] * 8


def test_python_m_tui_app_fails_cleanly_on_a_bad_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rankscope.tui.app", str(tmp_path / "nope.trace")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("rankscope: error: no trace file")


@pytest.mark.parametrize("module", ["rankscope.tui.replay", "rankscope.tui.training",
                                    "rankscope.tui.deps", "rankscope.tui.links"])
def test_models_import_without_textual(module):
    code = f"import sys, {module}; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


async def test_imported_traces_open_at_once_with_or_without_memory():
    """A measured FSDP run (profiler import: ~1000 allocations) and a flight-recorder import (no
    memory events at all) both open in the training view."""
    from rankscope.simulator.interop.flight_recorder import import_flight_recorder
    from rankscope.simulator.interop.kineto_import import import_kineto

    fixtures = ROOT / "tests" / "fixtures"
    kineto = import_kineto([str(fixtures / "gloo_fsdp")])
    fr = import_flight_recorder([str(fixtures / "nccl_fr")])
    for trace, has_memory in ((kineto, True), (fr, False)):
        app = replay_app([trace], ["imported.trace"])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("end", "home")
            assert app.screen.view == "training"
            chart = "\n".join(rendered(app.screen.query_one("#memory")))
            assert ("peak" in chart) == has_memory
            assert ("no memory events in this trace" in chart) != has_memory


async def test_a_simulated_step_and_a_measured_run_open_side_by_side():
    """A simulated FSDP step against a measured run of 2 steps: different programs, same collectives.
    The compare screen joins them collective by collective (the measured run's last step), as
    `rankscope compare` does."""
    from rankscope.real.train_compare import train_config
    from rankscope.simulator.compare import compare
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.interop.kineto_import import import_kineto
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.training import compile_step

    measured = import_kineto([str(ROOT / "tests" / "fixtures" / "gloo_fsdp")])
    prog = compile_step(parse_model("mlp:2x128"), 2, train_config("fsdp", 25 << 20), parse_device("cpu"))  # the fixture's model
    topo = parse_topology("switch:2")
    sim = simulate(prog, topo).to_trace(prog, topo)
    c = compare(measured, sim, ("real.trace", "sim.trace"))
    assert c.names == ("sim.trace", "real.trace") and c.seq is not None and c.n_steps == 6
    app = replay_app([sim, measured], ["sim.trace", "real.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right")
        ops = app.screen.query_one("#ops", VirtualTable).rows
        assert ops.n == 2 and ops.cells(0)[1] == "all-gather on r0"
        assert "6 collectives per rank, joined on the collective sequence" in app.screen.query_one("#summary").content.plain
