"""How fast the TUI opens and steps through the ring all-reduce on 1024 ranks (2.1M ops), and
how fast each lesson opens and steps.

    python benchmarks/tui_speed.py [--ranks 1024] [--size 256MiB] [--steps 50]
    python benchmarks/tui_speed.py --lessons [--steps 20] [--turns 10]
    python benchmarks/tui_speed.py --nccl nodes:2x8,gpu=h100 [--nccl-algo tree] [--size 64MiB]

``--lessons``: for every lesson of ``rankscope learn``, from building it (its pages' programs,
simulated) to its first screen drawn (target <= 2 s), then ``--steps`` steps to the right with the
narration and the network picture or the lanes redrawn (target p50 <= 50 ms key->frame); a
question in the way is answered without the screen first. For a lesson of more than one page, then
``--turns`` page turns (``n`` and ``p`` in turn): key->frame p50, and the memory that each turn
left held (tracemalloc, the same page on screen before and after; target: no page kept, a few kB
of caches filling). The gloo measurements the CLI makes for two lessons are not part of it (their
pages open without them).

``--nccl TOPOLOGY``: NCCL's all-reduce of ``--size`` on that GPU cluster (``--nccl-algo`` restricts
the choice as ``rankscope sim --nccl-algo`` does) instead of the ring; its program has a buffer
per ring, tree channel slot or NVLS head, and after the steps below ``b`` (the next buffer in the
grid) is timed the same way.

Builds ``build("all-reduce", "ring", N, S)``, simulates it on ``switch:N``, writes the trace to a
temp file; then, as ``rankscope replay`` would, reads it and opens it in the app under
``App.run_test()`` at 120x40. Prints:
- open: from reading the file to the first screen drawn (target <= 2 s on 2 cores);
- step redraw p50/p90 (target p50 <= 50 ms), three ways, because the asked-for measure has a
  floor that is not the app's: ``pilot.press`` + ``pilot.pause()`` wait for the process to go
  idle in 20 ms sleeps (textual/_wait.py), so an empty app already takes ~60 ms per press.
    press+pause  wall time of ``await pilot.press("right"); await pilot.pause()``;
    key->frame   from sending the key to the last frame the compositor produced for it;
    cpu          process CPU time spent per press (all the work; the waits cost none);
  and the same press+pause on an empty app, the harness floor;
- step back (left) the same way, and a jump to the last step (``end``), which advances the
  whole layout (the slowest move there is);
- the replay cursor alone (no screen): forward and back per step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.app import App  # noqa: E402

from rankscope.simulator.collectives import build  # noqa: E402
from rankscope.simulator.engine import simulate  # noqa: E402
from rankscope.simulator.topology import parse_topology  # noqa: E402
from rankscope.simulator.trace import read_trace, write_trace  # noqa: E402
from rankscope.simulator.units import parse_size  # noqa: E402
from rankscope.tui.app import replay_app  # noqa: E402
from rankscope.tui.replay import Replay  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(xs: list[float]) -> str:
    if not xs:
        return "(no frame: nothing changed)"
    return f"p50 {1e3 * statistics.median(xs):6.1f} ms  p90 {1e3 * pct(xs, 0.9):6.1f} ms"


async def presses(app, pilot, key: str, n: int) -> dict[str, list[float]]:
    """Wall, key->frame and CPU time of ``n`` presses of ``key`` (see the module docstring)."""
    frames: list[float] = []
    display = app._display  # every frame the compositor makes passes through here

    def spy(screen, update):
        frames.append(time.perf_counter())
        return display(screen, update)

    app._display = spy
    out: dict[str, list[float]] = {"press+pause": [], "key->frame": [], "cpu": []}
    for _ in range(n):
        frames.clear()
        t, c = time.perf_counter(), time.process_time()
        await pilot.press(key)
        await pilot.pause()
        out["press+pause"].append(time.perf_counter() - t)
        out["cpu"].append(time.process_time() - c)
        if frames:
            out["key->frame"].append(frames[-1] - t)
    app._display = display
    return out


def report(name: str, times: dict[str, list[float]]) -> None:
    for what, xs in times.items():
        print(f"{name:<12} {what:<12} {ms(xs)}")


async def drive(path: str, steps: int) -> None:
    t0 = time.perf_counter()
    trace = read_trace(path)
    t_read = time.perf_counter() - t0
    app = replay_app([trace], [os.path.basename(path)])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        t_open = time.perf_counter() - t0
        print(f"open: {t_open:.2f} s (read_trace {t_read:.2f} s)   target <= 2 s")
        report("step right", await presses(app, pilot, "right", steps))
        if len(app.screen.replay.data_buffers) > 1:
            report("buffer (b)", await presses(app, pilot, "b", steps // 2))
        report("step left", await presses(app, pilot, "left", steps // 2))
        t = time.perf_counter()
        await pilot.press("end")
        await pilot.pause()
        print(f"jump to the last step (end): {time.perf_counter() - t:.2f} s")
        report("left at end", await presses(app, pilot, "left", 5))
    empty = App()
    async with empty.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        report("empty app", await presses(empty, pilot, "right", steps))


def cursor_only(path: str, steps: int) -> None:
    r = Replay(read_trace(path))
    fwd, back = [], []
    for _ in range(steps):
        t = time.perf_counter()
        r.forward()
        fwd.append(time.perf_counter() - t)
    for _ in range(steps):
        t = time.perf_counter()
        r.back()
        back.append(time.perf_counter() - t)
    print(f"replay cursor alone: forward {ms(fwd)}; back {ms(back)}")


async def page_turns(app, pilot, n: int) -> str:
    """Key->frame of ``n`` page turns, then the bytes still held per turn over ``n`` more."""
    times: list[float] = []
    for i in range(n):
        times += (await presses(app, pilot, "n" if i % 2 == 0 else "p", 1))["key->frame"]
    n -= n % 2  # an even count: the same page on screen at both ends of the memory measure

    def held() -> int:
        gc.unfreeze()  # what tui.heap froze is counted, and collected if it is garbage
        gc.collect()
        gc.freeze()
        return tracemalloc.get_traced_memory()[0]

    async def turn(k: int) -> None:
        for i in range(k):
            await pilot.press("n" if i % 2 == 0 else "p")
            await pilot.pause()

    tracemalloc.start()
    try:
        await turn(2)  # the page on screen at both ends, allocated while tracing (else counted once)
        start = held()
        await turn(n)
        kept = (held() - start) / max(n, 1)
    finally:
        tracemalloc.stop()
    return f"{len(times)} page turns: key->frame {ms(times)}; held {kept / 1e3:7.1f} kB a turn"


async def lessons(steps: int, turns: int) -> None:
    from rankscope.tui.app import learn_app
    from rankscope.tui.lessons import LESSONS

    for les in LESSONS:
        t0 = time.perf_counter()
        app = learn_app(les.name)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            t_open = time.perf_counter() - t0
            screen = app.screen
            out: dict[str, list[float]] = {"press+pause": [], "key->frame": [], "cpu": []}
            for _ in range(steps):
                if not screen.replay.can_forward:
                    break
                if screen.run.pending() is not None:
                    screen.run.answer("")
                    screen.replay.seek_step(screen.replay.step - 1)
                for k, v in (await presses(app, pilot, "right", 1)).items():
                    out[k] += v
            print(f"lesson {les.name:<18} open {t_open:5.2f} s (target <= 2 s); {len(out['cpu'])} steps: "
                  f"key->frame {ms(out['key->frame'])}; press+pause {ms(out['press+pause'])}; cpu {ms(out['cpu'])}")
            if turns and len(screen.run.pages) > 1:
                print(f"lesson {les.name:<18} {await page_turns(app, pilot, turns)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lessons", action="store_true", help="time every lesson instead")
    ap.add_argument("--nccl", metavar="TOPOLOGY", help="NCCL's all-reduce on this GPU cluster instead of the ring")
    ap.add_argument("--nccl-algo", help="with --nccl: the algorithms NCCL may pick, as NCCL_ALGO")
    ap.add_argument("--turns", type=int, default=10, help="page turns per lesson of two pages or more (--lessons)")
    a = ap.parse_args()
    if a.lessons:
        asyncio.run(lessons(min(a.steps, 20), a.turns))
        return
    n = a.ranks
    t = time.perf_counter()
    if a.nccl:
        from rankscope.simulator.nccl import nccl_collective, simulate_nccl

        topo = parse_topology(a.nccl)
        prog, ch = nccl_collective("all-reduce", topo, parse_size(a.size), algo=a.nccl_algo)
        sim, view, _ = simulate_nccl(prog, topo)
        trace, n = sim.to_trace(prog, view), prog.nranks
        what = f"NCCL {ch.algo}/{ch.proto} all-reduce on {a.nccl} ({len(prog.buffers)} buffers, {prog.n_ops} ops)"
    else:
        prog = build("all-reduce", "ring", n, parse_size(a.size))
        topo = parse_topology(f"switch:{n}")
        trace = simulate(prog, topo).to_trace(prog, topo)
        what = f"ring all-reduce, {n} ranks"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"allreduce_{n}.trace")
        write_trace(path, trace)
        del trace, prog
        print(f"{what}, {a.size}: built, simulated and written in "
              f"{time.perf_counter() - t:.1f} s ({os.path.getsize(path) / 1e6:.0f} MB)")
        asyncio.run(drive(path, a.steps))
        cursor_only(path, a.steps)


if __name__ == "__main__":
    main()
