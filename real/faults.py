"""Injected faults, for testing what a failing rank does to a run.

``--inject-fault raise:RANK:STEP`` (hidden option) or ``RANKSCOPE_INJECT_FAULT=kill:RANK:STEP``:
rank RANK raises :class:`InjectedFault` (``raise``), sends itself SIGKILL (``kill``) or stops
answering, sleeping until it is killed (``hang``: its peers time out) just before
it starts its first wave of step STEP or later (at the end of its ops if it has none that late).
The run must then end within ``--timeout`` with the failing rank named, no process left behind,
and a partial trace marked incomplete.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from rankscope.simulator.errors import UsageError

ENV = "RANKSCOPE_INJECT_FAULT"


class InjectedFault(RuntimeError):
    """The exception a ``raise`` fault throws."""


@dataclass(frozen=True)
class Fault:
    kind: str   # "raise" | "kill" | "hang"
    rank: int
    step: int

    def due(self, rank: int, step: int) -> bool:
        return rank == self.rank and step >= self.step

    def fire(self) -> None:
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        while self.kind == "hang":
            time.sleep(3600)
        raise InjectedFault(f"injected fault: rank {self.rank} raised at step {self.step}")


def parse_fault(text: str | None) -> Fault | None:
    """``raise|kill|hang:RANK:STEP``; None/empty gives the environment's, if any."""
    text = text or os.environ.get(ENV) or ""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("raise", "kill", "hang") or not all(p.isdigit() for p in parts[1:]):
        raise UsageError(f"bad fault {text!r}: use raise:RANK:STEP, kill:RANK:STEP or hang:RANK:STEP")
    return Fault(parts[0], int(parts[1]), int(parts[2]))
