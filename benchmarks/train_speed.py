"""Build and simulate one Llama-2-70B ZeRO-3 step on 1024 ranks, its collectives timed by the NCCL
model, once with one communicator (NCCL runs the collectives one at a time) and once with a
communicator per stream (all-gathers and reduce-scatters concurrent, sharing the links: issue 16
target <= 10 s), and a what-if of a measured 2-rank FSDP2 run (the gloo fixture of
tests/fixtures/gloo_fsdp) to 1024 ranks (issue 16 target: <= 10 s).

    python benchmarks/train_speed.py [--model llama2-70b] [--ranks 1024]
        [--topology nodes:128x8,gpu=h100,nics=8,nic=400Gb/s] [--algo nccl|ring]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rankscope.simulator.engine import simulate  # noqa: E402
from rankscope.simulator.models import parse_device, parse_model  # noqa: E402
from rankscope.simulator.rank_speed import scale_compute  # noqa: E402
from rankscope.simulator.topology import parse_topology  # noqa: E402
from rankscope.simulator.train_report import train_report  # noqa: E402
from rankscope.simulator.training import TrainConfig, compile_step, nccl_collective_times  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama2-70b")
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--topology", default="nodes:128x8,gpu=h100,nics=8,nic=400Gb/s")
    ap.add_argument("--strategy", default="zero3")
    ap.add_argument("--algo", choices=("nccl", "ring"), default="nccl")
    a = ap.parse_args()
    for comms in ("one", "per-stream"):
        step(a, comms)
    step(a, "per-stream", straggler=1.1)
    whatif(a.ranks)


def step(a: argparse.Namespace, comms: str, straggler: float = 1.0) -> None:
    """One step; ``straggler`` > 1 slows rank 0's compute, which breaks the ranks' symmetry: the
    event loop then runs on every rank."""
    t0 = time.perf_counter()
    model = parse_model(a.model)
    prog = compile_step(model, a.ranks, TrainConfig(strategy=a.strategy, communicators=comms), parse_device("h100"))
    topo = parse_topology(a.topology, a.ranks)
    if a.algo == "nccl":
        secs, lat = nccl_collective_times(prog, topo)
        prog.meta["coll_seconds"], prog.meta["coll_latency"] = secs.tolist(), lat.tolist()
    if straggler != 1.0:
        prog = scale_compute(prog, [straggler] + [1.0] * (a.ranks - 1))
    t1 = time.perf_counter()
    sim = simulate(prog, topo)
    t2 = time.perf_counter()
    rep = train_report(prog, sim)
    t3 = time.perf_counter()
    r0 = rep["rows"][0]
    st = rep["streams"]
    slow = f", rank 0's compute x{straggler}" if straggler != 1.0 else ""
    print(f"{a.model} {a.strategy} on {a.ranks} ranks ({a.topology}, {a.algo}, communicators {comms}{slow}): "
          f"{prog.n_ops:,} ops, {rep['comm_lanes']} comm lane(s)")
    how = sim.info["method"] + (" on one rank: the ranks are symmetric" if sim.info.get("rank_symmetric") else "")
    print(f"  build {t1 - t0:.2f} s + simulate {t2 - t1:.2f} s ({how}) = {t2 - t0:.2f} s; "
          f"report (memory timeline, exposed comm per rank) {t3 - t2:.2f} s; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
    print(f"  simulated step {sim.makespan:.2f} s, exposed comm {r0['exposed_comm']:.2f} s, "
          f"peak {r0['peak'] / 1e9:.1f} GB at '{r0['peak_at']}'; rank 0 busy per stream: "
          + ", ".join(f"{x['stream']} {x['busy']:.2f} s" for x in st["rows"])
          + f"; two in flight {st['concurrent']:.2f} s")


def whatif(ranks: int) -> None:
    from rankscope.simulator.interop.kineto_import import import_kineto
    from rankscope.simulator.whatif import measure, predict

    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "gloo_fsdp"
    trace = import_kineto([str(fixture)])
    t0 = time.perf_counter()
    meas = measure(trace, "mlp:2x128", "fsdp")
    t1 = time.perf_counter()
    prog, sim, topo, rep = predict(meas, ranks)
    t2 = time.perf_counter()
    p = rep["predicted"]
    print(f"whatif: measured 2-rank FSDP2 run of mlp:2x128 (gloo fixture) -> {ranks} ranks on {topo.name}: "
          f"{prog.n_ops:,} ops")
    print(f"  measure {t1 - t0:.2f} s + predict (compile, measured compute, simulate, memory) {t2 - t1:.2f} s "
          f"= {t2 - t0:.2f} s; predicted step {p['step_time'] * 1e3:.1f} ms, peak {p['peak'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
