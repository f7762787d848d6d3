"""What the step redraw keeps between steps is what a fresh redraw would show: the grid's set
texts after any walk, the lanes and the memory chart with their cached rows, the footer's keys
turned on and off in place, and a table's new row count without a re-layout where nothing moves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from test_tui_data import ring4_trace, training_trace

from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.units import format_ranks
from rankscope.tui.app import replay_app
from rankscope.tui.replay import Replay
from rankscope.tui.views.collective import SetTexts
from rankscope.tui.widgets.gantt import Gantt
from rankscope.tui.widgets.memory import MemoryChart

pytestmark = pytest.mark.anyio
MOVES = hs.lists(hs.one_of(hs.sampled_from(["f", "b", "f", "f", "home", "end"]),
                           hs.integers(-1, 12), hs.floats(0, 1)), max_size=25)


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _hd8():
    prog = build("all-reduce", "hd", 8, 1 << 20)
    topo = parse_topology("switch:8")
    return simulate(prog, topo).to_trace(prog, topo)


TRACES = {"ring4": ring4_trace(), "hd8": _hd8()}


@settings(max_examples=40, deadline=None)
@given(name=hs.sampled_from(sorted(TRACES)), moves=MOVES)
def test_kept_set_texts_are_the_layouts_after_any_walk(name, moves):
    r, sets = Replay(TRACES[name]), SetTexts()
    for m in moves:
        if m == "f" and r.can_forward:
            r.forward()
        elif m == "b" and r.can_back:
            r.back()
        elif m == "home":
            r.seek_step(-1)
        elif m == "end":
            r.seek_step(r.n_steps - 1)
        elif isinstance(m, int):
            r.seek_step(min(m, r.n_steps - 1))
        elif isinstance(m, float):
            r.seek_time(r.t0 + m * (r.t_end - r.t0))
        sets.follow(r)
        for a in range(r.nranks):
            for b in range(r.nsegments):
                assert sets.text(a, b) == format_ranks(r.layout.contributors(0, a, b), r.nranks), (m, a, b)


def _lines(w, height: int) -> list[str]:
    return ["".join(s.text for s in w.render_line(y)) for y in range(height)]


async def test_lanes_and_memory_rows_kept_across_steps_are_a_fresh_draw():
    """After steps right and left, the lanes and the chart read as a widget drawing the same state
    for the first time (the cursor's column moved, nothing else stale)."""
    app = replay_app([training_trace()], ["t"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for key in ["right"] * 5 + ["left"] * 2 + ["z", "right"]:
            await pilot.press(key)
            await pilot.pause()
            for cls in (Gantt, MemoryChart):
                w = app.screen.query_one(cls)
                kept = _lines(w, w.size.height)
                for attr in ("_bars_key", "_rows_key", "_style_key", "_cols_key"):
                    w.__dict__.pop(attr, None)  # forget every cached row
                assert _lines(w, w.size.height) == kept, (key, cls.__name__)


async def test_the_footer_turns_keys_on_and_off_in_place():
    app = replay_app([ring4_trace()], ["ring4.trace"])
    async with app.run_test(size=(120, 40)) as pilot:
        def state():
            keys = {k.action: k for k in app.screen.query("FooterKey")}
            return keys, {a: "-disabled" in k.classes for a, k in keys.items()}

        for _ in range(100):  # the footer composes its keys after a refresh: later on a loaded machine
            await pilot.pause()
            if app.screen.query("FooterKey"):
                break
        keys, off = state()
        assert off["step(-1)"] and not off["step(1)"]  # at the start: no "prev"
        await pilot.press("right")
        await pilot.pause()
        keys2, off = state()
        assert not off["step(-1)"] and not off["step(1)"]
        assert all(keys2[a] is keys[a] for a in keys)  # the same widgets, restyled, not rebuilt
        await pilot.press("end")
        await pilot.pause()
        _, off = state()
        assert off["step(1)"] and off["play"] and not off["step(-1)"]


async def test_a_tables_new_row_count_lays_out_only_when_its_size_can_change():
    app = replay_app([ring4_trace()], ["ring4.trace"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        links = screen.query_one("#links")
        region = links.region
        layouts = []
        real = screen._refresh_layout
        screen._refresh_layout = lambda *a, **k: (layouts.append(1), real(*a, **k))[1]
        from rankscope.tui.widgets.table import Rows

        links.rows = Rows(3, lambda i: ("a", "b", "c"))  # fewer rows in a fixed-height table
        await pilot.pause()
        assert not layouts and links.region == region and links.virtual_size.height == 4
        links.rows = Rows(40, lambda i: ("a", "b", "c"))  # a scrollbar appears: lay out
        await pilot.pause()
        assert layouts and links.show_vertical_scrollbar and links.virtual_size.height == 41
