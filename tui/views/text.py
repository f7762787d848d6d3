"""The words the replay views print: the status block and the dependency details.

Plain functions from a :class:`~tui.replay.Replay` to Rich ``Text``, shared by the collective
and training views, so a label reads the same wherever it appears.
"""

from __future__ import annotations

from rich.text import Text

from rankscope.simulator.units import format_bytes, format_ranks, format_seconds

from ..deps import critical_path, describe_op, why_idle
from ..replay import Replay

PATH_SHOWN = 8  # a longer critical path shows its first two and last four ops


def where(r: Replay, sep: str = " · ") -> str:
    """``step 3 of 0-5 · all-gather 1/3``, or where a time position stands."""
    last = r.n_steps - 1
    if r.step < 0:
        head = f"start: no step run yet (steps 0-{last})"
    else:
        head = f"step {r.step} of 0-{last}" + (f"{sep}{r.phase()}" if r.phase() else "")
    if r.mode == "time" and not r.step_complete:
        head += f" (partial: {r.finished_count()} ops done)"
    return head


def bandwidth(bw: float | None) -> str:
    """GB/s with GB = 1e9 bytes, as nccl-tests prints it."""
    return "-" if bw is None else f"{bw / 1e9:.2f} GB/s"


def status_line(r: Replay) -> Text:
    """The status on one line: where, the time on the trace's clock, bytes moved."""
    t = Text(where(r), style="bold")
    t.append(f"   time {format_seconds(r.elapsed)} ({r.clock} clock)   "
             f"moved {format_bytes(r.moved)} of {format_bytes(r.total_bytes)}")
    return t


def status(r: Replay) -> Text:
    """Where the cursor is, the time on the trace's clock, bytes moved, algbw and busbw, one
    short line each (the panel is narrow so that the grid gets the width). Lines are cut, never
    wrapped: a long phase name must not push busbw out of the panel."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(where(r, "\n") + "\n", style="bold")
    if not r.phase():
        t.append("\n")
    t.append(f"time {format_seconds(r.elapsed) if r.elapsed else 0} ({r.clock})\n")
    share = f" ({100 * r.moved / r.total_bytes:.0f}%)" if r.total_bytes else ""
    t.append(f"moved {format_bytes(r.moved)}{share}\n")
    t.append(f"algbw {bandwidth(r.algbw())}\nbusbw {bandwidth(r.busbw())}")
    return t


def buffer_words(r: Replay, short: bool = False) -> str:
    """``buffer 2 of 4: ring1, 16MiB of the message's 64MiB`` (``short``: ``... 16MiB of 64MiB``):
    which slice of the message the grid shows, for programs that cut it into several data
    buffers (NCCL's rings, tree channels, NVLS heads); empty for one."""
    if len(r.data_buffers) < 2:
        return ""
    b = r.program.buffers[r.buffer]
    k = r.data_buffers.index(r.buffer) + 1 if r.buffer in r.data_buffers else "-"
    whole = f"of {format_bytes(r.message_bytes)}" if short else f"of the message's {format_bytes(r.message_bytes)}"
    return f"buffer {k} of {len(r.data_buffers)}: {b.name}, {format_bytes(b.nbytes)} {whole}"


def grid_titles(r: Replay) -> tuple[str, ...]:
    """The grid panel's titles, longest first (the panel shows the first that fits; the
    selection panel has the long one whole): the buffer whose segments it shows."""
    if not r.program.buffers:
        return ("provenance",)
    if len(r.data_buffers) > 1:
        return buffer_words(r), buffer_words(r, short=True)
    return (f"provenance: ranks x segments of {r.program.buffers[r.buffer].name!r}",)


def _path(r: Replay, op: int) -> str:
    path = critical_path(r, op)
    shown = [f"op {o}" for o in path]
    if len(shown) > PATH_SHOWN:
        shown = shown[:2] + [f"… {len(path) - 6} more …"] + shown[-4:]
    return f"critical path ({len(path)} ops): " + " -> ".join(shown)


def op_details(r: Replay, op: int) -> Text:
    """An op, when it ran, what it waits for directly, and the critical path to it."""
    p, tr = r.program, r.trace
    t = Text()
    t.append(describe_op(p, op) + "\n", style="bold")
    t.append(f"  step {int(p.step[op])}; ran {format_seconds(tr.start[op] - r.t0)} .. "
             f"{format_seconds(tr.end[op] - r.t0)}\n")
    deps = r.program.deps(op)
    if deps.size:
        t.append("  waits for: " + "; ".join(describe_op(p, int(d)) for d in deps[:3])
                 + (f"; +{deps.size - 3} more" if deps.size > 3 else "") + "\n")
    else:
        t.append("  waits for nothing\n")
    t.append("  " + _path(r, op) + "\n")
    return t


def cell_details(r: Replay, rank: int, seg: int) -> Text:
    """A grid cell of the shown buffer: its byte range, its full contribution set, the op that
    last wrote it."""
    lay, t = r.layout, Text()
    if not r.nsegments:
        return t
    buf = r.buffer
    lo, hi = int(lay.bounds[buf][seg]), int(lay.bounds[buf][seg + 1])
    name = r.program.buffers[buf].name
    t.append(f"rank {rank} · s{seg} · bytes {lo}..{hi} of {name!r}\n", style="bold")
    if words := buffer_words(r):  # the title may be cut short: the whole of it here
        t.append(words + "\n")
    who = lay.contributors(buf, rank, seg)
    t.append(f"{len(who)} of {r.nranks} contributions: {format_ranks(who, r.nranks)}\n")
    writer = r.last_writer(rank, seg, buf)
    if writer is None:
        t.append("holds its initial value: no transfer has written it yet\n")
    else:
        t.append("last written by ")
        t.append(op_details(r, writer))
    return t


def waiting(r: Replay, rank: int) -> Text:
    return Text(why_idle(r, rank).text, style="italic")
