"""``rankscope real train``: a real DDP or FSDP2 run, profiled, converted, checked against the simulator.

A sub-verb of ``real`` (:func:`register_train`). Exit code: 0 when the measured collectives equal
the simulated ones, 1 when they differ (the report says where), 2 for bad input or a failed run
(one line on stderr, as every rankscope verb). torch is imported only once a run starts, so
``--help`` is instant. Under torchrun every rank runs the same command:
``torchrun --nproc-per-node=N -m rankscope real train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.units import format_dec_bytes, format_seconds

from .args import int_at_least, seconds
from .real_env import check_writable, need_torch


def register_train(verbs) -> None:
    """Add ``train`` to the subparsers ``verbs`` of ``real``."""
    p = verbs.add_parser(
        "train", help="real DDP or FSDP2 steps under the profiler, checked against the simulator",
        description="Run real data-parallel training steps (DDP, or FSDP2 with fully_shard per layer) on N "
        "local gloo ranks (NCCL under torchrun on GPUs) with torch.profiler, convert the run into a "
        "rankscope trace and check it against the simulator.")
    p.add_argument("--model", default="mlp:4x1024", help="mlp:LxW (default mlp:4x1024)")
    p.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp", help="default ddp")
    p.add_argument("--ranks", "-n", type=int_at_least(1), default=2, help="local processes (default 2)")
    p.add_argument("--steps", type=int_at_least(1), default=3,
                   help="training steps (default 3: the last is a steady-state step for DDP too)")
    p.add_argument("--micro-batch", type=int_at_least(1), help="samples per rank (default: the simulator's, 32)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb (default 25)")
    p.add_argument("--timeout", type=seconds, default=120.0,
                   help="seconds for the whole run and for any collective (default 120)")
    p.add_argument("--checkpointing", choices=("none", "full"), default="none",
                   help="full: torch.utils.checkpoint on every unit (default none)")
    p.add_argument("--param-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: FSDP2's MixedPrecisionPolicy(param_dtype=torch.bfloat16) (fsdp only; default fp32)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU for local ranks, CUDA under torchrun when there; cuda: one GPU per local rank")
    p.add_argument("--start-method", choices=("fork", "forkserver", "spawn"),
                   help="how to start the local ranks (default fork on CPUs, spawn on CUDA)")
    p.add_argument("--profile-dir", help="keep the per-rank profiler traces, stats and flight-recorder "
                   "dumps in this folder (default: a temporary folder, removed)")
    p.add_argument("--out", "-o", help="write the trace to this file (Arrow IPC, trace format v1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    started = time.monotonic()  # --timeout counts from here
    need_torch("real train")
    from rankscope.real.profile_convert import convert_run
    from rankscope.real.train import TrainRunConfig, launch, run_torchrun_rank, torchrun_env
    from rankscope.simulator.trace import write_trace

    check_writable(a.out)
    check_writable(a.profile_dir, folder=True)
    cfg = TrainRunConfig(model=a.model, strategy=a.strategy, nranks=a.ranks, steps=a.steps,
                         micro_batch=a.micro_batch, bucket_mb=a.bucket_mb, timeout=a.timeout,
                         start_method=a.start_method, device=a.device, checkpointing=a.checkpointing,
                         param_dtype=a.param_dtype)
    wall = None
    if torchrun_env() is not None:
        folder = a.profile_dir or f"{a.out or 'rankscope-train'}.profiles"
        if not run_torchrun_rank(cfg, folder, started):
            return 0
        keep = True
    else:
        keep = a.profile_dir is not None
        folder = a.profile_dir or tempfile.mkdtemp(prefix="rankscope-train-")
        os.makedirs(folder, exist_ok=True)
        _clear_run_files(folder)  # a kept folder may hold an earlier run's files
        try:
            wall = launch(cfg, folder, started)
        except RankscopeError:
            if not keep:
                print(f"rankscope: the run's files are kept in {folder}", file=sys.stderr)
            raise
    try:
        trace = convert_run(folder, cfg)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if a.out:
        write_trace(a.out, trace)
    comp = trace.meta["comparison"]
    if a.json:
        json.dump({"run": trace.meta["run"], "wall_seconds": wall, "comparison": comp, "out": a.out,
                   "profile_dir": folder if keep else None}, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print(trace.meta["run"], comp, wall, a.out, folder if keep else None)
    return 0 if comp["collectives"]["match"] else 1


def _clear_run_files(folder: str) -> None:
    """Remove what an earlier run left in ``folder`` (any rank count): its ``rank<r>.json``,
    ``.stats.json``, ``.error`` and flight-recorder dumps, which an import of the folder would
    otherwise take for this run's ranks."""
    import re

    mine = re.compile(r"rank\d+(\.stats\.json|\.json|\.error|\.stderr)$")
    for sub in (folder, os.path.join(folder, "flight_recorder")):
        if os.path.isdir(sub):
            for name in os.listdir(sub):
                if mine.match(name):
                    os.unlink(os.path.join(sub, name))


def _print(run: dict[str, Any], comp: dict[str, Any], wall: float | None, out: str | None,
           folder: str | None) -> None:
    took = f" in {format_seconds(wall)}" if wall is not None else ""
    print(f"real {run['strategy']} run of {run['model']} (micro-batch {run['micro_batch']}) on {run['nranks']} "
          f"ranks, {run['backend']} on {run['device']}, {run['steps']} steps{took}")
    secs = run.get("step_seconds", {}).get("0") or []
    if secs:
        print("  rank 0 step times: " + ", ".join(format_seconds(s) for s in secs))
    c = comp["collectives"]
    steps = c["steps"]
    if c["match"]:
        print(f"collectives: every rank and step matches the simulator ({c['per_step_simulated']} per "
              f"step, kind and bytes; compile_step {comp['train_config']})")
    else:
        print("collectives: MISMATCH with the simulator")
        for s in steps:
            if not s["match"]:
                print(f"  rank {s['rank']} step {s['step']}: measured {s['measured']}, simulated "
                      f"{s['simulated']}; first difference {s.get('first_difference')}")
    for m in c["mapping"]:
        left = f" (left out: {m['left_out']})" if "left_out" in m else ""
        who = f"rank {m['rank']} " if "rank" in m else ""
        print(f"  note: {who}step {m['step']}: {m['why']}{left}")
    mem = comp["memory"]
    if mem["ranks"]:
        print(f"peak memory in step {mem['step']} ({mem['source']}):")
        print(f"  {'rank':>4} {'measured':>10} {'simulated':>10} {'sim/meas':>9}")
        for r in mem["ranks"]:
            flag = "" if r["within_tolerance"] else f"  outside {mem['tolerance']:.0%}"
            print(f"  {r['rank']:>4} {format_dec_bytes(r['measured_peak']):>10} "
                  f"{format_dec_bytes(r['simulated_peak']):>10} {r['ratio']:>9.3f}{flag}")
    if mem.get("note"):
        print(f"  note: {mem['note']}")
    if folder:
        print(f"profiler traces kept in {folder}")
    if out:
        print(f"trace written to {out}")
