"""Turning a lesson's pages keeps no page's widgets: after 20 turns forward and back, one view of
each kind is alive (the page's), one replay, one header, and the memory allocated during the turns
that is still held is under 100 kB a turn.

Before the fix (see ``tui/heap.py`` and ``LessonScreen.turn``) every turn kept the last page's
views with their replay (through the screen's query cache), the header (through the app's title
watchers) and the rendered lines of every widget of the page (through Textual's per-instance
``get_inner_outer`` cache): 1.9 MB a turn of ps-vs-ring, 1.2 MB of data-parallel, and 29 views,
replays and headers alive after the 28 turns of the test. Now 1.3-1.4 kB a turn, what bounded
caches fill once (Textual's and Rich's LRU caches of styles, cell widths, regions).
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from textual.color import Color
from textual.widgets import Header

from rankscope.tui import heap
from rankscope.tui.app import learn_app
from rankscope.tui.replay import Replay
from rankscope.tui.views.collective import CollectiveView
from rankscope.tui.views.training import TrainingView

pytestmark = pytest.mark.anyio
TURNS = 20
PER_TURN = 100_000  # bytes still held per page turn; before the fix 1.4-2.3 MB


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _alive(*types) -> list[int]:
    """How many objects of each type are alive, frozen ones included (see tui.heap)."""
    gc.unfreeze()
    gc.collect()
    objs = gc.get_objects()
    out = [sum(issubclass(type(o), t) for o in objs) for t in types]  # not o.__class__: proxies warn
    del objs
    gc.freeze()
    return out


async def _turns(pilot, n: int) -> None:
    for i in range(n):
        await pilot.press("n" if i % 2 == 0 else "p")
        await pilot.pause()


@pytest.mark.parametrize("name", ["ps-vs-ring", "data-parallel"])  # collective pages; training pages
async def test_turning_pages_keeps_no_page_behind(name):
    app = learn_app(name)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await _turns(pilot, 6)  # the caches that fill once (styles, widths) fill here
        screen = app.screen
        assert len(screen.run.pages) >= 2
        kinds = (CollectiveView, TrainingView, Replay, Header)
        tracemalloc.start()
        try:
            await _turns(pilot, 2)  # what a page on screen holds, the same page after as before
            _alive()
            start = tracemalloc.get_traced_memory()[0]
            await _turns(pilot, TURNS)
            await pilot.pause()
            counts = _alive(*kinds)
            held = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        on_screen = [len(screen.query(CollectiveView)), len(screen.query(TrainingView)), 1, 1]
        assert counts == on_screen, f"alive {counts}, on screen {on_screen} (views, views, replays, headers)"
        assert held < PER_TURN * TURNS, f"{held / TURNS / 1e3:.0f} kB held per page turn"


def test_get_inner_outer_is_cached_on_the_colours_alone():
    """Textual's method, cached per instance, kept every widget's StylesCache; now its values are
    those of Textual's function, and its cache holds colours only."""
    from textual._styles_cache import StylesCache

    assert heap.unpin_styles() is False  # done once, on import
    a, b = StylesCache(), StylesCache()
    colours = [(Color(18, 18, 18), Color(36, 47, 56)), (Color(0, 0, 0, 0.5), Color(255, 0, 0, 0.25))]
    for base, bg in colours:
        inner, outer = a.get_inner_outer(base, bg)
        assert (inner, outer) == b.get_inner_outer(base, bg)
        assert inner.background == base + bg and outer.background == base
    keys = [r for r in gc.get_referrers(a) if isinstance(r, (list, tuple)) and any(x is a for x in r)]
    assert not keys  # lru_cache's key of a method call is a list (self, *args): none holds ``a``


async def test_a_page_turn_focuses_the_new_page_as_its_open_did():
    # the focused widget leaves with its page; the new page's first focusable takes the focus
    app = learn_app("ps-vs-ring")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        first = type(app.focused)
        assert app.focused is not None
        for key in ("n", "p"):
            await pilot.press(key)
            await pilot.pause()
            assert app.focused is not None and app.focused.is_attached
        assert type(app.focused) is first
