"""Lesson 7: measured against simulated: the same ring all-reduce run on gloo ranks (by the CLI,
handed in as ``data["gloo_ring"]``) and simulated, compared step by step with
``simulator.compare``."""

from __future__ import annotations

from typing import Any

from rankscope.simulator.compare import compare
from rankscope.simulator.engine import simulate
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.units import format_bytes, format_seconds

from ..replay import Replay
from . import facts
from .model import Lesson, Page, Question

RING = ("all-reduce", "ring", 4, 4 << 20)
"""What the CLI runs on gloo for this lesson: ring all-reduce, 4 ranks, 4 MiB."""


def _twin(measured):
    topo = parse_topology(f"switch:{measured.program.nranks}")
    return simulate(measured.program, topo).to_trace(measured.program, topo, {"example": "lesson"})


def measured_vs_simulated(data: dict[str, Any]) -> list[Page]:
    measured = data.get("gloo_ring")
    sim = facts.collective(*RING)
    if measured is None:
        why = data.get("gloo_ring_error") or "no run was asked for (--no-run)"

        def alone(r: Replay) -> str:
            return (f"This lesson compares a ring all-reduce measured on gloo ranks with its simulation. "
                    f"The gloo run did not happen here: {why}. Shown: the simulated ring alone "
                    f"({format_seconds(sim.makespan)} on switch:4).")
        return [Page("simulated ring (no gloo run)", lambda: sim, alone)]
    twin = _twin(measured)
    c = compare(twin, measured, names=("simulated", "gloo"))
    s, steps = c.summary(), c.by_step()

    def words(r: Replay) -> str:
        lines = [f"The same ring all-reduce of {format_bytes(RING[3])} on {RING[2]} gloo ranks (processes on "
                 f"this machine, TCP through the loopback) and simulated with 25 GB/s and 5 us links: "
                 f"simulated {format_seconds(s['total_model'])}, measured {format_seconds(s['total_measured'])} "
                 f"({100 * s['total_error']:+.0f}%). The same steps, the same bytes, the same order: the "
                 f"schedule is the model's; its constants (a fast interconnect's links) are not those of "
                 f"TCP between processes on one host, which pays gloo's per-message costs and memory "
                 f"copies. `rankscope calibrate` measures alpha and beta on these ranks instead.",
                 "first step beyond 10%: " + ("none" if s["first_divergence_step"] is None
                                              else f"step {s['first_divergence_step']}")]
        if r.step >= 0:
            row = steps[r.step]
            lines.append(f"step {r.step} ({r.phase()}): simulated {format_seconds(row['model'])}, measured "
                         f"{format_seconds(row['measured'])} ({100 * row['error']:+.0f}%).")
        return "\n".join(lines)

    q = (Question(1, "In the measured run, which rank sends to rank 0 in the second step?", "ranks",
                  answer=lambda r: facts.senders_to(r, 0),
                  reason=lambda r: "the same program as simulated, so the same ring: " + facts.why_senders(r, 0)),)
    return [Page("measured on gloo, against the simulation", lambda: measured, words, q),
            Page("the simulated twin", lambda: twin, words)]


LESSONS = (
    Lesson("measured", "Measured against simulated",
           "the same ring on gloo ranks and in the simulator, compared step by step",
           measured_vs_simulated, needs=("gloo_ring",)),
)
