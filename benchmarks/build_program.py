"""Time and peak memory to build and validate the ring all-reduce program.

    python benchmarks/build_program.py [--ranks 64 256 1024 4096] [--size 256MiB]

Each N runs in a fresh subprocess so that its peak RSS is its own. Targets (issue 2, 2-core
machine): N = 1024 in <= 0.5 s; N = 4096 in <= 10 s and <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one(n: int, size: int) -> dict:
    from rankscope.simulator.collectives import build

    t0 = time.perf_counter()
    prog = build("all-reduce", "ring", n, size)
    t1 = time.perf_counter()
    prog.validate()
    t2 = time.perf_counter()
    cols = sum(getattr(prog, c).nbytes for c in ("kind", "rank", "peer", "arg", "step", "dep_ptr", "dep_idx"))
    return {"ranks": n, "ops": prog.n_ops, "build_s": t1 - t0, "validate_s": t2 - t1, "total_s": t2 - t0,
            "program_MB": cols / 1e6, "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    from rankscope.simulator.units import parse_size

    size = parse_size(a.size)
    if a.one:
        print(json.dumps(one(a.one, size)))
        return
    print(f"ring all-reduce program, S = {a.size}: build + validate (each N in a fresh process)")
    print(f"{'ranks':>6} {'ops':>11} {'build s':>8} {'valid. s':>8} {'total s':>8} {'program MB':>11} {'peak RSS MB':>12}")
    for n in a.ranks:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--size", a.size],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"{r['ranks']:>6} {r['ops']:>11,} {r['build_s']:>8.3f} {r['validate_s']:>8.3f} {r['total_s']:>8.3f} "
              f"{r['program_MB']:>11.0f} {r['peak_rss_MB']:>12.0f}")


if __name__ == "__main__":
    main()
