"""Lesson 6: ZeRO and FSDP: what each stage shards, the all-gather before a unit's forward and the
free after it, the reduce-scatter of gradients, and the memory per stage.

The table is the ZeRO paper's (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", SC'20, figure 1: Psi = 7.5B, N = 64, mixed-precision Adam), read from
the persistent buffers of ``simulator.training.compile_step``'s programs, not from the formula.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.training import TrainConfig, compile_step
from rankscope.simulator.units import format_dec_bytes

from ..replay import Replay
from . import facts
from .model import Lesson, Page, Question

STAGES = (("ddp", "nothing sharded"), ("zero1", "optimizer state sharded"),
          ("zero2", "+ gradients sharded"), ("zero3", "+ parameters sharded (FSDP)"))


@lru_cache(maxsize=1)
def paper_table() -> list[tuple[str, str, int]]:
    """(strategy, what it shards, model-state bytes per rank) for Psi = 7.5B on 64 ranks."""
    out = []
    for s, what in STAGES:
        p = compile_step(parse_model("params:7.5e9"), 64, TrainConfig(strategy=s), parse_device("h100"))
        out.append((s, what, sum(b.nbytes for b in p.buffers if b.category in ("param", "grad", "optim"))))
    return out


@lru_cache(maxsize=1)
def _fsdp():
    return facts.training_step("mlp:4x1024", 4, "zero3")


def _what_now(r: Replay) -> str:
    colls = facts.collectives(r)
    if colls:
        kind, buf, nbytes = colls[0]
        unit = facts.unit_of(buf)
        if kind == "all-gather":
            return (f"now: all-gather of {unit}: each rank sends its shard and receives the others', so all "
                    f"hold {unit}'s full {format_dec_bytes(nbytes)} in '{buf}' until it is freed after use.")
        return (f"now: {kind} of {unit}'s gradients ({format_dec_bytes(nbytes)}): each rank keeps the sum of "
                f"its own shard only, then frees the full-size gradient.")
    labels = facts.compute_labels(r)
    return f"now: {labels[0]}." if labels else ""


def fsdp(data: dict[str, Any]) -> list[Page]:
    tr = _fsdp()
    p = tr.program
    table = "; ".join(f"{s} ({what}) {format_dec_bytes(b)}" for s, what, b in paper_table())
    ag = facts.steps_with(p, lambda o: p.kind[o] == OpKind.COLLECTIVE
                          and p.coll_kind[p.arg[o]] == CollKind.ALL_GATHER)
    rs = facts.steps_with(p, lambda o: p.kind[o] == OpKind.COLLECTIVE
                          and p.coll_kind[p.arg[o]] == CollKind.REDUCE_SCATTER)
    units = tuple(dict.fromkeys(facts.unit_of(b.name) for b in p.buffers if b.category == "param_unsharded"))

    def words(r: Replay) -> str:
        return "\n".join(x for x in (
            "ZeRO shards the model state over the N data-parallel ranks, one stage at a time. Model state "
            f"per rank for 7.5B parameters on 64 ranks (ZeRO paper, figure 1): {table}.",
            "Here FSDP (ZeRO-3) runs mlp:4x1024 on 4 ranks: each rank keeps 1/4 of every unit's parameters "
            "(param), all-gathers a unit just before its forward (param_unsharded) and frees it after; "
            "backward all-gathers again and reduce-scatters the gradients back to shards.",
            _what_now(r)) if x)

    qs = (Question(ag[1], "Which unit is all-gathered next?", "choice",
                   answer=lambda r: facts.unit_of(facts.collectives(r)[0][1]),
                   reason=lambda r: "units are gathered in the order forward uses them: "
                                    + facts.collectives(r)[0][1] + ".",
                   choices=units),
          Question(rs[0], "The last unit's backward has run. Which collective runs next?", "choice",
                   answer=lambda r: facts.collectives(r)[0][0],
                   reason=lambda r: "each rank needs the sum of its own shard of the gradients only: a "
                                    "reduce-scatter, half an all-reduce.",
                   choices=("all-reduce", "all-gather", "reduce-scatter", "broadcast")))
    return [Page("FSDP: shards, all-gathers and reduce-scatters", lambda: tr, words, qs, view="training")]


LESSONS = (
    Lesson("zero-fsdp", "ZeRO and FSDP: sharding the model state",
           "what each stage shards, the all-gather before a unit's forward and its free after, the "
           "reduce-scatter of gradients, memory per stage", fsdp),
)
