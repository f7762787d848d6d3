"""``rankscope whatif TRACE``: a measured training run re-simulated on other ranks, topology,
strategy, or with a slow rank or link (simulator/whatif.py, [Note: what-if]). No torch."""

from __future__ import annotations

import argparse
import math

from rankscope.simulator.errors import UsageError, check_output
from rankscope.simulator.units import format_dec_bytes, format_seconds

from .args import dump_json, int_at_least


def register(sub) -> None:
    p = sub.add_parser("whatif", help="re-simulate a measured training run: --ranks N, --topology, --slow-rank, "
                       "--slow-link, --strategy",
                       description="Take per-unit compute times and a ring calibration from a measured training "
                       "trace (real train, or a Kineto import of one), rebuild the step for another rank count, "
                       "topology or strategy, perturb it, and print the predicted step time, exposed "
                       "communication and peak memory against the measured run.")
    p.add_argument("trace", help="a measured training trace")
    p.add_argument("--ranks", "-n", type=int_at_least(1), help="N' (default: the measured run's)")
    p.add_argument("--topology", "-t", help="ring:N, switch:N, dgx-h100, nodes:MxG or a .toml (default: switch:N' "
                   "with the ring alpha and beta fitted to the measured collectives)")
    p.add_argument("--strategy", help="ddp, zero1, zero2, zero3 / fsdp (default: the measured run's)")
    p.add_argument("--slow-rank", action="append", default=[], metavar="R=F",
                   help="rank R's compute takes F times as long (repeatable)")
    p.add_argument("--slow-link", action="append", default=[], metavar="LINK=F",
                   help="a link (as the topology names it, e.g. 0->sw) or a rank's links at 1/F of their "
                   "bandwidth (repeatable)")
    p.add_argument("--host-cores", type=int_at_least(1), help="local CPU runs: the cores the ranks share; compute "
                   "and the calibrated network slow by max(1, N'/C) / max(1, N/C) (default: a core per rank)")
    p.add_argument("--model", help="the model, when the trace does not say (e.g. mlp:4x1024); one the trace "
                   "contradicts is an error")
    p.add_argument("--measured-strategy", help="the measured run's strategy, when the trace does not say; one the "
                   "trace contradicts is an error")
    p.add_argument("--out", "-o", help="write the predicted step's trace (replay and compare open it)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_whatif)


def cmd_whatif(a: argparse.Namespace) -> int:
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.trace import read_trace, write_trace
    from rankscope.simulator.whatif import measure, parse_factor, predict

    check_output(a.out)
    slow = {}
    for spec in a.slow_rank:
        key, f = parse_factor(spec, "--slow-rank")
        if not key.isdigit():
            raise UsageError(f"--slow-rank {spec!r}: the key is a rank number")
        slow[int(key)] = slow.get(int(key), 1.0) * f
    links = [parse_factor(spec, "--slow-link") for spec in a.slow_link]
    meas = measure(read_trace(a.trace), a.model, a.measured_strategy)
    n = a.ranks or meas.nranks
    topo = parse_topology(a.topology, n) if a.topology else None
    prog, sim, topo, rep = predict(meas, n, topo, a.strategy, slow, links, a.host_cores)
    if a.out:
        write_trace(a.out, sim.to_trace(prog, topo, {"whatif": rep, "source_trace": a.trace}))
    if a.json:
        dump_json({**rep, "out": a.out})
        return 0
    m, p = rep["measured"], rep["predicted"]
    if a.topology:
        net = topo.name
    elif m["fit"] == "beta":
        net = (f"switch:{n}, 1/beta {1 / m['beta'] / 1e9:.3g} GB/s fitted to {m['collectives_fitted']} measured "
               f"collectives of one kind and size, which cannot separate alpha from beta: alpha "
               f"{m['alpha'] * 1e6:.3g} us is switch:N's default route latency, not measured")
    else:
        net = (f"switch:{n} fitted to {m['collectives_fitted']} measured collectives: alpha "
               f"{m['alpha'] * 1e6:.3g} us, 1/beta {1 / m['beta'] / 1e9:.3g} GB/s")
    pert = ", ".join([f"rank {r} compute x{f:g}" for r, f in p["slow_ranks"].items()] +
                     [f"link {k} bandwidth /{f:g}" for k, f in p["slow_links"]] +
                     ([f"{a.host_cores} host cores: x{p['host_share']:g}"] if a.host_cores else [])) or "none"
    print(f"measured: {m['strategy']} run of {meas.model} (micro-batch {meas.micro_batch}) on {m['nranks']} ranks, "
          f"steady steps {m['steps']}")
    print(f"predicted: {p['strategy']} on {n} ranks, network {net}; host time "
          f"{'/'.join(format_seconds(x) for x in m['host_overhead_per_op'])} per compute op (per rank); perturbations: {pert}")
    print(f"\n{'':<14}{'measured':>12}{'predicted':>12}{'change':>9}")
    spread = (f"  (measured steps {format_seconds(m['step_time_min'])} .. {format_seconds(m['step_time_max'])})"
              if len(m["steps"]) > 1 else "")
    for name, key, fmt in (("step time", "step_time", format_seconds), ("exposed comm", "exposed_comm", format_seconds),
                           ("peak memory", "peak", format_dec_bytes)):
        mv, pv = m[key], p[key]
        ch = f"{pv / mv - 1:+.1%}" if mv and not math.isnan(mv) else "-"
        print(f"{name:<14}{fmt(mv):>12}{fmt(pv):>12}{ch:>9}" + (spread if key == "step_time" else ""))
    if a.out:
        print(f"trace written to {a.out}")
    return 0
