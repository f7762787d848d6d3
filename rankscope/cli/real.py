"""The ``real`` and ``calibrate`` verbs. Importing this module imports no torch: only handlers do.

    rankscope real COLLECTIVE --algo ALGO --ranks N --size S [--out FILE] [--timeout 60]
                   [--backend gloo|nccl] [--check-steps] [--pieces K --root R --nodes M] [--json]
    rankscope real sweep [--collective all-reduce|...|all] [--ranks N] [--sizes S ...]
                   [--algos ring,hd] [--iters 5] [--json|--csv] [--out-dir DIR]
    rankscope calibrate [--ranks N] [--sizes S ...] [--out topo.toml] [--json]

:func:`register` adds the verbs to the subparsers object ``sub`` (made with
``parser_class=Parser``); each leaf parser sets ``func=handler``, ``handler(args)``
returns the exit code: 0 success, 1 a run that failed (a rank died, a result or provenance
mismatch; one line on stderr), and bad input raises a RankscopeError (one line, exit 2).
COLLECTIVE is a sub-verb so that ``real sweep`` can have options of its own; the collectives'
spellings are the simulator's (all-reduce, allreduce, all_reduce, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from rankscope.simulator.collectives import ALGORITHMS, ALIASES
from rankscope.simulator.errors import UsageError
from rankscope.simulator.units import format_bytes, format_seconds, parse_size

from .args import byte_size, byte_sizes, int_at_least, seconds
from .real_env import check_writable, need_torch

DEFAULT_LOCAL_RANKS = 4


def _common(p: argparse.ArgumentParser, ranks_help: str) -> None:
    p.add_argument("--ranks", "-n", type=int_at_least(1), help=ranks_help)
    p.add_argument("--timeout", type=seconds, default=60.0,
                   help="seconds any rank may wait; after a failure, the others must exit within it (default 60)")
    p.add_argument("--backend", choices=("gloo", "nccl"),
                   help="default: gloo locally; nccl under torchrun when CUDA is available")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def register(sub: Any) -> None:
    """Add ``real`` (with sub-verbs COLLECTIVE and ``sweep``) and ``calibrate`` to ``sub``."""
    parser_class = getattr(sub, "_parser_class", argparse.ArgumentParser)
    real = sub.add_parser("real", help="run a collective on real ranks (torch.distributed): trace it, "
                          "check measured provenance against the simulator and the result against native")
    verbs = real.add_subparsers(dest="real_verb", metavar="COLLECTIVE", parser_class=parser_class)
    verbs.required = True
    ranks_help = (f"number of ranks (default {DEFAULT_LOCAL_RANKS} local ranks; under torchrun its "
                  "WORLD_SIZE)")
    for coll, algos in ALGORITHMS.items():
        aliases = sorted(a for a, c in ALIASES.items() if c == coll)
        p = verbs.add_parser(coll, aliases=aliases, help=f"run {coll} ({', '.join(algos)}) as P2P transfers")
        p.add_argument("--algo", default="ring", help=f"one of {', '.join(algos)} (default ring)")
        _common(p, ranks_help)
        p.add_argument("--size", "-s", type=byte_size, default=parse_size("1MiB"),
                       help="buffer size (default 1MiB); rounded up to whole elements per chunk")
        p.add_argument("--out", "-o", help="write the measured trace here (Arrow IPC, trace format v1)")
        p.add_argument("--check-steps", action="store_true",
                       help="compare measured with simulated provenance after every step, not only the last")
        p.add_argument("--pieces", type=int_at_least(1), default=4, help="pipelined broadcast pieces (default 4)")
        p.add_argument("--root", type=int_at_least(0), default=0, help="broadcast root (default 0)")
        p.add_argument("--nodes", type=int_at_least(1), help="M for the hierarchical all-reduce (N = M x G)")
        p.add_argument("--topology", "-t", help="with --algo nccl: the GPU cluster preset whose NCCL choice runs "
                       "(e.g. nodes:2x2,gpu=h100); its ranks must be --ranks")
        p.add_argument("--nccl-algo", help="with --algo nccl: as NCCL_ALGO (ring, tree, nvls, nvls_tree)")
        p.add_argument("--nccl-proto", help="with --algo nccl: as NCCL_PROTO (ll, ll128, simple)")
        p.add_argument("--inject-fault", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_real, collective=coll)
    s = verbs.add_parser("sweep", help="time native collectives and rankscope's P2P programs over sizes")
    s.add_argument("--collective", default="all-reduce",
                   help=f"one of {', '.join(ALGORITHMS)}, or all (default all-reduce)")
    _common(s, ranks_help)
    s.add_argument("--sizes", type=byte_sizes, nargs="+", default=None,
                   help="sizes, e.g. 64KiB 1MiB 16MiB or 64KiB,1MiB (default 4KiB 64KiB 1MiB 16MiB)")
    s.add_argument("--algos", help="comma-separated P2P algorithms (default: every one but hier)")
    s.add_argument("--iters", type=int_at_least(1), default=5, help="timed rounds per size (default 5)")
    s.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed runs first (default 1)")
    s.add_argument("--out-dir", help="write one trace per (collective, implementation, size) here")
    s.add_argument("--csv", action="store_true", help="print CSV")
    s.add_argument("--pieces", type=int_at_least(1), default=4, help="pipelined broadcast pieces")
    s.add_argument("--nodes", type=int_at_least(1), help="M for --algos hier")
    s.set_defaults(func=cmd_sweep)
    from .train import register_train

    register_train(verbs)
    c = sub.add_parser("calibrate", help="measure per-pair latency and bandwidth by ping-pong; write a "
                       "topology TOML the simulator loads")
    _common(c, ranks_help)
    c.add_argument("--sizes", type=byte_sizes, nargs="+", default=None,
                   help="ping-pong sizes (default 4KiB 64KiB 1MiB 4MiB)")
    c.add_argument("--rounds", type=int_at_least(1), default=10, help="timed round trips per size (default 10)")
    c.add_argument("--out", "-o", default="calibrated.toml", help="topology file (default calibrated.toml)")
    c.set_defaults(func=cmd_calibrate)
    v = sub.add_parser("validate", help="calibrate, simulate on the calibrated topology, run for real, compare "
                       "(ring all-reduce N=2,4 64KiB-64MiB, one FSDP step)")
    v.add_argument("--ranks", "-n", type=int_at_least(2), nargs="+", default=[2, 4],
                   help="rank counts (default 2 4)")
    v.add_argument("--sizes", type=byte_sizes, nargs="+", default=None,
                   help="all-reduce sizes (default 64KiB 256KiB 1MiB 4MiB 16MiB 64MiB)")
    v.add_argument("--repeats", type=int_at_least(1), default=5,
                   help="real runs per size; the median counts (default 5)")
    v.add_argument("--no-fsdp", action="store_true", help="skip the FSDP step of mlp:4x1024")
    v.add_argument("--out-dir", "-o", default="validate-out",
                   help="traces, calibrated topologies, validate.json and validate.png (default validate-out)")
    v.add_argument("--timeout", type=seconds, default=120.0, help="seconds any rank may wait (default 120)")
    v.add_argument("--json", action="store_true", help="print JSON instead of text")
    v.set_defaults(func=cmd_validate)


def _nranks(args: argparse.Namespace) -> int:
    from rankscope.real.launch import in_torchrun

    if in_torchrun():
        return args.ranks or int(os.environ["WORLD_SIZE"])
    return args.ranks or DEFAULT_LOCAL_RANKS


def _failed(e: Exception) -> int:
    print(f"rankscope: error: {e}", file=sys.stderr)
    trace = getattr(e, "trace", None)
    if trace:
        print(f"rankscope: partial trace (marked incomplete) written to {trace}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    from rankscope.real.launch import in_torchrun

    if in_torchrun():  # a broken process group can hang interpreter shutdown: leave now
        os._exit(1)
    return 1


def cmd_real(args: argparse.Namespace) -> int:
    started = time.monotonic()  # the --timeout budget of a rank that hangs counts from here
    need_torch("real")
    from rankscope.real.encoding import Encoding, aligned_program
    from rankscope.real.faults import parse_fault
    from rankscope.real.runner import RankFailed, run_programs

    check_writable(args.out)
    n = _nranks(args)
    algo, nodes, choice = args.algo, args.nodes, None
    if algo == "nccl":
        from rankscope.simulator.nccl import p2p_choice
        from rankscope.simulator.topology import parse_topology

        if not args.topology:
            raise UsageError("--algo nccl needs --topology: the GPU cluster whose NCCL choice to run")
        algo, nodes, choice = p2p_choice(args.collective, parse_topology(args.topology, n), args.size,
                                         args.nccl_algo, args.nccl_proto)
    elif args.topology or args.nccl_algo or args.nccl_proto:
        raise UsageError("--topology, --nccl-algo and --nccl-proto go with --algo nccl")
    prog = aligned_program(args.collective, algo, n, args.size, Encoding(n).elem_bytes,
                           pieces=args.pieces, root=args.root, nodes=nodes)
    if choice is not None:
        prog.meta["nccl"] = choice.to_dict()
    try:
        out = run_programs([prog], [args.out], nranks=args.ranks, backend=args.backend,
                           timeout=args.timeout, check_steps=args.check_steps,
                           fault=parse_fault(args.inject_fault), started=started)
    except RankFailed as e:
        return _failed(e)
    if not out:  # another rank of a torchrun job: rank 0 reports
        return 0
    s = out[0]
    if args.json:
        print(json.dumps({**s, "nccl": choice.to_dict()} if choice is not None else s))
    else:
        if choice is not None:
            print(f"NCCL {choice.to_dict()['nccl_version']} on {args.topology}: {choice.algo}/{choice.proto}, "
                  f"{choice.nchannels} channels (NCCL predicts {format_seconds(choice.predicted)}); running {algo} "
                  f"with {prog.meta.get('nchannels')} channels on {s['executor']}")
        print(format_summary(s))
    if s["mismatch"]:
        print(f"rankscope: error: {s['mismatch']}", file=sys.stderr)
        return 1
    return 0


def format_summary(s: dict[str, Any]) -> str:
    req = s["requested_nbytes"]
    size = f"{format_bytes(s['nbytes'])} ({s['nbytes']} bytes" + \
        (f", requested {req} rounded up to whole elements per chunk)" if req not in (None, s["nbytes"]) else ")")
    lines = [f"real {s['collective']} ({s['algo']}) on {s['nranks']} ranks, {s['executor']}, {size}: "
             f"{s['steps']} steps, {s['transfers']} transfers"]
    if s["algbw"] is not None:
        bus = f", busbw {s['busbw'] / 1e9:.3f} GB/s" if s["busbw"] is not None else ""
        lines.append(f"  time {format_seconds(s['seconds'])} (first send to last receive), "
                     f"algbw {s['algbw'] / 1e9:.3f} GB/s{bus}")
    when = "after every step" if s["check_steps"] else "after the last step"
    lines.append(f"  provenance {when}: measured {'==' if s['provenance'] == 'equal' else '!='} simulated")
    lines.append(f"  result vs native {s['collective']}: {s['native']}")
    lines.append(f"  clock {s['clock']}, offsets (ns) {[round(x) for x in s['offsets_ns']]}")
    if s["trace"]:
        lines.append(f"trace written to {s['trace']}")
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    need_torch("real sweep")
    from rankscope.real.runner import RankFailed
    from rankscope.real.sweep import DEFAULT_ALGOS, Group, Impl, format_table, run_sweep

    check_writable(args.out_dir, folder=True)
    coll = ALIASES.get(args.collective, args.collective)
    colls = list(ALGORITHMS) if coll == "all" else [coll]
    if colls[0] not in ALGORITHMS:
        raise UsageError(f"unknown collective {args.collective!r}; choose from {', '.join(ALGORITHMS)} or all")
    sizes = [x for group in args.sizes for x in group] if args.sizes else \
        [parse_size(x) for x in ("4KiB", "64KiB", "1MiB", "16MiB")]
    groups = []
    for c in colls:
        algos = [ALIASES.get(a, a) for a in args.algos.split(",") if a] if args.algos else list(DEFAULT_ALGOS[c])
        bad = [a for a in algos if a not in ALGORITHMS[c]]
        if bad:
            raise UsageError(f"unknown algorithm {bad[0]!r} for {c}; choose from {', '.join(ALGORITHMS[c])}")
        if "hier" in algos and args.nodes is None:
            raise UsageError("--algos hier needs --nodes M")
        impls = (Impl("native"),) + tuple(Impl(a) for a in algos)
        groups += [Group(c, s, impls) for s in sizes]
    try:
        rows = run_sweep(groups, nranks=_nranks(args), backend=args.backend, timeout=args.timeout,
                         iters=args.iters, warmup=args.warmup, out_dir=args.out_dir, pieces=args.pieces,
                         nodes=args.nodes, progress=None if not (args.json or args.csv) else False)
    except RankFailed as e:
        return _failed(e)
    if not rows:
        return 0
    if args.json:
        print(json.dumps({"rows": rows}))
    elif args.csv:
        print("collective,impl,size,seconds,algbw_GBps,busbw_GBps,mean_seconds,min_seconds,iters")
        for r in rows:
            print(f"{r['collective']},{r['impl']},{r['nbytes']},{r['seconds']:.9g},{r['algbw'] / 1e9:.6g},"
                  f"{r['busbw'] / 1e9:.6g},{r['mean_seconds']:.9g},{r['min_seconds']:.9g},{r['iters']}")
    else:
        print(format_table(rows))
        if args.out_dir:
            print(f"traces written to {args.out_dir}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    need_torch("validate")
    from rankscope.real.runner import RankFailed
    from rankscope.real.validate import DEFAULT_SIZES, validate
    from rankscope.real.validate_report import format_report

    check_writable(args.out_dir, folder=True)
    sizes = [x for group in args.sizes for x in group] if args.sizes else list(DEFAULT_SIZES)
    try:
        report = validate(args.ranks, sizes, repeats=args.repeats, out_dir=args.out_dir, fsdp=not args.no_fsdp,
                          timeout=args.timeout, progress=not args.json and sys.stderr.isatty())
    except RankFailed as e:
        return _failed(e)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    need_torch("calibrate")
    from rankscope.real.calibrate import DEFAULT_SIZES, calibrate, detours, topology, write_topology
    from rankscope.real.runner import RankFailed

    check_writable(args.out)
    sizes = [x for group in args.sizes for x in group] if args.sizes else list(DEFAULT_SIZES)
    if len(set(sizes)) < 2:
        raise UsageError(f"calibration needs at least two different sizes to fit latency and bandwidth, "
                         f"got {sizes}")
    try:
        got = calibrate(args.ranks if args.ranks is not None else _nranks(args), sizes, rounds=args.rounds,
                        backend=args.backend, timeout=args.timeout)
    except RankFailed as e:
        return _failed(e)
    if got is None:
        return 0
    fits, raw = got
    name = f"calibrated-{raw['backend']}-{raw['nranks']}"
    topo = write_topology(args.out, topology(fits, raw["nranks"], name,
                                             {"source": "rankscope calibrate", "backend": raw["backend"],
                                              "sizes": raw["sizes"], "rounds": args.rounds}))
    if args.json:
        print(json.dumps({"topology": args.out, "sizes": raw["sizes"],
                          "pairs": [{"src": f.src, "dst": f.dst, "alpha": f.alpha, "bw": f.bw,
                                     "residuals": list(f.residuals), "rms": f.rms} for f in fits]}))
        return 0
    print(f"# rankscope calibrate: {raw['nranks']} ranks, {raw['backend']}, ping-pong over "
          f"{', '.join(format_bytes(s) for s in raw['sizes'])}; fit t = alpha + n / bw")
    print(f"# {'pair':>7} {'alpha (us)':>11} {'bw (GB/s)':>10} {'rms resid (us)':>15}  residual per size (us)")
    for f in fits:
        res = " ".join(f"{r * 1e6:+.1f}" for r in f.residuals)
        print(f"  {f.src:>3}-{f.dst:<3} {f.alpha * 1e6:>11.1f} {f.bw / 1e9:>10.3f} {f.rms * 1e6:>15.1f}  {res}")
    if off := detours(topo):
        print(f"note: the simulator routes {len(off)} pair(s) around their own link (a two-hop detour has "
              f"less latency), e.g. {off[0][0]}->{off[0][1]}")
    print(f"topology written to {args.out} ({len(topo.link_names)} links; loads with --topology {args.out})")
    return 0
