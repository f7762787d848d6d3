"""The training view's defects, each reproduced on a real simulated (or imported) trace: one
vocabulary of memory categories and one memory timeline from simulator to TUI; the Gantt shows
every collective and zooms; the lanes and the memory chart share one time axis with ticks; the
cursor panel keeps busbw; the grid's footer names the mode it draws; the selection follows the
step; training traces are titled by model and strategy; memory in the CLI's units."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_tui_app import SIZE, rendered

from rankscope.simulator.engine import simulate
from rankscope.simulator.memory import CATEGORIES, memory_timeline
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.train_report import train_report
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.units import format_dec_bytes
from rankscope.tui import training
from rankscope.tui.app import describe, replay_app
from rankscope.tui.widgets.memory import COLOURS, colour

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def fsdp_trace(model: str = "mlp:4x1024", n: int = 4, strategy: str = "fsdp"):
    """What ``sim train --model mlp:4x1024 --ranks 4 --strategy fsdp --device cpu --out f.trace`` writes."""
    prog = compile_step(parse_model(model), n, TrainConfig(strategy={"fsdp": "zero3"}.get(strategy, strategy)),
                        parse_device("cpu"))
    topo = parse_topology(f"switch:{n}")
    sim = simulate(prog, topo)
    return prog, sim, sim.to_trace(prog, topo)


def test_memory_categories_are_one_vocabulary_stacked_persistent_first():
    prog, _, trace = fsdp_trace()
    mem = training.memory(trace)
    assert set(b.category for b in prog.buffers) <= set(CATEGORIES)
    assert mem.categories == tuple(c for c in CATEGORIES if c in mem.categories)
    assert mem.categories[:3] == ("param", "grad", "optim")  # the shards at the bottom of the stack
    colours = [colour(mem.categories, i) for i in range(len(mem.categories))]
    assert colours == [COLOURS[c] for c in mem.categories] and len(set(COLOURS.values())) == len(CATEGORIES)


def test_the_tui_draws_the_simulators_memory_timeline():
    """One timeline: a buffer counts from its ALLOC's start (here an ALLOC that takes 50 us)."""
    prog, sim, trace = fsdp_trace()
    start = trace.start.copy()
    alloc = np.flatnonzero((prog.kind == OpKind.ALLOC) & (trace.end > 1e-4))
    start[alloc] = trace.end[alloc] - 5e-5
    slow = dataclasses.replace(trace, start=start)
    mem, mt = training.memory(slow), memory_timeline(prog, start, trace.end)
    for r in range(prog.nranks):
        assert mem.peak()[0][r] == mt.peak(r)[0]
        for t in start[alloc[prog.rank[alloc] == r]][:20] + 1e-5:
            k = int(np.searchsorted(mt.times[r], t, side="right")) - 1
            assert mem.at(t)[r].sum() == mt.total[r][k]


def test_measured_memory_uses_the_same_vocabulary():
    from test_interop_import import fixture

    from rankscope.simulator.interop.kineto_import import import_kineto

    tr = import_kineto([fixture("gloo_fsdp")])
    cats = {b.category for b in tr.program.buffers}
    assert cats <= set(CATEGORIES) and {"param", "activation"} <= cats
    mem = training.memory(tr)
    shades = [colour(mem.categories, i) for i in range(len(mem.categories))]
    assert len(set(shades)) == len(shades)  # no two categories share a colour


def _bars(strip) -> int:
    """How many bars a Gantt line shows: runs of one background colour other than the screen's."""
    segs = list(strip)
    screen = segs[0].style.bgcolor  # the label's
    runs, last = 0, screen
    for seg in segs:
        bg = seg.style.bgcolor if seg.style else None
        if bg != screen and bg != last:
            runs += 1
        last = bg
    return runs


