"""rankscope's P2P ring all-reduce against gloo's native all_reduce, and the cost of tracing.

    python benchmarks/real_vs_native.py [--ranks 2 4] [--sizes 64KiB 1MiB 16MiB 64MiB] [--iters 10] [--json]

Per rank count, one launch times three implementations side by side, interleaved round by round
(real/sweep.py, [Note: how the real sweep times]): ``native`` (dist.all_reduce), ``ring``
(rankscope's ring all-reduce program run by real/executor.py with a timestamp per op) and
``ring-nostamps`` (the same without reading any clock). Reported per size:
  ratio     busbw(ring) / busbw(native) = t_native / t_ring (median rounds);   target >= 0.8 at >= 16 MiB
  overhead  median over rounds of t_ring / t_ring-nostamps - 1 (paired: the two run back to back
            in each round, so slow phases of the machine hit both);              target <= 5 %
  min-ovh   fastest round against fastest round (noise only ever adds time, so minima are the
            least disturbed estimate)
  bound     the clock reads alone: 2 per op a rank takes part in x their measured cost, over t_ring
The measured overhead carries the machine's noise (medians of a few rounds on a shared machine
move by several percent either way); the bound says what the timestamps themselves can cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rankscope.real.sweep import Group, Impl, run_sweep  # noqa: E402
from rankscope.simulator.collectives import build  # noqa: E402
from rankscope.simulator.units import parse_size  # noqa: E402


def clock_read_seconds(n: int = 200_000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        time.monotonic_ns()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--sizes", nargs="+", default=["64KiB", "1MiB", "16MiB", "64MiB"])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    sizes = [parse_size(s) for s in a.sizes]
    impls = (Impl("native"), Impl("ring"), Impl("ring", timestamps=False))
    per_read = clock_read_seconds()
    results = []
    for n in a.ranks:
        t0 = time.perf_counter()
        rows = run_sweep([Group("all-reduce", s, impls) for s in sizes], nranks=n, iters=a.iters,
                         warmup=2, timeout=300, progress=False)
        wall = time.perf_counter() - t0
        by = {(r["nbytes"], r["impl"]): r for r in rows}
        for s in dict.fromkeys(r["nbytes"] for r in rows):
            nat, ring, bare = by[s, "native"], by[s, "ring"], by[s, "ring-nostamps"]
            ops_per_rank = 2 * 2 * (n - 1)  # 2(N-1) steps, one send and one receive each
            results.append({"nranks": n, "nbytes": s, "native_s": nat["seconds"], "ring_s": ring["seconds"],
                            "ring_nostamps_s": bare["seconds"], "native_busbw": nat["busbw"],
                            "ring_busbw": ring["busbw"], "ratio": ring["busbw"] / nat["busbw"],
                            "overhead": float(np.median(np.divide(ring["round_seconds"],
                                                                  bare["round_seconds"]))) - 1,
                            "overhead_min": ring["min_seconds"] / bare["min_seconds"] - 1,
                            "bound": ops_per_rank * per_read / ring["seconds"], "launch_wall_s": wall})
    assert build("all-reduce", "ring", 2, 64).n_ops == 4  # the op count the bound assumes
    if a.json:
        print(json.dumps(results))
        return 0
    print(f"# gloo, median of {a.iters} interleaved rounds (slowest rank); clock read {per_read * 1e9:.0f} ns")
    print(f"# {'N':>2} {'size':>10} {'native ms':>10} {'ring ms':>9} {'nostamp ms':>10} {'native GB/s':>11} "
          f"{'ring GB/s':>9} {'ratio':>6} {'overhead':>9} {'min-ovh':>8} {'bound':>8}")
    for r in results:
        print(f"  {r['nranks']:>2} {r['nbytes']:>10} {r['native_s'] * 1e3:>10.2f} {r['ring_s'] * 1e3:>9.2f} "
              f"{r['ring_nostamps_s'] * 1e3:>10.2f} {r['native_busbw'] / 1e9:>11.3f} {r['ring_busbw'] / 1e9:>9.3f} "
              f"{r['ratio']:>6.2f} {r['overhead'] * 100:>8.1f}% {r['overhead_min'] * 100:>7.1f}% "
              f"{r['bound'] * 100:>7.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
