"""What ``rankscope info`` prints about a trace (:func:`trace_summary`)."""

from __future__ import annotations

from typing import Any

from ..traffic import traffic
from .model import Trace


def trace_summary(trace: Trace) -> dict[str, Any]:
    """What ``rankscope info`` prints: shape, provenance, timing and traffic of a trace.

    Bytes count the transfers and collectives that ran (:func:`simulator.traffic.traffic`).
    """
    p, ran, info = trace.program, trace.ran, trace.info
    moved = traffic(p, ran)
    sent, received = moved.sent, moved.received
    makespan = trace.makespan
    return {
        "nranks": p.nranks, "n_ops": p.n_ops,
        "collective": info.collective, "algo": info.algo,
        "executor": info.executor, "clock": info.clock, "complete": info.complete,
        "makespan": makespan,
        "bytes_moved": int(moved.total),
        "bytes_sent": [int(x) for x in sent], "bytes_received": [int(x) for x in received],
        "n_link_rows": trace.n_links,
        "ops_never_ran": int((~ran).sum()),
    }
