"""Route look-ups: a million repeated pairs, and every rank to rank + 8 past big switches.

    python benchmarks/route_speed.py

Prints seconds per case (wall clock, this machine); the unit tests check only the routes.
"""

from __future__ import annotations

import time

import numpy as np

from rankscope.simulator.topology import parse_topology


def main() -> None:
    t = parse_topology("nodes:2x4")
    src = np.tile(np.arange(8), 125_000)
    t0 = time.perf_counter()
    t.routes(src, (src + 1) % 8)
    print(f"routes of 1M repeated pairs on nodes:2x4: {time.perf_counter() - t0:.3f} s")
    for spec in ("switch:2048", "nodes:128x8", "nodes:128x8,gpu=h100,nics=8,nic=400Gb/s"):
        t0 = time.perf_counter()
        topo = parse_topology(spec)
        s = np.arange(topo.nranks)
        topo.routes(s, (s + 8) % topo.nranks)
        print(f"build + rank -> rank+8 routes on {spec}: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
