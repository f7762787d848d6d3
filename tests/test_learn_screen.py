"""The lesson screen as a student sees it: on every page and at every step, every panel of the view
lies whole inside the screen and inside the panels that hold it (nothing pushed below the footer or
cut by its container, no screen scrollbar), and the narration fits its box."""

from __future__ import annotations

import pytest

from rankscope.tui.app import learn_app
from rankscope.tui.lessons import LESSONS

pytestmark = pytest.mark.anyio
NAMES = [x.name for x in LESSONS]
PANELS = ".panel, #tstatus, #gantt, #memory, #ttransfers, #tdetail, #shards"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _cut(screen) -> list[str]:
    """Panels of the screen not whole inside the screen and every container above them."""
    out = []
    view = screen.query_one(f"#{screen.view}")
    for w in [screen.query_one("#narration-box"), *view.query(PANELS)]:
        if not all(n.display for n in w.ancestors_with_self if n is not screen.app):
            continue  # stepped aside (display: none), itself or a panel holding it
        node = w
        while node is not screen and node is not None:
            node = node.parent
            box = screen.region if node is screen else node.region
            if not box.contains_region(w.region):
                out.append(f"{w.id} {w.region} outside {getattr(node, 'id', None) or type(node).__name__} {box}")
                break
    return out


def _narration_fits(screen) -> bool:
    """The narration's lines, wrapped to its box's width, fit the box's height."""
    nar, box = screen.query_one("#narration"), screen.query_one("#narration-box").scrollable_content_region
    return nar.get_content_height(box.size, screen.size, box.width) <= box.height


def _narration_scrolls_to_its_end(screen) -> bool:
    """A narration longer than its box can be read whole: the box scrolls over all of it."""
    nar, box = screen.query_one("#narration"), screen.query_one("#narration-box")
    lines = nar.get_content_height(box.scrollable_content_region.size, screen.size, box.scrollable_content_region.width)
    return box.focusable and nar.size.height >= lines and box.max_scroll_y == lines - box.scrollable_content_region.height


async def _walk(name: str, size: tuple[int, int], scroll: bool = False) -> list[str]:
    """Every page and every step of the lesson (questions answered off screen); what was wrong where."""
    bad = []
    app = learn_app(name)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        while True:
            screen = app.screen
            run = screen.run
            for _ in range(60):
                where = f"page {run.index + 1} step {screen.replay.step}"
                if screen.max_scroll_y:
                    bad.append(f"{where}: the screen scrolls ({screen.virtual_size})")
                bad += [f"{where}: {c}" for c in _cut(screen)]
                if not (_narration_fits(screen) or scroll and _narration_scrolls_to_its_end(screen)):
                    bad.append(f"{where}: the narration does not fit its box" + (" nor scrolls to its end" if scroll else ""))
                if not screen.replay.can_forward:
                    break
                if run.pending() is not None:
                    run.answer("")
                    screen.replay.seek_step(screen.replay.step - 1)
                await pilot.press("right")
                await pilot.pause()
            if run.index + 1 >= len(run.pages):
                return bad
            await pilot.press("n")
            await pilot.pause()


@pytest.mark.parametrize("name", NAMES)
async def test_every_page_and_step_fits_120x40(name):
    bad = await _walk(name, (120, 40))
    assert not bad, "\n".join(bad[:8])


@pytest.mark.parametrize("name", NAMES)
async def test_every_page_and_step_fits_80x24_its_narration_scrolling(name):
    """At 80x24 the lists and the selection step aside; a narration longer than its box scrolls."""
    bad = await _walk(name, (80, 24), scroll=True)
    assert not bad, "\n".join(bad[:8])


async def test_a_verdict_shows_on_its_step_not_for_the_rest_of_the_page():
    app = learn_app("ring")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("right")  # step 0
        await pilot.press("right", "x", "enter")  # the question about step 1, answered wrong
        await pilot.pause()
        screen = app.screen
        assert screen.replay.step == 1
        verdict = screen.run.last.text()
        assert verdict.startswith("not quite") and verdict in str(screen.query_one("#narration").content)
        screen.run.answer("all")  # the question about step 2, right
        screen.replay.seek_step(3)
        screen.moved()
        await pilot.pause()
        text = str(screen.query_one("#narration").content)
        assert verdict not in text and "right." not in text
        assert screen.run.score() in text
