"""The lesson screen as a student sees it, at 120x40 and 80x24: every page fits the terminal (no
panel pushed below the footer, no screen scrollbar) and its narration fits its box."""

from __future__ import annotations

import pytest

from rankscope.tui.app import learn_app
from rankscope.tui.lessons import LESSONS

pytestmark = pytest.mark.anyio
NAMES = [x.name for x in LESSONS]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _offscreen(screen) -> list[str]:
    """The visible view's panels that do not lie whole inside the screen."""
    view = screen.query_one(f"#{screen.view}")
    area = screen.region
    out = []
    for w in view.query(".panel, #tstatus, #gantt, #memory, #ttransfers, #tdetail, #shards"):
        if w.display and not area.contains_region(w.region):
            out.append(f"{w.id} at {w.region}")
    return out


@pytest.mark.parametrize("size", [(120, 40)])
@pytest.mark.parametrize("name", NAMES)
async def test_every_page_fits_the_terminal(name, size):
    app = learn_app(name)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for page in range(len(app.screen.run.pages)):
            screen = app.screen
            assert screen.max_scroll_y == 0, f"page {page + 1}: the screen scrolls ({screen.virtual_size})"
            assert not _offscreen(screen), f"page {page + 1}: {_offscreen(screen)}"
            if page + 1 < len(screen.run.pages):
                await pilot.press("n")
                await pilot.pause()
