"""Programs that cut their message into several buffers (NCCL's: a buffer per distinct ring, tree
channel slot or NVLS head): ``b`` / ``B`` cycle the buffer the collective grid shows, the cells are
that buffer's (checked against a layout built from scratch by the simulator), every size and
bandwidth is the whole message's, and one-buffer programs keep their keys, help and grid."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tui_app import detail, rendered, status
from test_tui_data import MiB, nccl_trace, ring4_trace
from textual.widgets._footer import FooterKey

from rankscope.simulator.costs import busbw
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.provenance import layout
from rankscope.simulator.trace import Trace
from rankscope.simulator.units import format_ranks
from rankscope.tui.app import replay_app
from rankscope.tui.replay import Replay
from rankscope.tui.views.collective import CollectiveView
from rankscope.tui.widgets.grid import ProvenanceGrid
from rankscope.tui.widgets.table import VirtualTable

pytestmark = pytest.mark.anyio
SIZE = (120, 40)
RING = nccl_trace()  # NCCL's ring on 1x4 H100: two distinct rings, two buffers of half the message
RING4 = ring4_trace()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def sets(trace: Trace, k: int, buf: int) -> list[list[str]]:
    """Each cell's set of buffer ``buf`` after ops 0..k-1, from a layout built from scratch."""
    lay, n = layout(trace.program, k), trace.program.nranks
    return [[format_ranks(lay.contributors(buf, r, s), n) for s in range(lay.bounds[buf].size - 1)]
            for r in range(n)]


def written(trace: Trace, ops: np.ndarray, buf: int) -> list[tuple[int, int]]:
    """The (rank, segment) cells of ``buf`` that the transfers ``ops`` land on."""
    p, lay = trace.program, layout(trace.program, 0)
    cells = set()
    for o in ops.tolist():
        c = int(p.arg[o])
        if p.chunk_buf[c] == buf:
            lo, hi = lay.segs_of_chunk(c)
            cells |= {(int(p.peer[o]), s) for s in range(lo, hi)}
    return sorted(cells)


def grid_rows(grid: ProvenanceGrid) -> list[list[str]]:
    return [line.split()[1:] for line in rendered(grid)[2:2 + grid.state.nranks]]


async def footer_keys(app, pilot) -> list[str]:
    """The footer's keys once it has composed them (it does so after a refresh, later on a
    loaded machine)."""
    for _ in range(100):
        await pilot.pause()
        if keys := [k.key for k in app.screen.query(FooterKey)]:
            return keys
    return []


def test_the_trace_has_two_buffers_that_differ():
    """The premise of the tests below: the buffers hold different sets at a step."""
    p = RING.program
    assert [b.name for b in p.buffers] == ["ring0", "ring1"]
    assert sum(b.nbytes for b in p.buffers) == p.meta["nbytes"] == MiB
    k = int(Replay(RING).bounds[2])
    assert sets(RING, k, 0) != sets(RING, k, 1)


