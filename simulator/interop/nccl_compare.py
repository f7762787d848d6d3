"""Measured (a nccl-tests import) against simulated, size by size; busbw against size as a PNG.

[Note: the simulated side]
:func:`simulate_size` is the one place a size is simulated. On a GPU-cluster topology (a
``nodes:MxG,...`` or ``dgx-*`` preset, or a TOML ``[cluster]`` table) it is NCCL's model
(:mod:`simulator.nccl`): the algorithm, protocol and channel count NCCL's tuner picks for the size,
run as that schedule. On a link-by-link TOML that ``import nccl-log`` wrote (it says how NCCL saw
the machine, not its GPU generation) it is the log's channels: ``nchannels`` rings in the ring
orders the log printed (cycled when NCCL printed fewer rings than channels), each with 1/k of the
buffer (:func:`simulator.collectives.nccl_ring.multi_ring`), whose inter-node hops cross the NICs
the log names; Simple's timing (no protocol view). On any other topology it is the rankscope
ring builder of the collective (broadcast: the pipelined ring) laid on the topology's ring order.
NCCL's own prediction beside it comes from the tuning table the log printed
(:func:`nccl_predict`), where the topology has one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from typing import Any, Sequence

import numpy as np

from ..collectives import build
from ..costs import busbw
from ..engine import simulate
from ..errors import UsageError
from .errors import ImportFormatError
from .nccl_tests import table_runs

SIMULATED = ("all-reduce", "reduce-scatter", "all-gather", "broadcast")
# NCCL's names of the collectives in its tuning table (src/collectives.cc ncclFuncStr)
FUNCS = {"broadcast": "Broadcast", "reduce": "Reduce", "all-gather": "AllGather",
         "reduce-scatter": "ReduceScatter", "all-reduce": "AllReduce"}


def simulate_size(collective: str, nranks: int, size: int, topo) -> dict[str, Any] | None:
    """Simulated seconds of one ``collective`` of ``size`` bytes on ``nranks`` ranks of ``topo``
    (see [Note: the simulated side]): ``{"seconds", "algo", "method"}``, or None for a collective
    no builder makes (all-to-all, reduce, ...)."""
    if collective not in SIMULATED:
        return None
    if topo.nranks != nranks:
        raise UsageError(f"the measured run has {nranks} ranks, topology {topo.name!r} {topo.nranks}; "
                         "give the topology of the machine the run used")
    from ..nccl import cluster_of, nccl_collective, simulate_nccl

    try:
        cluster_of(topo)
    except UsageError:  # not a GPU cluster NCCL's model knows: one ring on the topology's ring order
        pass
    else:
        if collective != "broadcast":
            prog, ch = nccl_collective(collective, topo, int(size))
            res, _, seconds = simulate_nccl(prog, topo, max_link_rows=0)
            return {"seconds": float(seconds), "algo": f"{ch.algo}/{ch.proto}/{ch.nchannels}ch (NCCL model)",
                    "method": res.info["method"]}
    rings = [tuple(int(r) for r in ring) for ring in (topo.meta.get("nccl") or {}).get("rings") or []]
    if collective != "broadcast" and rings:  # the log's channels: k rings of 1/k of the buffer each
        from ..collectives.nccl_ring import multi_ring

        k = max(1, int(topo.meta["nccl"].get("nchannels") or len(rings)))
        prog = multi_ring(collective, nranks, int(size), [rings[c % len(rings)] for c in range(k)])
        res = simulate(prog, topo, max_link_rows=0)
        return {"seconds": float(res.makespan), "algo": f"ring, the log's {k} channels (rankscope)",
                "method": res.info["method"]}
    prog = build(collective, "ring", nranks, int(size))
    order = np.asarray(topo.ring, dtype=np.int32)
    if not np.array_equal(order, np.arange(nranks)):  # the builder's ring 0 -> 1 -> ... laid on topo.ring
        peer = np.where(prog.peer >= 0, order[np.maximum(prog.peer, 0)], prog.peer)
        prog = dataclasses.replace(prog, rank=order[prog.rank], peer=peer)
    res = simulate(prog, topo, max_link_rows=0)
    return {"seconds": float(res.makespan), "algo": "ring (rankscope, 1 channel)", "method": res.info["method"]}


def _err(model: float | None, measured: float) -> float | None:
    if model is None or not measured > 0 or not math.isfinite(model):
        return None
    return model / measured - 1


def load_sweep(path: str) -> dict[str, Any]:
    """A ``rankscope sweep --json`` output: per size the fastest algorithm's row."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        rows = doc["rows"]
        best: dict[int, dict] = {}
        for r in rows:
            size, sec = int(r["size"]), float(r["seconds"])
            if size not in best or sec < best[size]["seconds"]:
                best[size] = {"seconds": sec, "algo": str(r.get("algo", "?")), "method": "sweep"}
        return {"collective": doc.get("collective"), "nranks": int(doc["nranks"]), "topology": doc.get("topology"),
                "by_size": best}
    except OSError as e:
        raise ImportFormatError(f"cannot read {path!r}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ImportFormatError(f"{path}: not the JSON of 'rankscope sweep --json' ({type(e).__name__}: {e})") from None


def compare_table(trace, topo=None, sweep: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per test of the import, per size: measured (out-of-place and in-place), simulated, error,
    busbw both ways, NCCL's own prediction where the topology carries a tuning table."""
    if topo is None and sweep is None:
        raise UsageError("comparing a nccl-tests import needs --topology T (the machine it ran on), "
                         "or a 'rankscope sweep --json' output as the second file")
    layout = (topo.meta.get("nccl") if topo is not None else None) or None
    runs = table_runs(trace)
    if sweep is not None:  # a sweep is of one collective: the tests of that one are compared
        match = [r for r in runs if int(r["nranks"]) == sweep["nranks"]
                 and (not sweep["collective"] or _same(sweep["collective"]) == r["collective"])]
        if not match:
            raise UsageError(f"the sweep is of {sweep['collective']} on {sweep['nranks']} ranks; the import holds "
                             + ", ".join(f"{r['collective']} on {r['nranks']} ranks" for r in runs))
        runs = match
    out = []
    for run in runs:
        coll, n = run["collective"], int(run["nranks"])
        rows = []
        for row in run["rows"]:
            size, meas = int(row["size"]), float(row["time_us"]) * 1e-6
            sim = sweep["by_size"].get(size) if sweep is not None else simulate_size(coll, n, size, topo)
            pred = nccl_predict(layout, coll, size, n)
            t = sim["seconds"] if sim else None
            rows.append({"size": size, "line": row["line"], "measured": meas,
                         "measured_in_place": float(row["in_time_us"]) * 1e-6, "simulated": t,
                         "error": _err(t, meas), "busbw_measured": float(row["busbw"]) * 1e9,
                         "busbw_simulated": _busbw(coll, n, size, t),
                         "sim_algo": sim["algo"] if sim else None,
                         "nccl_predicted": pred[0] if pred else None,
                         "nccl_algo": pred[1] if pred else None, "nccl_proto": pred[2] if pred else None,
                         "nccl_error": _err(pred[0] if pred else None, meas)})
        errs = [abs(r["error"]) for r in rows if r["error"] is not None]
        big = [abs(r["error"]) for r in rows if r["error"] is not None and r["size"] >= 1 << 20]
        out.append({"test": run["test"], "collective": coll, "nranks": n, "nodes": run["nodes"],
                    "nccl_version": run["nccl_version"], "first_line": run["first_line"],
                    "topology": topo.name if topo is not None else sweep.get("topology"),
                    "median_abs_error": statistics.median(errs) if errs else None,
                    "median_abs_error_1mib": statistics.median(big) if big else None,
                    "simulated": any(r["simulated"] is not None for r in rows), "rows": rows})
    return out


def _same(name: str) -> str:
    from .collectives import collective_kind

    return collective_kind(name) or name


def _busbw(coll: str, n: int, size: int, t: float | None) -> float | None:
    if t is None or not t > 0:
        return None
    try:
        return busbw(coll, n, size, t)
    except Exception:  # a collective costs.py has no factor for
        return None


def plot_busbw(runs: Sequence[dict[str, Any]], path: str) -> None:
    """busbw against size, measured and simulated (and NCCL's prediction), one colour per test."""
    from ..plot import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for run in runs:
        rs = run["rows"]
        x = [r["size"] for r in rs]
        name = run["test"] or run["collective"]
        line, = ax.plot(x, [r["busbw_measured"] / 1e9 for r in rs], "o-", label=f"{name} measured")
        sim = [(r["size"], r["busbw_simulated"] / 1e9) for r in rs if r["busbw_simulated"] is not None]
        if sim:
            ax.plot(*zip(*sim), "--", color=line.get_color(), label=f"{name} simulated")
        pred = [(r["size"], _busbw(run["collective"], run["nranks"], r["size"], r["nccl_predicted"]) / 1e9)
                for r in rs if r["nccl_predicted"] and _busbw(run["collective"], run["nranks"], r["size"],
                                                              r["nccl_predicted"])]
        if pred:
            ax.plot(*zip(*pred), ":", color=line.get_color(), label=f"{name} NCCL's tuning table")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("size (bytes)")
    ax.set_ylabel("busbw (GB/s)")
    ax.set_title(f"nccl-tests measured against simulated ({runs[0]['topology']})" if runs else "")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- NCCL's own prediction, from the tuning table the log printed ---------------------------------
# src/graph/tuning.cc (2.19) treeCorrectionFactor[protocol][log2(nBytes / 64)], 64 B to 256 MiB
TREE_CORRECTION = {
    "LL": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    "LL128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    "Simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9),
}


def nccl_predict(layout: dict[str, Any] | None, collective: str, nbytes: int, nranks: int):
    """(seconds, algorithm, protocol) NCCL's tuning table predicts for one collective, or None.

    src/graph/tuning.cc ``ncclTopoGetAlgoTime`` (2.19): time = latency + nBytes / (1000 x
    bandwidth) us, the table's bandwidth (GB/s) times ``treeCorrectionFactor`` for trees, the
    fastest (algorithm, protocol) with bandwidth > 0 (the table already holds 0 for what NCCL_ALGO /
    NCCL_PROTO disabled). nBytes is the whole buffer S for every collective (src/include/info.h
    ``ncclInfoSetDerived``: all-gather and reduce-scatter multiply the per-rank count by nRanks).
    Left out: the ring plateau factor of multi-node all-reduce (it needs the GPUs' compute
    capability, which the lines read here do not give) and the batching of many ops.
    """
    del nranks  # nBytes is S for every collective (see above)
    func = FUNCS.get(collective)
    rows = ((layout or {}).get("tuning") or {}).get(func or "", [])
    best = None
    for algo, proto, lat, bw in rows:
        if not bw > 0:
            continue
        if algo == "Tree" and proto in TREE_CORRECTION:
            k = max(0, (int(nbytes) >> 6).bit_length() - 1)  # NCCL's log2i(0) is 0
            if k < 23:
                bw *= TREE_CORRECTION[proto][k]
        t = (lat + nbytes / (1000 * bw)) * 1e-6
        if best is None or t < best[0]:
            best = (t, algo, proto)
    return best
