"""Measured against simulated: provenance after each step, and the result against the native one.

A rank can check itself: its buffers after it finished its ops of step s depend only on the ops of
steps <= s that it received (the builders' steps never read and write one place at once, and ops
are applied in step order), so rank r compares its own decoded buffers with row r of
``layout(program)`` advanced to the end of step s; no barrier is needed. Every mismatch is a
JSON-able dict; :func:`first` picks the earliest (step, then rank, then byte offset) and
:func:`describe` says it in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankscope.simulator.program import Program
from rankscope.simulator.provenance import layout

from .encoding import PROBLEMS, Encoding, ranks_of


def _fmt(ranks: list[int]) -> str:
    return "{" + ",".join(map(str, ranks)) + "}"


def chunk_of(prog: Program, buf: int, lo: int, hi: int) -> int:
    """The smallest chunk of ``buf`` that contains bytes [lo, hi), or -1."""
    sel = np.flatnonzero((prog.chunk_buf == buf) & (prog.chunk_off <= lo)
                         & (prog.chunk_off + prog.chunk_len >= hi))
    return int(sel[np.argmin(prog.chunk_len[sel])]) if sel.size else -1


class Checker:
    """Compares one rank's decoded buffers with the simulator's layout, step by step."""

    def __init__(self, prog: Program, enc: Encoding, rank: int):
        self.prog, self.enc, self.rank = prog, enc, rank
        self.lay = layout(prog, 0)
        self.sorted = not np.any(np.diff(prog.step) < 0)
        self.bounds = prog.step_bounds() if self.sorted else None

    def _advance(self, step: int) -> None:
        if self.sorted:
            self.lay.advance_to(int(self.bounds[min(step + 1, self.bounds.size - 1)]))
        else:
            self.lay = layout(self.prog, self.prog.step <= step)

    def check(self, step: int, buffers: list[np.ndarray]) -> dict[str, Any] | None:
        """The first segment whose measured provenance differs from the simulated one after ``step``
        (-1: before any op; ``n_steps - 1``: the end), or None."""
        self._advance(step)
        n = self.prog.nranks
        for b, flat in enumerate(buffers):
            bounds = self.lay.bounds[b]
            dec = self.enc.decode(flat, bounds)
            want = self.lay.bits[b][self.rank]
            bad = np.flatnonzero((dec.bits != want).any(axis=1) | (dec.problem != 0))
            if bad.size:
                s = int(bad[0])
                lo, hi = int(bounds[s]), int(bounds[s + 1])
                return {"kind": "provenance", "step": int(step), "rank": self.rank, "buffer": b,
                        "lo": lo, "hi": hi, "chunk": chunk_of(self.prog, b, lo, hi),
                        "measured": ranks_of(dec.bits[s], n), "expected": ranks_of(want[s], n),
                        "problem": PROBLEMS.get(int(dec.problem[s]), "")}
        return None


def compare_native(prog: Program, enc: Encoding, rank: int, result: np.ndarray, native: np.ndarray,
                   lo: int, hi: int) -> dict[str, Any] | None:
    """The first element of ``result[lo:hi]`` (flat items of buffer 0) that differs from ``native``."""
    got = result[lo:hi].reshape(-1, enc.words)
    want = native.reshape(-1, enc.words)
    diff = np.flatnonzero((got != want).any(axis=1))
    if not diff.size:
        return None
    e = int(diff[0])
    byte = lo * enc.itemsize + e * enc.elem_bytes
    out = {"kind": "native", "step": prog.n_steps - 1, "rank": rank, "buffer": 0, "lo": byte,
           "hi": byte + enc.elem_bytes, "chunk": chunk_of(prog, 0, byte, byte + enc.elem_bytes)}
    if enc.provenance:
        bits, _ = enc.bitsets(np.stack([got[e], want[e]]))
        out["measured"], out["expected"] = ranks_of(bits[0], prog.nranks), ranks_of(bits[1], prog.nranks)
    return out


def first(mismatches: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest mismatch: lowest step, then rank, then byte offset (provenance before native)."""
    if not mismatches:
        return None
    return min(mismatches, key=lambda m: (m["step"], m["kind"] != "provenance", m["rank"], m["lo"]))


def describe(m: dict[str, Any], prog: Program) -> str:
    where = (f"rank {m['rank']}, chunk {m['chunk']} (bytes {m['lo']}..{m['hi']} of "
             f"{prog.buffers[m['buffer']].name!r})")
    if m["kind"] == "native":
        what = f"native {prog.meta.get('collective')} gives {_fmt(m.get('expected', []))}, " \
               f"the program {_fmt(m.get('measured', []))}" if "measured" in m else \
               "the program's result differs from the native collective's"
        return f"result differs from the native collective at {where}: {what}"
    why = f" ({m['problem']})" if m.get("problem") else ""
    return (f"measured provenance differs from the simulator's after step {m['step']} at {where}: "
            f"measured {_fmt(m['measured'])}, simulated {_fmt(m['expected'])}{why}")
