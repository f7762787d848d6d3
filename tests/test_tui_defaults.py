"""The default links (25 GB/s and 5 us per link; alpha = 2 links on switch:N) are said where a user
meets them: the --help of every verb that takes a topology or simulates on one, the text that
``sim``, ``demo --text`` and ``sweep`` print, and the TUI's help; and what is said is the topology's
own links, not a typed default."""

from __future__ import annotations

import re

import pytest
from test_tui_data import ring4_trace

from rankscope.cli import main
from rankscope.tui.app import replay_app

pytestmark = pytest.mark.anyio
LINKS = "25 GB/s and 5 us per link; alpha = 2 links = 10 us"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _help(capsys, *verb: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    assert e.value.code == 0
    return re.sub(r"\s+", " ", capsys.readouterr().out)  # argparse wraps its lines


@pytest.mark.parametrize("verb", [("sim",), ("sim", "train"), ("sweep",), ("demo",), ("learn",)])
def test_help_states_the_default_links(capsys, verb):
    text = _help(capsys, *verb)
    assert LINKS in text, text


@pytest.mark.parametrize("argv", [["sim", "all-reduce", "--ranks", "4"],
                                  ["demo", "--ranks", "4", "--size", "1MiB", "--text"],
                                  ["sweep", "all-reduce", "--ranks", "4", "--max", "64"]])
def test_output_states_the_links_it_simulated_on(capsys, argv):
    assert main(argv) == 0
    assert LINKS in capsys.readouterr().out
    assert main([*argv, "--bw", "50GB/s", "--lat", "2us"]) == 0
    out = capsys.readouterr().out
    assert "50 GB/s and 2 us per link; alpha = 2 links = 4 us" in out and LINKS not in out


def test_a_ring_says_one_link_and_a_gpu_preset_nothing(capsys):
    assert main(["sim", "all-reduce", "--ranks", "4", "-t", "ring:4"]) == 0
    assert "links: 25 GB/s and 5 us per link; alpha = 1 link = 5 us" in capsys.readouterr().out
    assert main(["sim", "all-reduce", "--ranks", "8", "-t", "dgx-h100"]) == 0
    assert "links:" not in capsys.readouterr().out


async def test_the_tui_help_states_the_default_links():
    app = replay_app([ring4_trace()], ["ring4.trace"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = re.sub(r"\s+", " ", str(app.screen.query_one("#glossary").content))
        assert LINKS in text, text
