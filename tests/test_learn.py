"""Every lesson end to end: headless (LessonRun) and under Pilot (each page opens with its narration,
each question answered right in one pass and wrong in another, and scored); the lessons' numbers
and answers checked against the simulator computed here independently; ``rankscope learn``."""

from __future__ import annotations

import numpy as np
import pytest
from test_tui_app import SIZE

from rankscope.cli import main
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.memory import memory_timeline
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.provenance import layout
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.traffic import traffic
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.units import format_bytes, format_dec_bytes, format_seconds
from rankscope.tui.app import learn_app
from rankscope.tui.lessons import LESSONS, LessonError, lesson
from rankscope.tui.lessons.run import LessonRun

pytestmark = pytest.mark.anyio
NAMES = [x.name for x in LESSONS]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def measured():
    """What `rankscope learn` measures on gloo for the lessons that need it."""
    pytest.importorskip("torch")
    from rankscope.cli.tui import measure_for

    data = measure_for(("dp_equivalence", "gloo_ring"))
    assert "dp_equivalence" in data and "gloo_ring" in data, data
    return data


def answers(name: str, data) -> list[tuple[str, str]]:
    """(right answer, a wrong one) for every question of the lesson, in order, from a headless walk."""
    run, out = LessonRun(lesson(name), data), []
    for i in range(len(run.pages)):
        run.open(i)
        while run.replay.can_forward:
            q = run.pending()
            if q is None:
                run.forward()
                continue
            right = run.answer("").right
            wrong = next(c for c in q.choices if c != right) if q.kind == "choice" else "999"
            out.append((right, wrong))
    return out


def test_the_lessons_are_in_the_issues_order_and_unknown_names_fail():
    assert NAMES == ["one-device", "data-parallel", "ps-vs-ring", "ring", "latency-bandwidth", "zero-fsdp",
                     "measured"]
    with pytest.raises(LessonError, match="choose from one-device"):
        lesson("nope")


@pytest.mark.parametrize("name", NAMES)
def test_a_headless_walk_scores_right_and_wrong_answers(name, measured):
    """Questions alternately answered right and wrong; a question blocks the step it is about."""
    expected = answers(name, measured)
    run, k = LessonRun(lesson(name), measured), 0
    assert run.total == len(expected) >= 1
    for i in range(len(run.pages)):
        run.open(i)
        assert run.narration()
        while run.replay.can_forward:
            q = run.pending()
            if q is None:
                run.forward()
                continue
            with pytest.raises(LessonError, match="answer the question first"):
                run.forward()
            v = run.answer(expected[k][(k + 1) % 2])  # wrong first: the Pilot walk answers the other way
            assert v.ok == (k % 2 == 1) and v.right == expected[k][0] and v.reason
            assert run.replay.step == q.step or run.pending() is not None  # the step applied, or a 2nd question on it
            k += 1
    assert run.asked == run.total and run.right == run.total // 2


@pytest.mark.parametrize("name", NAMES)
async def test_each_lesson_under_pilot(name, measured):
    """Every page opens with its narration; questions alternately right and wrong (the headless walk
    answers each the other way), and the score on screen counts them."""
    expected = answers(name, measured)
    app = learn_app(name, measured)
    async with app.run_test(size=SIZE) as pilot:
        given = 0
        for page in range(len(app.screen.run.pages)):
            screen = app.screen
            text = screen.query_one("#narration").content.plain
            assert screen.run.page.title in text and screen.run.narration().split("\n")[0][:40] in text
            for _ in range(200):  # end: on to the next question (or the page's end)
                await pilot.press("end")
                if type(app.screen).__name__ == "PromptScreen":
                    await pilot.press(*expected[given][given % 2], "enter")
                    given += 1
                elif not app.screen.replay.can_forward:
                    break
            if page + 1 < len(app.screen.run.pages):
                await pilot.press("n")
                await pilot.pause()
                assert app.screen.run.index == page + 1
        run = app.screen.run
        assert given == len(expected) == run.total == run.asked
        assert run.right == (run.total + 1) // 2
        assert f"score {run.right}/{run.total}" in app.screen.query_one("#narration").content.plain


# -- the lessons' facts, from the simulator ------------------------------------------------------
def _text(name, data=None) -> str:
    run, out = LessonRun(lesson(name), data or {}), []
    for i in range(len(run.pages)):
        run.open(i)
        out.append(run.narration())
        run.replay.seek_step(run.replay.n_steps - 1)
        out.append(run.narration())
    return "\n".join(out)