async def test_every_collective_has_a_mark_and_z_zooms_the_lanes():
    prog, _, trace = fsdp_trace()
    colls = np.flatnonzero((prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0))
    app = replay_app([trace], ["f.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        gantt = screen.query_one("#gantt")
        await pilot.pause()
        rows = len(gantt.state.lanes.names)  # compute, then rank 0's comm rows (one per stream)
        assert sum(_bars(gantt.render_line(y)) for y in range(2, rows + 1)) == colls.size
        span = gantt.state.t1 - gantt.state.t0
        assert screen.check_action("zoom", ()) is True
        await pilot.press("end", "z")
        assert gantt.state.t1 - gantt.state.t0 == pytest.approx(span / 2)
        chart = screen.query_one("#memory")
        assert (chart.state.t0, chart.state.t1) == (gantt.state.t0, gantt.state.t1)
        assert gantt.state.t0 <= gantt.state.time <= gantt.state.t1


async def test_lanes_and_memory_chart_share_one_time_axis_with_ticks():
    _, _, trace = fsdp_trace()
    app = replay_app([trace], ["f.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right")
        gantt, chart = app.screen.query_one("#gantt"), app.screen.query_one("#memory")
        assert gantt.content_region.x + gantt.LABEL_W == chart.content_region.x + chart.LABEL_W
        assert gantt.content_region.width - gantt.LABEL_W == chart.content_region.width - chart.LABEL_W
        axis = [line for line in rendered(chart) if line.startswith("t ")]
        assert len(axis) == 1 and axis[0].count("ms") >= 3 and "▲" in axis[0]


async def test_cursor_panel_keeps_busbw_when_the_phase_wraps():
    from rankscope.simulator.collectives import build

    prog = build("all-reduce", "ps", 8, 64 << 20)
    topo = parse_topology("switch:8")
    app = replay_app([simulate(prog, topo).to_trace(prog, topo)], ["ps.trace"])
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(prog.n_steps):
            await pilot.press("right")
            lines = rendered(app.screen.query_one("#status"))
            assert any("busbw" in line for line in lines), lines


async def test_grid_footer_names_the_mode_the_cells_show_from_the_start():
    from test_tui_app import RING4

    from rankscope.tui.widgets.grid import ProvenanceGrid

    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        grid = app.screen.query_one(ProvenanceGrid)
        assert grid.mode == "sets" and grid.border_subtitle.startswith("sets")


async def test_selection_follows_the_step():
    from test_tui_app import RING4, detail

    from rankscope.tui.widgets.table import VirtualTable

    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("right")
        table = screen.query_one("#transfers", VirtualTable)
        table.focus()
        await pilot.press("down", "down")
        op = screen.op
        assert op is not None and detail(app).startswith(f"op {op}:")
        await pilot.press("right")
        assert screen.op is None or int(screen.replay.program.step[screen.op]) == screen.replay.step
        assert not detail(app).startswith(f"op {op}:")


def test_training_traces_are_titled_by_model_and_strategy():
    _, _, trace = fsdp_trace()
    title = describe(trace, "f.trace")
    assert "mlp:4x1024" in title and "zero3" in title and "program on" not in title


async def test_memory_in_the_tui_is_in_the_units_of_sim_train():
    prog, sim, trace = fsdp_trace()
    peak = train_report(prog, sim)["rows"][0]["peak"]
    app = replay_app([trace], ["f.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("end")
        text = "\n".join(rendered(app.screen.query_one("#memory")))
        assert f"peak {format_dec_bytes(peak)}" in text


async def test_a_screenshot_is_saved_without_a_downloads_folder(tmp_path, monkeypatch):
    from test_tui_app import RING4

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.chdir(work)
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE):
        assert "Screenshot" in {c.title for c in app.get_system_commands(app.screen)}
        app.deliver_screenshot()  # what the palette's Screenshot runs (after a 0.1 s timer)
        import threading

        # written before it returns: no thread is left that could wait on the app at exit
        assert not any("save_file_thread" in t.name for t in threading.enumerate())
    assert [p.suffix for p in work.iterdir()] == [".svg"] and not (home / "Downloads").exists()


def test_the_network_picture_draws_the_steps_transfers():
    from rankscope.tui.widgets.network import NetState, NetworkPicture, shape_of

    _, _, trace = fsdp_trace()
    assert shape_of(trace.meta.get("topology"), 4) == ("switch", 0)
    pic = NetworkPicture()
    pic.state = NetState(4, "ring", 0, ((0, 1, 8, True), (1, 2, 8, True)))
    assert [pts for pts, _ in pic.paths()] == [[0, 1], [1, 2]]
    pic.state = NetState(8, "nodes", 4, ((0, 1, 8, False), (0, 4, 8, False)))
    assert [pts for pts, _ in pic.paths()] == [[0, 1], [0, "fabric", 4]]  # NVLink inside, NICs across
    pos = pic.positions(40, 14)
    assert all(0 <= x < 40 and 0 <= y < 14 for x, y in pos.values()) and len(set(pos.values())) == 9


def test_fsdp_units_fill_during_their_all_gather_and_free_after():
    from rankscope.tui import shards
    from rankscope.tui.replay import Replay

    prog, _, trace = fsdp_trace()
    r = Replay(trace)
    ag = [int(o) for o in np.flatnonzero((prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0))
          if prog.buffers[int(prog.coll_buf[prog.arg[o]])].name == "layer1.unsharded"]
    r.seek_step(int(prog.step[ag[0]]))
    row = {x.unit: x for x in shards.rows(r)}["layer1"]
    assert row.params == shards.FILLING * 4 and row.shard_bytes == -(-prog.buffers[8].nbytes // 4)
    r.seek_step(int(prog.step[ag[0]]) + 1)
    assert {x.unit: x for x in shards.rows(r)}["layer1"].params == shards.FULL * 4
    r.seek_step(r.n_steps - 1)
    assert all(x.params == shards.NONE * 4 and x.grads == shards.NONE * 4 for x in shards.rows(r))


async def test_a_collective_opens_as_its_ring_schedule_and_back():
    from rankscope.simulator.collectives import build
    from rankscope.simulator.trace import program_equal

    prog, _, trace = fsdp_trace()
    app = replay_app([trace], ["f.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*["right"] * 5, "o")
        drill = app.screen
        assert type(drill).__name__ == "DrillScreen" and "all-gather of 'layer0.unsharded'" in drill.sub_title
        op = drill.replay.trace.meta["drilled_from"]
        assert program_equal(drill.replay.program, build("all-gather", "ring", 4, int(prog.coll_bytes[prog.arg[op]])))
        await pilot.press("right")
        assert drill.view == "collective" and drill.replay.step == 0
        await pilot.press("escape")
        assert type(app.screen).__name__ == "ReplayScreen" and app.screen.replay.step == 4


async def test_replay_a_b_of_two_programs_on_the_same_ranks_runs_them_on_one_clock():
    from rankscope.simulator.collectives import build

    def trace(algo):
        prog = build("all-reduce", algo, 8, 64 << 20)
        topo = parse_topology("switch:8")
        return simulate(prog, topo).to_trace(prog, topo)

    ps, ring = trace("ps"), trace("ring")
    app = replay_app([ps, ring], ["ps.trace", "ring.trace"])
    async with app.run_test(size=(160, 44)) as pilot:
        screen = app.screen
        assert type(screen).__name__ == "SideBySideScreen"
        await pilot.press("right")
        a, b = screen.sides
        assert screen.time == pytest.approx(b.window(0)[1] - b.t0)  # the ring's first step ends first
        assert b.step == 0 and a.finished_count() == 0  # the server has not finished anything yet
        await pilot.press("end")
        assert not a.can_forward and not b.can_forward
        assert screen.time == pytest.approx(max(a.t_end - a.t0, b.t_end - b.t0))
        title = screen.query_one("#side_b").border_title
        assert "ring" in title and "done" in title


async def test_each_stream_has_its_own_row_so_concurrent_collectives_are_not_drawn_over():
    """``--communicators per-stream``: all-gathers and reduce-scatters run at once; each stream is
    a row of its own (two bars that overlap in time would otherwise be one drawn over the other)."""
    prog = compile_step(parse_model("mlp:4x1024"), 4, TrainConfig(strategy="zero3", communicators="per-stream"),
                        parse_device("cpu"))
    topo = parse_topology("switch:4")
    trace = simulate(prog, topo).to_trace(prog, topo)
    lanes = training.lanes(trace)
    assert lanes.names == ("compute", "all_gather", "reduce_scatter")
    colls = np.flatnonzero((prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0))
    rows = [lanes.op[lanes.of(0, k)] for k in (1, 2)]
    assert sorted(np.concatenate(rows).tolist()) == colls.tolist()
    assert all(training.stream(prog, int(o)) == name for k, name in ((0, "all_gather"), (1, "reduce_scatter"))
               for o in rows[k])
    spans = [(trace.start[r], trace.end[r]) for r in rows]
    overlap = any(a0 < b1 and b0 < a1 for a0, a1 in zip(*spans[0]) for b0, b1 in zip(*spans[1]))
    assert overlap  # the two streams did run at once here
    for s, e in spans:
        assert (s[1:] >= e[:-1] - 1e-12).all()  # within a stream: in turn
    app = replay_app([trace], ["f.trace"])
    async with app.run_test(size=SIZE) as pilot:
        gantt = app.screen.query_one("#gantt")
        await pilot.pause()
        heads = [seg.text.strip() for seg in (list(gantt.render_line(y))[0] for y in (1, 2, 3))]
        assert heads == ["r0 compute", "ag", "rs"]
        assert [_bars(gantt.render_line(y)) for y in (2, 3)] == [rows[0].size, rows[1].size]
        assert "ag all_gather · rs reduce_scatter" in gantt.border_title
