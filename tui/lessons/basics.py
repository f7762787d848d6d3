"""Lessons 1 and 2: one device, then the same model data-parallel on N ranks.

The training step is ``simulator.training.compile_step`` of mlp:4x1024 on the cpu device model;
model state is the ZeRO paper's accounting (Rajbhandari et al., SC'20, section 3: 2 + 2 + 12 bytes
per parameter in bf16 mixed precision with Adam). The data-parallel equivalence is measured by
``rankscope.real.dp_equivalence`` on gloo ranks, run by the CLI and handed in as ``data``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rankscope.simulator.memory import live_memory
from rankscope.simulator.program import OpKind
from rankscope.simulator.units import format_count, format_dec_bytes

from ..replay import Replay
from . import facts
from .model import Lesson, Page, Question

MODEL = "mlp:4x1024"
EXPLAIN = {
    "forward": "computes the layer's output from its input and keeps its activations for backward",
    "backward": "computes the layer's gradients from the activations forward kept, then frees them",
    "optimizer": "updates every parameter from its gradient (Adam: two moments per parameter)",
}


@lru_cache(maxsize=8)
def _step(n: int, strategy: str):
    return facts.training_step(MODEL, n, strategy)


_LIVE: dict[int, tuple] = {}


def _live(trace):
    """The trace's live memory, computed once per trace (a narration is drawn at every step)."""
    hit = _LIVE.get(id(trace))
    if hit is None or hit[0] is not trace:
        if len(_LIVE) > 8:
            _LIVE.clear()
        hit = _LIVE[id(trace)] = (trace, live_memory(trace.program, trace.start, trace.end,
                                                    float(trace.start[trace.ran].min())))
    return hit[1]


def _memory_words(r: Replay) -> str:
    mem = _live(r.trace)
    now = mem.at(r.time)[0]
    parts = ", ".join(f"{c} {format_dec_bytes(int(b))}" for c, b in zip(mem.categories, now) if b)
    return f"rank 0 holds {format_dec_bytes(int(now.sum()))} now ({parts or 'nothing'})"


def _now(r: Replay) -> str:
    """What the current step does, in words."""
    labels = facts.compute_labels(r)
    colls = facts.collectives(r)
    p, ops = r.program, r.step_ops()
    if labels:
        word = facts.phase_word(labels[0])
        return f"now: {labels[0]}: the {word} {EXPLAIN[word]}."
    if colls:
        kind, _, nbytes = colls[0]
        sent = int(p.op_bytes[ops[p.kind[ops] == OpKind.COLLECTIVE]].max(initial=0))
        return (f"now: {kind} of {format_dec_bytes(nbytes)} of gradients; rank 0 sends "
                f"{format_dec_bytes(sent)}" + (" (one rank: nobody to sum with)" if r.nranks == 1 else "") + ".")
    kinds = {OpKind(int(k)).name.lower() for k in p.kind[ops]}
    names = sorted({p.buffers[int(p.arg[o])].name for o in ops if p.kind[o] in (OpKind.ALLOC, OpKind.FREE)})
    return f"now: {' and '.join(sorted(kinds))} of {', '.join(names)}." if names else ""


def _next_phase_question(p, word: str, prompt: str) -> Question:
    first = next(s for s in facts.steps_with(p, lambda o: p.kind[o] == OpKind.COMPUTE
                                              and facts.phase_word(p.compute_label[p.arg[o]]) == word))
    return Question(
        first, prompt, "choice",
        answer=lambda r: facts.phase_word(facts.compute_labels(r)[0]),
        reason=lambda r: f"the next compute op is {facts.compute_labels(r)[0]!r}: "
                         + EXPLAIN[facts.phase_word(facts.compute_labels(r)[0])] + ".",
        choices=("forward", "backward", "optimizer"))


