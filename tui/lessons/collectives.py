"""Lessons 3 to 5: the parameter server against the ring, the ring step by step, latency against
bandwidth (and two levels of network).

Every program is a builder's (``simulator.collectives.build``) simulated on the default links
(25 GB/s, 5 us each; ``switch:N`` puts two links, so alpha = 10 us, between any two ranks). The
bound 2(N-1)/N x S per rank is Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for
clusters of workstations", JPDC 2009; busbw is nccl-tests' (doc/PERFORMANCE.md).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from rankscope.simulator.units import format_bytes, format_seconds

from ..replay import Replay
from ..views.text import bandwidth
from . import facts
from .model import Lesson, Page, Question

MiB = 1 << 20


@lru_cache(maxsize=32)
def _trace(coll: str, algo: str, n: int, nbytes: int, topology: str | None = None, nodes: int | None = None):
    return facts.collective(coll, algo, n, nbytes, topology, **({"nodes": nodes} if nodes else {}))


def _bytes_words(r: Replay) -> str:
    sent, got = r.sent, r.received
    k = int(np.argmax(got))
    return (f"so far: rank 0 sent {format_bytes(sent[0])} and received {format_bytes(got[0])}; the most "
            f"received by one rank is {format_bytes(got[k])} (rank {k}); time {format_seconds(r.elapsed)}.")


def _phase_words(r: Replay) -> str:
    return f"step {r.step}: {r.phase()}" if r.step >= 0 else "before the first step: every rank holds its own input."


def ps_vs_ring(data: dict[str, Any]) -> list[Page]:
    n, size = 8, 64 * MiB
    ns = (2, 4, 8, 16)
    times = {a: [_trace("all-reduce", a, k, size).makespan for k in ns] for a in ("ps", "ring")}
    table = "; ".join(f"N={k}: ps {format_seconds(a)}, ring {format_seconds(b)}"
                      for k, a, b in zip(ns, times["ps"], times["ring"]))

    def ps_words(r: Replay) -> str:
        head = (f"A parameter server: every rank sends its whole {format_bytes(size)} to rank 0, which "
                f"sums and sends the sum back. Rank 0's one link carries (N-1) x S = "
                f"{format_bytes((n - 1) * size)} each way: the incast. Time against N ({format_bytes(size)}): "
                f"{table}.")
        return "\n".join((head, _phase_words(r), _bytes_words(r)))

    def ring_words(r: Replay) -> str:
        head = (f"The ring: each rank sends only to its right neighbour, a 1/N chunk per step, 2(N-1) steps. "
                f"Every rank sends 2(N-1)/N x S = {format_bytes(facts.ring_bound(n, size))}, and no link "
                f"carries more than that: the time stays near 2S/B as N grows ({table}).")
        return "\n".join((head, _phase_words(r), _bytes_words(r)))

    ps_q = (Question(0, "Which rank receives from every other rank in the first step?", "rank",
                     answer=lambda r: str(facts.busiest_receiver(r, 0)[0]),
                     reason=lambda r: f"rank {facts.busiest_receiver(r, 0)[0]} receives "
                                      f"{facts.busiest_receiver(r, 0)[1]} transfers at once; its one link is "
                                      f"shared by all of them."),
            Question(1, "How many bytes will rank 0 have sent once the server has sent the sums back?", "bytes",
                     answer=lambda r: format_bytes(r.sent[0]),
                     reason=lambda r: f"(N-1) x S = {n - 1} x {format_bytes(size)}: the server sends one whole "
                                      f"copy of the sum to every other rank."))
    ring_q = (Question(1, "Which rank sends to rank 0 in the second step?", "ranks",
                       answer=lambda r: facts.senders_to(r, 0),
                       reason=lambda r: f"in a ring only the left neighbour, rank {n - 1}, ever sends to rank 0."),)
    return [Page(f"parameter server: all-reduce on {n} ranks", lambda: _trace("all-reduce", "ps", n, size), ps_words, ps_q),
            Page(f"ring: all-reduce on {n} ranks", lambda: _trace("all-reduce", "ring", n, size), ring_words, ring_q)]


def ring_steps(data: dict[str, Any]) -> list[Page]:
    n, size = 4, 64 * MiB
    tr = _trace("all-reduce", "ring", n, size)
    s1, s2 = facts.segment_received(tr, 1, 2), facts.segment_received(tr, 2, 3)

    def words(r: Replay) -> str:
        phase = r.phase().split(" ")[0] if r.phase() else ""
        what = {"reduce-scatter": "each rank adds the chunk it receives to its own: after N-1 steps rank r "
                                  "holds one chunk summed over every rank.",
                "all-gather": "each rank forwards a finished chunk: after N-1 more steps every rank holds "
                              "every sum."}.get(phase, "")
        lines = [f"Ring all-reduce of {format_bytes(size)} on {n} ranks: reduce-scatter, then all-gather. "
                 f"No all-reduce can send less than 2(N-1)/N x S = {format_bytes(facts.ring_bound(n, size))} "
                 f"per rank: each rank's input must leave it (N-1)/N x S at least for the others' sums, and "
                 f"the other ranks' sums must come in, another (N-1)/N x S. The ring sends exactly that.",
                 _phase_words(r) + (": " + what if what else ""),
                 "rank 0 holds " + ", ".join(f"s{s} {facts.holds(r, 0, s)}" for s in range(r.nsegments)) + ".",
                 _bytes_words(r)]
        if not r.can_forward:
            lines.append(f"done: algbw = S / t = {bandwidth(r.algbw())}; busbw = algbw x 2(N-1)/N = "
                         f"{bandwidth(r.busbw())}, which is what one link carries: the figure to compare "
                         f"with the link's 25 GB/s, whatever N.")
        return "\n".join(lines)

    qs = (Question(1, f"What will rank 2 hold in segment s{s1} after this step?", "ranks",
                   answer=lambda r: facts.holds(r, 2, s1),
                   reason=lambda r: facts.why_holds(r, 2, s1)),
          Question(2, f"What will rank 3 hold in segment s{s2} after this step?", "ranks",
                   answer=lambda r: facts.holds(r, 3, s2),
                   reason=lambda r: facts.why_holds(r, 3, s2)),
          Question(4, "How many bytes will rank 3 have sent after step 4?", "bytes",
                   answer=lambda r: format_bytes(r.sent[3]),
                   reason=lambda r: f"one chunk of S/N = {format_bytes(size // n)} per step, 5 steps."),
          Question(5, "Which rank sends to rank 0 in the last step?", "ranks",
                   answer=lambda r: facts.senders_to(r, 0),
                   reason=lambda r: "the left neighbour, as in every step of a ring: " + facts.why_senders(r, 0)))
    return [Page(f"ring all-reduce on {n} ranks, step by step", lambda: tr, words, qs)]


def latency_bandwidth(data: dict[str, Any]) -> list[Page]:
    n, small, large = 16, 8 << 10, 256 * MiB
    t = {(a, s): _trace("all-reduce", a, n, s).makespan for a in ("ring", "hd") for s in (small, large)}
    tb = {(a, s): _trace("broadcast", a, n, s).makespan for a in ("ring", "tree") for s in (small, large)}
    fast_small = min(("ring", "hd"), key=lambda a: t[a, small])

    def words(r: Replay) -> str:
        return "\n".join((
            f"Time = steps x alpha + bytes x beta. A ring takes 2(N-1) = {2 * (n - 1)} steps, halving-doubling "
            f"2 log2 N = {2 * int(np.log2(n))}: for small messages the steps (alpha = 2 links x 5 us on "
            f"switch:N) dominate, for large ones the bytes. All-reduce on {n} ranks: "
            f"{format_bytes(small)}: ring {format_seconds(t['ring', small])}, hd {format_seconds(t['hd', small])}; "
            f"{format_bytes(large)}: ring {format_seconds(t['ring', large])}, hd {format_seconds(t['hd', large])}. "
            f"Broadcast: {format_bytes(small)}: pipelined ring {format_seconds(tb['ring', small])}, binomial tree "
            f"{format_seconds(tb['tree', small])}; {format_bytes(large)}: ring {format_seconds(tb['ring', large])}, "
            f"tree {format_seconds(tb['tree', large])}.",
            _phase_words(r), _bytes_words(r)))

    q = (Question(0, f"All-reduce of {format_bytes(small)} on {n} ranks: which finishes first, ring or hd?", "choice",
                  answer=lambda r: fast_small,
                  reason=lambda r: f"ring {format_seconds(t['ring', small])} against hd "
                                   f"{format_seconds(t['hd', small])}: with 8 KiB the step count decides.",
                  choices=("ring", "hd")),)
    g, m = 4, 2
    flat, hier = (_trace("all-reduce", a, g * m, large, f"nodes:{m}x{g}", m if a == "hier" else None).makespan
                  for a in ("ring", "hier"))

    def two_levels(r: Replay) -> str:
        return "\n".join((
            f"Two levels: {m} nodes of {g} ranks (nodes:{m}x{g}: NVLink inside a node, one NIC per rank "
            f"across). The hierarchical all-reduce reduce-scatters inside each node, all-reduces across "
            f"nodes between ranks of the same local index, then all-gathers inside: only 1/{g} of the data "
            f"crosses the slow links per rank. {format_bytes(large)}: flat ring {format_seconds(flat)}, "
            f"hierarchical {format_seconds(hier)}.", _phase_words(r), _bytes_words(r)))

    q2 = (Question(1, "Which ranks send to rank 0 in the second step?", "ranks",
                   answer=lambda r: facts.senders_to(r, 0),
                   reason=lambda r: f"{r.phase()}: " + facts.why_senders(r, 0)),)
    return [Page(f"halving-doubling, {format_bytes(small)} on {n} ranks", lambda: _trace("all-reduce", "hd", n, small),
                 words, q),
            Page(f"two levels: hierarchical all-reduce on nodes:{m}x{g}",
                 lambda: _trace("all-reduce", "hier", g * m, large, f"nodes:{m}x{g}", m), two_levels, q2)]


LESSONS = (
    Lesson("ps-vs-ring", "The parameter server against the ring",
           "bytes per rank, the incast at rank 0, time against N", ps_vs_ring),
    Lesson("ring", "The ring all-reduce, step by step",
           "reduce-scatter then all-gather, what each rank holds, the 2(N-1)/N x S bound, algbw and busbw",
           ring_steps),
    Lesson("latency-bandwidth", "Latency against bandwidth",
           "halving-doubling and trees for small messages, the ring for large; two levels of network",
           latency_bandwidth),
)
