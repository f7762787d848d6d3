"""Predict the next step in any replay (``a`` in the replay screen): a question made up for the
step after the cursor, whose answer is read from the simulator's state once the step is applied.

For a collective: which ranks send to a rank that receives in that step. For a training step: the
kind of the next collective, or whether forward, backward or the optimizer computes next.
"""

from __future__ import annotations

from rankscope.simulator.program import OpKind

from ..replay import Replay
from . import facts
from .model import Question


def next_question(r: Replay) -> Question | None:
    """A question about step ``r.step + 1``, or None at the end or for a step with nothing to ask."""
    s = r.step + 1
    if s >= r.n_steps:
        return None
    p, ops = r.program, r.step_ops(s)
    tr = ops[p.kind[ops] <= OpKind.COPY]
    if tr.size:
        dst = int(p.peer[tr[0]])
        return Question(s, f"Which ranks send to rank {dst} in step {s}?", "ranks",
                        answer=lambda q: facts.senders_to(q, dst), reason=lambda q: facts.why_senders(q, dst))
    colls = facts.collectives(r, s)
    if colls:
        return Question(s, f"Which collective runs in step {s}?", "choice",
                        answer=lambda q: facts.collectives(q)[0][0],
                        reason=lambda q: "it is " + ", ".join(f"{k} of {b!r}" for k, b, _ in facts.collectives(q)) + ".",
                        choices=("all-reduce", "all-gather", "reduce-scatter", "broadcast"))
    if facts.compute_labels(r, s):
        return Question(s, f"What computes in step {s}?", "choice",
                        answer=lambda q: facts.phase_word(facts.compute_labels(q)[0]),
                        reason=lambda q: f"step {s} runs {facts.compute_labels(q)[0]!r}.",
                        choices=("forward", "backward", "optimizer"))
    return None