def one_device(data: dict[str, Any]) -> list[Page]:
    tr = _step(1, "ddp")
    p = tr.program
    psi = int(p.meta["params"])
    state = {b.category: b.nbytes for b in p.buffers if b.category in ("param", "grad", "optim")}
    peak = live_memory(p, tr.start, tr.end).peak()[0][0]

    def narration(r: Replay) -> str:
        head = (f"One device runs one training step of {MODEL}: {format_count(psi)} parameters in bf16 "
                f"with Adam. Before any layer runs, the model state is allocated: parameters "
                f"{format_dec_bytes(state['param'])}, gradients {format_dec_bytes(state['grad'])}, "
                f"optimizer {format_dec_bytes(state['optim'])} = "
                f"{sum(state.values()) / psi:.0f} bytes per parameter. The step peaks at "
                f"{format_dec_bytes(int(peak))}.")
        return "\n".join(x for x in (head, _now(r), _memory_words(r)) if x)

    qs = (_next_phase_question(p, "backward", "The last layer's forward has run. What runs next?"),
          _next_phase_question(p, "optimizer", "Layer 0's backward has run. What runs next?"))
    return [Page("one device: forward, backward, optimizer", lambda: tr, narration, qs, view="training")]


def data_parallel(data: dict[str, Any]) -> list[Page]:
    n = 4
    tr = _step(n, "ddp")
    p = tr.program
    first_ar = facts.steps_with(p, lambda o: p.kind[o] == OpKind.COLLECTIVE)[0]
    grads = sum(b.nbytes for b in p.buffers if b.category == "grad")  # DDP: every rank's full copy

    def narration(r: Replay) -> str:
        head = (f"The same {MODEL} on {n} ranks, each with 1/{n} of the batch "
                f"({int(p.meta['micro_batch'])} samples per rank). After backward, rank r has the "
                f"gradient of its own samples only; the gradient of the whole batch is their sum "
                f"(their mean, for a mean loss), so the ranks all-reduce the {format_dec_bytes(grads)} "
                f"of gradients before the optimizer: every rank then takes the same step and the "
                f"copies stay equal. A ring all-reduce sends 2(N-1)/N x S = "
                f"{format_dec_bytes(facts.ring_bound(n, grads))} per rank.")
        return "\n".join(x for x in (head, _now(r), f"rank 0 has sent {format_dec_bytes(r.sent[0])}.") if x)

    q = (Question(first_ar, "Backward is done on every rank. Which collective runs next?", "choice",
                  answer=lambda r: facts.collectives(r)[0][0],
                  reason=lambda r: "the ranks must sum their gradients and each needs the whole sum: "
                                   "that is an all-reduce.",
                  choices=("all-reduce", "all-gather", "reduce-scatter", "broadcast")),
         Question(first_ar, "How many bytes will rank 0 have sent once this all-reduce is done?", "bytes",
                  answer=lambda r: format_dec_bytes(r.sent[0]),
                  reason=lambda r: f"2(N-1)/N x S with S = {format_dec_bytes(grads)} and N = {n}: "
                                   f"{format_dec_bytes(facts.ring_bound(n, grads))}."))
    pages = [Page(f"data parallel: {n} ranks, one all-reduce", lambda: tr, narration, q, view="training")]
    pages.append(Page("for real: gloo ranks against one device", lambda: tr, _equivalence_words(data),
                      view="training"))
    return pages


def _equivalence_words(data: dict[str, Any]):
    res, err = data.get("dp_equivalence"), data.get("dp_equivalence_error")

    def narration(r: Replay) -> str:
        if res is None:
            return ("This page shows a real run: N gloo ranks with batch b/N each against one process "
                    f"with batch b. It did not run here: {err or 'no run was asked for (--no-run)'}.")
        verdict = "the same weights" if res["equal"] else "DIFFERENT weights"
        return (f"Measured on {res['nranks']} gloo ranks, each with {res['per_rank_batch']} of every batch "
                f"of {res['batch']}, against one process with the whole batch, {res['steps']} SGD steps "
                f"of an MLP with {format_count(res['parameters'])} parameters: {verdict}. The largest "
                f"difference in any weight is {res['max_abs_diff']:.2e} (tolerance {res['tolerance']:.0e}, "
                f"float32 sums in another order), while training moved weights by up to "
                f"{res['max_update']:.2e}. Summing the gradients is what makes N small batches one big one.")
    return narration


LESSONS = (
    Lesson("one-device", "One device: a training step and its memory",
           "forward, backward and the optimizer of a small MLP, and the memory each needs", one_device),
    Lesson("data-parallel", "Data parallel: why the gradients are summed",
           "the same model on N ranks with a part of the batch each; a real gloo run ends with the "
           "weights of one device", data_parallel, needs=("dp_equivalence",)),
)
