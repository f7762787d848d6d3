"""The lesson screen as a student sees it: on every page and at every step, every panel of the view
lies whole inside the screen and inside the panels that hold it (nothing pushed below the footer or
cut by its container, no screen scrollbar), and the narration fits its box."""

from __future__ import annotations

import pytest

from rankscope.tui.app import learn_app
from rankscope.tui.lessons import LESSONS

pytestmark = pytest.mark.anyio
NAMES = [x.name for x in LESSONS]
PANELS = ".panel, #tstatus, #gantt, #memory, #ttransfers, #tdetail, #shards, #narration"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _cut(screen) -> list[str]:
    """Panels of the screen not whole inside the screen and every container above them."""
    out = []
    view = screen.query_one(f"#{screen.view}")
    for w in [screen.query_one("#narration"), *view.query(PANELS)]:
        if not w.display:
            continue
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
    nar = screen.query_one("#narration")
    box = nar.content_region
    return nar.get_content_height(box.size, screen.size, box.width) <= box.height


async def _walk(name: str, size: tuple[int, int]) -> list[str]:
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
                if not _narration_fits(screen):
                    bad.append(f"{where}: the narration does not fit its box")
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