def test_one_device_states_the_model_state_and_the_peak():
    prog = compile_step(parse_model("mlp:4x1024"), 1, TrainConfig(strategy="ddp"), parse_device("cpu"))
    sim = simulate(prog, parse_topology("switch:1"))
    peak = memory_timeline(prog, sim.start, sim.end).peak(0)[0]
    text = _text("one-device")
    assert f"peaks at {format_dec_bytes(peak)}" in text and "16 bytes per parameter" in text


def test_data_parallel_states_the_bytes_sent_and_the_gloo_result(measured):
    prog = compile_step(parse_model("mlp:4x1024"), 4, TrainConfig(strategy="ddp"), parse_device("cpu"))
    text = _text("data-parallel", measured)
    assert f"rank 0 has sent {format_dec_bytes(traffic(prog).sent[0])}" in text
    res = measured["dp_equivalence"]
    assert "the same weights" in text and f"{res['max_abs_diff']:.2e}" in text


def test_ps_against_ring_times_come_from_the_simulator():
    def t(algo, n):
        prog = build("all-reduce", algo, n, 64 << 20)
        return simulate(prog, parse_topology(f"switch:{n}")).makespan

    text = _text("ps-vs-ring")
    assert f"N=16: ps {format_seconds(t('ps', 16))}, ring {format_seconds(t('ring', 16))}" in text


def test_ring_answers_and_bandwidths_are_the_simulators():
    prog = build("all-reduce", "ring", 4, 64 << 20)
    topo = parse_topology("switch:4")
    sim = simulate(prog, topo)
    run = LessonRun(lesson("ring"))
    run.forward()
    q = run.pending()
    seg = int(q.prompt.split("segment s")[1][0])
    v = run.answer("0")
    done = np.flatnonzero(prog.step <= 1)
    lay = layout(prog, done.size)
    assert v.right == "{" + ",".join(map(str, lay.contributors(0, 2, seg))).replace("0,1,2", "0-2") + "}"
    text = _text("ring")
    busbw = 64 * 2**20 / sim.makespan * 2 * 3 / 4
    assert f"busbw = algbw x 2(N-1)/N = {busbw / 1e9:.2f} GB/s" in text and f"= {format_bytes(96 << 20)} per rank" in text


def test_fsdp_lesson_reads_the_zero_papers_table_from_the_programs():
    text = _text("zero-fsdp")
    assert "ddp (nothing sharded) 120GB" in text and "zero1 (optimizer state sharded) 31.4GB" in text
    assert "zero2 (+ gradients sharded) 16.6GB" in text


def test_measured_lesson_compares_the_gloo_trace(measured):
    tr = measured["gloo_ring"]
    ran = tr.ran
    text = _text("measured", measured)
    assert f"measured {format_seconds(float(tr.end[ran].max() - tr.start[ran].min()))}" in text


def test_learn_lists_and_prints_a_lesson(capsys):
    assert main(["learn"]) == 0
    out = capsys.readouterr().out
    assert all(f"{i}. {n}" in out for i, n in enumerate(NAMES, 1))
    assert main(["learn", "ring", "--text"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nQ (before step") == 4 and "A: {0-2}." in out
    assert main(["learn", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_demo_takes_sims_arguments(capsys):
    assert main(["demo", "--algo", "ps", "--ranks", "4", "--size", "4MiB", "--text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("all-reduce (ps) on 4 ranks, 4MiB")
    assert main(["demo", "--algo", "nope", "--text"]) == 2


async def test_a_in_replay_predicts_the_next_step_and_scores():
    from test_tui_app import RING4

    from rankscope.tui.app import replay_app

    app = replay_app([RING4], ["ring4.trace"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("right", "a")  # step 1: rank 0 -> 1, so: who sends to rank 1?
        assert type(app.screen).__name__ == "PromptScreen"
        await pilot.press("0", "enter")
        assert screen.replay.step == 1 and screen.predicted == [1, 1]
        await pilot.press("a", "3", "enter")
        assert screen.replay.step == 2 and screen.predicted == [1, 2]


def test_rank_answers_read_as_a_student_types_them():
    from rankscope.tui.lessons.model import parse_ranks

    assert parse_ranks("rank2", 4) == parse_ranks("rank 2", 4) == parse_ranks("r2", 4) == {2}
    assert parse_ranks("{0,2-3}", 4) == {0, 2, 3} and parse_ranks("ranks 1-2", 4) == {1, 2}
    with pytest.raises(ValueError):
        parse_ranks("0-99999999999", 4)  # a typo is a wrong answer at once, not a set of 10^11 ranks
