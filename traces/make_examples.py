"""Regenerate the example traces that ship in traces/ (``python traces/make_examples.py``).

tests/test_examples.py checks that the shipped files still equal what the simulator produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from simulator.collectives import build  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.topology import parse_topology  # noqa: E402
from simulator.trace import write_trace  # noqa: E402

SIZE = 64 << 20
EXAMPLES = {
    # file name: (collective, algo, ranks, topology, extra builder args)
    "ring_allreduce_4.trace": ("all-reduce", "ring", 4, "switch:4", {}),
    "ring_allreduce_8.trace": ("all-reduce", "ring", 8, "switch:8", {}),
    "ps_allreduce_8.trace": ("all-reduce", "ps", 8, "switch:8", {}),
    "hier_allreduce_2x4.trace": ("all-reduce", "hier", 8, "nodes:2x4", {"nodes": 2}),
}


def make(name: str):
    coll, algo, n, topo_spec, kw = EXAMPLES[name]
    prog = build(coll, algo, n, SIZE, **kw)
    topo = parse_topology(topo_spec)
    return simulate(prog, topo).to_trace(prog, topo, {"example": name})


def main() -> None:
    for name in EXAMPLES:
        write_trace(HERE / name, make(name))
        print(f"wrote traces/{name}")


if __name__ == "__main__":
    main()