async def test_b_cycles_the_buffer_and_the_grid_shows_its_cells():
    app = replay_app([RING], ["ring.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        grid = screen.query_one(ProvenanceGrid)
        await pilot.press("right", "right")
        r, k = screen.replay, int(screen.replay.bounds[2])
        assert grid.mode == "sets" and r.buffer == 0
        assert grid.border_title == "buffer 1 of 2: ring0, 512KiB of 1MiB"  # the long words do not fit
        assert grid_rows(grid) == sets(RING, k, 0)
        assert sorted(map(tuple, grid.state.changed.tolist())) == written(RING, r.step_ops(), 0)
        await pilot.press("b")
        assert r.buffer == 1 and r.step == 1  # the cursor stays where it was
        assert grid.border_title == "buffer 2 of 2: ring1, 512KiB of 1MiB"
        assert grid_rows(grid) == sets(RING, k, 1)
        assert np.array_equal(grid.state.counts, layout(RING.program, k).counts(1))
        assert sorted(map(tuple, grid.state.changed.tolist())) == written(RING, r.step_ops(), 1)
        assert "of 'ring1'" in detail(app) and "buffer 2 of 2" in detail(app)
        # the step's transfers into ring1 first, the others after them, dim
        table, p = screen.query_one("#transfers", VirtualTable), RING.program
        shown = screen.query_one(CollectiveView).transfers_shown
        into = p.chunk_buf[p.arg[shown]]
        assert sorted(shown.tolist()) == r.transfers().tolist() and into.tolist() == [1] * 4 + [0] * 4
        assert [table.rows.style(i) for i in range(8)] == [""] * 4 + ["dim"] * 4
        assert table.rows.cells(0)[0] == str(shown[0]) and table.border_subtitle == "4 into ring1, the rest dim"
        await pilot.press("b")  # wraps round
        assert r.buffer == 0 and grid_rows(grid) == sets(RING, k, 0)
        await pilot.press("B")
        assert r.buffer == 1 and grid_rows(grid) == sets(RING, k, 1)


async def test_a_wide_grid_names_the_whole_message_in_its_title():
    app = replay_app([RING], ["ring.trace"])
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        grid = app.screen.query_one(ProvenanceGrid)
        assert grid.border_title == "buffer 1 of 2: ring0, 512KiB of the message's 1MiB"  # from the first frame
        await pilot.press("b")
        assert grid.border_title == "buffer 2 of 2: ring1, 512KiB of the message's 1MiB"


async def test_steps_after_a_switch_show_the_new_buffer_both_ways():
    """Forward the counts advance in place; back, an undo record made while buffer 0 was shown
    is recounted for buffer 1."""
    app = replay_app([RING], ["ring.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen, grid = app.screen, app.screen.query_one(ProvenanceGrid)
        await pilot.press("right", "right", "right", "right", "b")
        r = screen.replay
        for key in ("left", "left", "right", "left", "home", "end", "left"):
            await pilot.press(key)
            k = int(r.bounds[r.step + 1])
            assert grid_rows(grid) == sets(RING, k, 1), (key, r.step)
            assert np.array_equal(r.counts, layout(RING.program, k).counts(1))
            assert sorted(map(tuple, r.changed.tolist())) == written(RING, r.step_ops(), 1)


async def test_sizes_and_bandwidths_are_the_whole_message():
    app = replay_app([RING], ["ring.trace"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("end", "b")
        t = float(RING.end.max() - RING.start.min())
        text = status(app)
        assert "moved" in text and "(100%)" in text
        assert f"busbw {busbw('all-reduce', 4, MiB, t) / 1e9:.2f} GB/s" in text
        assert "1MiB" in app.screen.sub_title


async def test_the_keys_are_shown_and_explained_for_several_buffers():
    app = replay_app([RING], ["ring.trace"])
    async with app.run_test(size=SIZE) as pilot:
        assert "b" in await footer_keys(app, pilot)
        rows = app.screen.help_rows()
        assert ("b", "next buffer") in rows and ("B", "previous buffer") in rows
        words = app.screen.explain().plain
        assert "2 buffers" in words and "buffer 1 of 2: ring0" in words and "b shows the next buffer" in words
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        await commands["Next buffer"].callback()
        await pilot.pause()
        assert app.screen.replay.buffer == 1
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        terms = str(app.screen.query_one("#glossary").content)
        assert "segment s: a byte range of the buffer the grid shows" in terms and "buffer 0" not in terms


async def test_one_buffer_programs_have_no_buffer_key():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen, grid = app.screen, app.screen.query_one(ProvenanceGrid)
        await pilot.press("right", "right")
        before = (rendered(grid), grid.border_title, detail(app), status(app))
        assert grid.border_title == "provenance: ranks x segments of 'buf'"
        await pilot.press("b", "B")
        assert screen.replay.buffer == 0
        assert (rendered(grid), grid.border_title, detail(app), status(app)) == before
        table = screen.query_one("#transfers", VirtualTable)
        assert table.rows.cells(0)[0] == "4" and not table.border_subtitle  # in op order, as before
        assert screen.check_action("buffer", (1,)) is False  # hidden, not greyed out
        keys = await footer_keys(app, pilot)
        assert "z" in keys and "b" not in keys and "B" not in keys
        assert not any(what in ("next buffer", "previous buffer") for _, what in screen.help_rows())
        palette = {c.title for c in app.get_system_commands(screen)}
        assert "Zoom" in palette and "Next buffer" not in palette
        assert "buffer 0" in screen.explain().plain and "b shows" not in screen.explain().plain
        await pilot.press("question_mark")
        assert "segment s: a byte range of buffer 0" in str(app.screen.query_one("#glossary").content)


async def test_two_traces_side_by_side_cycle_their_buffers():
    app = replay_app([RING, RING4], ["nccl.trace", "ring.trace"])
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        assert type(screen).__name__ == "SideBySideScreen" and "b" in await footer_keys(app, pilot)
        await pilot.press("right", "b")
        a, b = screen.sides
        assert (a.buffer, b.buffer) == (1, 0)
        assert screen.query_one("#side_a ProvenanceGrid").border_title.startswith("buffer 2 of 2: ring1")
        assert np.array_equal(a.counts, a.layout.counts(1))


def test_message_bytes_without_meta_are_the_data_buffers_sum():
    meta = {k: v for k, v in RING.program.meta.items() if k != "nbytes"}
    prog = dataclasses.replace(RING.program, meta=meta)
    trace = Trace(prog, RING.start, RING.end, RING.lane, meta=RING.meta)
    r = Replay(trace)
    assert r.message_bytes == MiB and r.data_buffers == (0, 1)
    r.seek_step(r.n_steps - 1)
    assert r.algbw() == pytest.approx(MiB / r.elapsed)
    with pytest.raises(RankscopeError, match="no buffer 2"):
        r.show_buffer(2)


def test_a_time_position_shows_the_buffer_of_its_finished_ops():
    r = Replay(RING)
    t = float(np.median(RING.end))
    r.seek_time(t)
    r.show_buffer(1)
    done = r.finished()
    assert np.array_equal(r.counts, layout(RING.program, done).counts(1))
    ops = r.step_ops()
    assert sorted(map(tuple, r.changed.tolist())) == written(RING, ops[done[ops]], 1)


TREE = nccl_trace(algo="tree")  # 72 buffers: a channel's slot each, one segment apiece


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, TREE.program.n_steps - 1), st.integers(-3, 3)),
                min_size=1, max_size=10))
def test_any_walk_of_steps_and_buffers_gives_the_counts_built_from_scratch(walk):
    r = Replay(TREE)
    assert len(r.data_buffers) == len(TREE.program.buffers) > 2
    for s, by in walk:  # switch, then seek: the counts of the new buffer advance and undo in place
        r.show_buffer(r.next_buffer(by))
        r.seek_step(s)
        fresh = layout(TREE.program, int(r.bounds[s + 1]))
        assert np.array_equal(r.counts, fresh.counts(r.buffer))
        assert sorted(map(tuple, r.changed.tolist())) == written(TREE, r.step_ops(), r.buffer)
