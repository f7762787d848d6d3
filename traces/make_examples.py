"""Regenerate the example traces that ship in traces/ (``python traces/make_examples.py``).

Simulated examples are deterministic: tests/test_examples.py checks that the shipped files still
equal what the simulator produces. The measured example (``--measured``, needs torch) is a real run
on 4 local gloo ranks of the same program as ring_allreduce_4.trace, so the two open side by side
(``rankscope replay traces/ring_allreduce_4.trace traces/ring_allreduce_4_gloo.trace``); its times
are this machine's, so the test checks only that it loads and joins op by op.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rankscope.simulator.collectives import build  # noqa: E402
from rankscope.simulator.engine import simulate  # noqa: E402
from rankscope.simulator.models import parse_device, parse_model  # noqa: E402
from rankscope.simulator.topology import parse_topology  # noqa: E402
from rankscope.simulator.trace import write_trace  # noqa: E402
from rankscope.simulator.training import TrainConfig, compile_step  # noqa: E402

SIZE = 64 << 20
EXAMPLES = {
    # file name: (collective, algo, ranks, topology, extra builder args)
    "ring_allreduce_4.trace": ("all-reduce", "ring", 4, "switch:4", {}),
    "ring_allreduce_8.trace": ("all-reduce", "ring", 8, "switch:8", {}),
    "ps_allreduce_8.trace": ("all-reduce", "ps", 8, "switch:8", {}),
    "hier_allreduce_2x4.trace": ("all-reduce", "hier", 8, "nodes:2x4", {"nodes": 2}),
    # a training step (the TUI's training view): FSDP (ZeRO-3) of mlp:4x1024 on 4 H100s behind NVSwitch
    "fsdp_mlp_4x1024_4.trace": ("train", "zero3", 4, "switch:4", {"model": "mlp:4x1024"}),
}
MEASURED = {"ring_allreduce_4_gloo.trace": ("all-reduce", "ring", 4)}


def make(name: str):
    coll, algo, n, topo_spec, kw = EXAMPLES[name]
    if coll == "train":
        prog = compile_step(parse_model(kw["model"]), n, TrainConfig(strategy=algo), parse_device("h100"))
    else:
        prog = build(coll, algo, n, SIZE, **kw)
    topo = parse_topology(topo_spec)
    return simulate(prog, topo).to_trace(prog, topo, {"example": name})


def make_measured(name: str, path: Path) -> None:
    from rankscope.real.encoding import Encoding, aligned_program
    from rankscope.real.runner import run_programs

    coll, algo, n = MEASURED[name]
    prog = aligned_program(coll, algo, n, SIZE, Encoding(n).elem_bytes)
    run_programs([prog, prog], [None, str(path)], nranks=n, native=True)  # the first warms up


def main() -> None:
    for name in EXAMPLES:
        write_trace(HERE / name, make(name))
        print(f"wrote traces/{name}")
    if "--measured" in sys.argv[1:]:
        for name in MEASURED:
            make_measured(name, HERE / name)
            print(f"wrote traces/{name} (measured here)")


if __name__ == "__main__":
    main()
