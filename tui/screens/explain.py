"""What ``?`` says about the screen under it, beyond its keys: what each thing on it means, for
the view and zoom level showing now. Built from the widgets' own constants (colours, glyphs,
categories), so the help cannot drift from what is drawn."""

from __future__ import annotations

from rich.text import Text

from rankscope.simulator.memory import DESCRIPTIONS
from rankscope.simulator.sim_report import link_words
from rankscope.simulator.topology import DEFAULT_BW, DEFAULT_LAT

from .. import shards
from ..widgets import gantt, grid, memory

DEFAULTS = (f"default links, switch:N: {link_words({'preset': 'switch', 'bw': DEFAULT_BW, 'lat': DEFAULT_LAT})}; "
            "ring:N: the same links, alpha = 1 link; --bw and --lat change them.")
"""The default links in the words ``--help`` and ``rankscope sim`` use (``sim_report.link_words``)."""


def swatch(t: Text, colour: str, name: str, what: str = "") -> None:
    t.append("■ ", style=colour)
    t.append(name, style="bold")
    t.append(f" {what}\n" if what else "  ")


def collective(mode: str, buffers: int = 1, shown: str = "") -> Text:
    """The collective view's words; ``buffers`` data buffers in the program, ``shown`` the
    grid's title for the one shown (:func:`tui.views.text.buffer_words`) where there are several."""
    t = Text()
    t.append("provenance grid ", style="bold underline")
    if buffers > 1:
        t.append(f"(zoom now: {mode}): a row per rank, a column per segment of the buffer shown. The "
                 f"program cuts its message into {buffers} buffers (NCCL: one per ring, tree channel or "
                 f"NVLS head, each a slice of the message); now {shown}. b shows the next buffer, B the "
                 "previous; bytes moved, algbw and busbw are always the whole message's.\n")
    else:
        t.append(f"(zoom now: {mode}): a row per rank, a column per segment of buffer 0.\n")
    if mode == "sets":
        t.append("a cell is the set of ranks whose input that segment holds: {0,2} or 1-3 or all.\n")
    elif mode == "bars":
        t.append("a cell is a bar: the taller and greener, the more ranks' inputs it holds.\n")
    else:
        t.append("heat map: a glyph is a block of ranks x segments, coloured by the mean share of the "
                 "ranks whose input it holds:\n")
        for k, c in enumerate(grid.PALETTE):
            t.append(grid.HEAT, style=c)
            t.append(f" {100 * (k + 1) // len(grid.PALETTE)}%  " if k in (0, len(grid.PALETTE) - 1) else " ")
        t.append("\n")
    t.append("yellow", style="bold #1c1c1c on #ffd75f")
    t.append(" = written by the current step; z cycles auto / sets / bars / heat.\n")
    t.append("network ", style="bold underline")
    t.append("ranks on a ring, around a switch (SW) or by node (NIC: across nodes); arrows: this step's "
             "transfers (orange reduce, yellow copy); a red rank receives several at once (incast).\n")
    t.append("cursor ", style="bold underline")
    t.append("algbw = S x share moved / time; busbw = algbw x the nccl-tests factor (2(N-1)/N for "
             "all-reduce): comparable with one link's bandwidth whatever N.\n")
    return t


def training(fsdp: bool) -> Text:
    t = Text()
    t.append("lanes ", style="bold underline")
    t.append("per rank, a compute and a comm row, or a row per collective stream where the trace records "
             "them (ag all_gather, rs reduce_scatter: collectives of two streams that run at once are two "
             "bars on two rows); a bar is an op, labelled when it fits (a one-letter bar: a for all-gather, "
             "r for reduce-scatter or all-reduce, f/b fwd/bwd):\n")
    for k, c in gantt.COLOURS.items():
        swatch(t, c, k)
    t.append("\nz magnifies time around the cursor, in the lanes and the chart at once.\n")
    t.append("memory ", style="bold underline")
    t.append("rank's live bytes over time, stacked (persistent state at the bottom), peak ▼, cursor ▲:\n")
    for name, c in memory.COLOURS.items():
        swatch(t, c, name, DESCRIPTIONS[name])
    if fsdp:
        t.append("FSDP units ", style="bold underline")
        t.append(f"{shards.FULL} a rank holds the unit's full copy, {shards.FILLING} its collective runs "
                 f"now, {shards.NONE} the rank keeps its shard only. o opens a collective as its ring.\n")
    return t


def compare() -> Text:
    t = Text()
    t.append("compare ", style="bold underline")
    t.append("A is the model (the simulated trace), B the measurement. steps: the time each step adds, "
             "in A and in B; error = (A - B) / B; the last column marks steps beyond the threshold. ops: "
             "the current step's ops joined on op id (or collective by collective), A and B durations "
             "and their error. d goes to the first divergence.\n")
    return t
