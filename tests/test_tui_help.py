"""`?` explains the screen under it: the view and zoom showing, every memory category and lane
colour, the compare columns, the default figures; it fits a small terminal (it scrolls)."""

import pytest
from test_tui_app import RING4
from test_tui_data import measured_copy
from test_tui_training import fsdp_trace

from rankscope.simulator.memory import CATEGORIES
from rankscope.tui.app import replay_app
from rankscope.tui.widgets.gantt import COLOURS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _help(app) -> str:
    out = []
    for s in app.screen.query("Static"):
        c = s.content
        out.append(c if isinstance(c, str) else getattr(c, "plain", ""))
    return "\n".join(out)


async def test_help_on_the_training_view_names_every_category_and_lane_colour():
    app = replay_app([fsdp_trace()[2]], ["f.trace"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        text = _help(app)
        assert all(c in text for c in CATEGORIES) and all(k in text for k in COLOURS)
        assert "FSDP units" in text and "alpha = 2 links = 10 us" in text and "25 GB/s" in text


async def test_help_on_the_collective_view_follows_the_zoom_and_fits_a_small_terminal():
    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the network picture steps aside at 80 columns; the grid widens
        await pilot.press("question_mark")
        assert "zoom now: sets" in _help(app) and "incast" in _help(app)
        box = app.screen.query_one("VerticalScroll")
        assert box.outer_size.height <= 24 and box.max_scroll_y > 0  # it scrolls instead of spilling
        await pilot.press("escape", "z", "z", "z", "question_mark")
        assert "zoom now: heat" in _help(app) and "100%" in _help(app)


async def test_help_on_the_compare_screen_explains_its_columns():
    app = replay_app([RING4, measured_copy(RING4)], ["sim.trace", "measured.trace"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert "error = (A - B) / B" in _help(app)
