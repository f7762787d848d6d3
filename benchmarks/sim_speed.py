"""rankscope's engine against a straightforward SimPy model of the same uncontended ring all-reduce.

    python benchmarks/sim_speed.py [--ranks 64 256 1024] [--big 4096] [--size 256MiB] [--no-simpy]

Workload (issue 3): ring all-reduce of 256 MiB, links of 25 GB/s and 5 us, on ``ring:N`` and
``switch:N``. Each (tool, N, topology) runs in a fresh subprocess so its peak RSS is its own; both
tools record every op's start and end. SimPy (``pip install simpy``, in the dev extra) models each
rank as a process that waits for the chunk from its left neighbour and sends the next one after
α + c/bw — the same schedule, so both must report the same makespan (checked).
Also times writing + reading the N = 1024 trace. Targets on 2 cores: N = 1024 <= 2 s and >= 20x
SimPy; N = 4096 <= 60 s and <= 4 GB; trace write + read at N = 1024 <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BW, LAT = 25e9, 5e-6


def run_rankscope(n: int, size: int, topo_kind: str, trace_io: bool) -> dict:
    from rankscope.simulator.collectives import build
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.topology import parse_topology

    t0 = time.perf_counter()
    prog = build("all-reduce", "ring", n, size)
    topo = parse_topology(f"{topo_kind}:{n}", bw=BW, lat=LAT)
    res = simulate(prog, topo)
    t1 = time.perf_counter()
    out = {"seconds": t1 - t0, "makespan": res.makespan, "ops": prog.n_ops, "method": res.info["method"],
           "link_rows": res.info["link_rows"]}
    if trace_io:
        from rankscope.simulator.trace import read_trace, write_trace

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ring.trace")
            t2 = time.perf_counter()
            write_trace(path, res.to_trace(prog, topo))
            t3 = time.perf_counter()
            back = read_trace(path)
            t4 = time.perf_counter()
            assert back.n_ops == prog.n_ops
            out.update(write_s=t3 - t2, read_s=t4 - t3, file_MB=os.path.getsize(path) / 1e6)
    return out


def run_simpy(n: int, size: int, topo_kind: str) -> dict:
    import simpy

    from rankscope.simulator.program import split

    alpha = LAT * (2 if topo_kind == "switch" else 1)
    sizes = [int(x) for x in (split(size, n)[1:] - split(size, n)[:-1])]
    t0 = time.perf_counter()
    env = simpy.Environment()
    inbox = [simpy.Store(env) for _ in range(n)]
    start, end = [], []  # the per-op trace

    def deliver(r: int, c: int):
        start.append(env.now)
        yield env.timeout(alpha + sizes[c] / BW)
        end.append(env.now)
        yield inbox[(r + 1) % n].put(c)

    def rank(r: int):
        for t in range(2 * (n - 1)):
            if t:
                yield inbox[r].get()
            env.process(deliver(r, (r - 1 - t) % n))
        if n > 1:
            yield inbox[r].get()

    for r in range(n):
        env.process(rank(r))
    env.run()
    return {"seconds": time.perf_counter() - t0, "makespan": max(end, default=0.0), "ops": len(end)}


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--big", type=int, nargs="*", default=[4096], help="rankscope alone at these N")
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--no-simpy", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        tool, n, size, kind = a.child
        res = run_rankscope(int(n), int(size), kind, int(n) == 1024) if tool == "rankscope" \
            else run_simpy(int(n), int(size), kind)
        res["peak_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        print(json.dumps(res))
        return
    from rankscope.simulator.units import parse_size

    size = parse_size(a.size)
    print(f"ring all-reduce, {a.size}, {BW / 1e9:g} GB/s and {LAT * 1e6:g} us per link; wall time of "
          f"build + simulate with the per-op trace; each run in a fresh process")
    print(f"{'topology':>9} {'ranks':>6} {'ops':>11} {'rankscope s':>12} {'peak MB':>8} "
          f"{'SimPy s':>9} {'peak MB':>8} {'speed-up':>9}  makespans agree")
    io = None
    for kind in ("ring", "switch"):
        for n in list(a.ranks) + list(a.big):
            rs = child(["rankscope", str(n), str(size), kind])
            if n == 1024 and "write_s" in rs:
                io = io or rs
            sp = None if a.no_simpy or n in a.big else child(["simpy", str(n), str(size), kind])
            agree = "-" if sp is None else \
                ("yes" if abs(sp["makespan"] - rs["makespan"]) <= 1e-9 * rs["makespan"] else
                 f"NO {sp['makespan']} vs {rs['makespan']}")
            sp_s = f"{sp['seconds']:>9.2f} {sp['peak_MB']:>8.0f} {sp['seconds'] / rs['seconds']:>8.1f}x" \
                if sp else f"{'-':>9} {'-':>8} {'-':>9}"
            print(f"{kind + ':N':>9} {n:>6} {rs['ops']:>11,} {rs['seconds']:>12.3f} {rs['peak_MB']:>8.0f} "
                  f"{sp_s}  {agree}")
    if io:
        print(f"trace of N = 1024 (ring:N): write {io['write_s']:.3f} s + read {io['read_s']:.3f} s = "
              f"{io['write_s'] + io['read_s']:.3f} s, {io['file_MB']:.1f} MB")


if __name__ == "__main__":
    main()
