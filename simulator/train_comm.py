"""A training program's collectives timed by NCCL's model: seconds and the latency term, per collective."""

from __future__ import annotations

import numpy as np

from .program import CollKind, Program


def nccl_collective_seconds(prog: Program, topo, algo: str | None = None, proto: str | None = None) -> np.ndarray:
    """Each collective of a training program timed as NCCL times it (:func:`nccl_collective_times`)."""
    return nccl_collective_times(prog, topo, algo, proto)[0]


def nccl_collective_times(prog: Program, topo, algo: str | None = None,
                          proto: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, latency) of each collective of a training program as NCCL times it: its tuner's
    choice and predicted time (:mod:`simulator.nccl`) for that collective and size on ``topo``, and
    the latency term of that time (the chosen algorithm and protocol at 0 bytes, NCCL's
    ``ncclTopoGetAlgoTime`` in src/graph/tuning.cc; what is left is the bandwidth term, which
    concurrent collectives share). The engine takes these (``meta["coll_seconds"]``,
    ``meta["coll_latency"]``) instead of the ring's closed form. Predicted, not simulated: a
    ZeRO-3 step of Llama-2-70B on 1024 ranks holds thousands of collectives of millions of
    transfers each; single collectives are simulated with ``sim --algo nccl``."""
    from .nccl import tuning
    from .nccl.constants import ALGOS, PROTOS

    tune = tuning(topo, algo, proto)
    cache: dict[tuple[int, int], tuple[float, float]] = {}
    out, lat = np.empty(prog.coll_kind.size), np.empty(prog.coll_kind.size)
    for i, key in enumerate(zip(prog.coll_kind.tolist(), prog.coll_bytes.tolist())):
        if key not in cache:
            label = CollKind(key[0]).label
            ch = tune.choose(label, key[1])
            l0 = tune.time(label, ALGOS.index(ch.algo), PROTOS.index(ch.proto), 0) if prog.nranks > 1 else 0.0
            cache[key] = (ch.predicted, min(l0 or 0.0, ch.predicted))
        out[i], lat[i] = cache[key]
    return out, lat
