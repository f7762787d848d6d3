"""``rankscope sim train``: one training step simulated, its memory and communication per rank;
``--compare-strategies`` a row per strategy, ``--find-max-batch`` the largest micro-batch that fits.
A part of the ``sim`` verb (:mod:`.sim` registers it); imports neither torch nor textual."""

from __future__ import annotations

import argparse

from rankscope.simulator.errors import UsageError, check_output
from rankscope.simulator.units import format_count, format_dec_bytes, format_seconds

from .args import byte_size, dump_json, int_at_least, topology_from_args


def add_train_args(s: argparse.ArgumentParser) -> None:
    """The ``sim train`` options, an argument group of ``sim``."""
    t = s.add_argument_group("training step (sim train)")
    t.add_argument("--model", default="mlp:4x1024", help="mlp:LxW, params:P[xUNITS], gpt2, gpt2-medium, "
                   "llama2-7b, llama2-13b, llama2-70b (default mlp:4x1024)")
    t.add_argument("--strategy", default="zero3", help="ddp, zero1, zero2, zero3 (= fsdp); default zero3")
    t.add_argument("--compare-strategies", action="store_true", help="one row per strategy")
    t.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    t.add_argument("--micro-batch", type=int_at_least(1), help="samples per rank (default 32 for mlp, else 1)")
    t.add_argument("--device", default="h100", help="a100, h100, cpu (default h100)")
    t.add_argument("--mfu", type=float, help="fraction of peak FLOP/s reached (default 0.5)")
    t.add_argument("--fsdp-version", type=int, choices=(1, 2), default=2)
    t.add_argument("--no-reshard-after-forward", action="store_true")
    t.add_argument("--forward-prefetch", action="store_true")
    t.add_argument("--no-backward-prefetch", action="store_true")
    t.add_argument("--bucket-mb", type=float, default=25.0, help="DDP/ZeRO bucket size in MiB (default 25)")
    t.add_argument("--seq-len", type=int_at_least(1), help="tokens per sample (transformer presets; default the "
                   "preset's: 1024 GPT-2, 4096 Llama-2)")
    t.add_argument("--checkpointing", choices=("none", "selective", "full"), default="none",
                   help="activation recomputation (Korthikanti et al. 2022; default none)")
    t.add_argument("--attention", choices=("flash", "eager"), default="flash",
                   help="flash (default): no s^2 tensor kept; eager keeps the 5as^2b attention core")
    t.add_argument("--reduce-dtype", choices=("bf16", "fp32"),
                   help="dtype of the gradient collectives (default: the gradients')")
    t.add_argument("--master-weights", choices=("optimizer", "param"), default="optimizer",
                   help="optimizer: 16-bit params and grads, fp32 master in the optimizer (2+2+12 B, default); "
                   "param: the stored parameter is the fp32 master, as FSDP2's MixedPrecisionPolicy (4+4+8 B)")
    t.add_argument("--fp32-grad-accum", action="store_true", help="an fp32 gradient accumulator (+4 B/param)")
    t.add_argument("--grad-accum", type=int_at_least(1), default=1, help="micro-batches per step (default 1)")
    t.add_argument("--grad-sync", choices=("last", "every"),
                   help="reduce gradients on the last micro-batch (default; zero2: every) or after every one")
    t.add_argument("--communicators", choices=("one", "per-stream"), default="one",
                   help="one (default): every collective on the data-parallel group, which NCCL runs one at a time; "
                   "per-stream: all-gathers and reduce-scatters on their own groups, run at once sharing the links")
    t.add_argument("--gpu-memory", type=byte_size, help="device memory (default the --device's: 80GB a100/h100)")
    t.add_argument("--find-max-batch", action="store_true",
                   help="the largest micro-batch that fits, per strategy (with --compare-strategies: all)")


def _gb(x: float) -> str:
    return format_dec_bytes(x)


def _train_config(a: argparse.Namespace, strategy: str):
    from rankscope.simulator.training import TrainConfig

    return TrainConfig(strategy=strategy, precision=a.precision, bucket_bytes=int(a.bucket_mb * 2**20),
                       fsdp_version=a.fsdp_version, reshard_after_forward=not a.no_reshard_after_forward,
                       forward_prefetch=a.forward_prefetch, backward_prefetch=not a.no_backward_prefetch,
                       checkpointing=a.checkpointing, attention=a.attention, reduce_dtype=a.reduce_dtype,
                       master_weights=a.master_weights, fp32_grad_accum=a.fp32_grad_accum,
                       grad_accum=a.grad_accum, grad_sync=a.grad_sync, communicators=a.communicators)


def _fits(peak: int, limit: int | None) -> str:
    return "-" if limit is None else "yes" if peak <= limit else "NO"


def _max_batches(a: argparse.Namespace, strategies, device, topo, limit: int) -> int:
    """``--find-max-batch``: the largest micro-batch that fits, per strategy."""
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.models import parse_model
    from rankscope.simulator.rank_speed import with_topology_speeds
    from rankscope.simulator.train_report import MAX_BATCH_CAP, find_max_batch, peak_bytes
    from rankscope.simulator.training import compile_step

    rows = []
    for strat in strategies:
        cfg = _train_config(a, strat)

        def peak_of(b: int, cfg=cfg) -> int:
            prog = with_topology_speeds(compile_step(parse_model(a.model, b, a.seq_len), a.ranks, cfg, device), topo)
            return peak_bytes(prog, simulate(prog, topo, gamma=a.gamma))

        best, peak = find_max_batch(peak_of, limit)
        rows.append({"strategy": cfg.strategy, "max_micro_batch": best, "peak": peak,
                     "at_search_cap": best == MAX_BATCH_CAP})
    if a.json:
        dump_json({"model": a.model, "nranks": a.ranks, "gpu_memory": limit, "rows": rows})
        return 0
    print(f"{a.model}: largest micro-batch per rank that fits in {_gb(limit)} on {a.ranks} ranks "
          f"({a.checkpointing} checkpointing, grad-accum {a.grad_accum})")
    print(f"{'strategy':<9}{'micro-batch':>12}{'peak':>10}")
    for r in rows:
        best = f">= {r['max_micro_batch']}" if r["at_search_cap"] else (r["max_micro_batch"] or "none fits")
        print(f"{r['strategy']:<9}{best:>12}{_gb(r['peak']) if r['peak'] is not None else '-':>10}")
    if any(r["at_search_cap"] for r in rows):
        print(f">= N: the search stops at {MAX_BATCH_CAP} samples, which still fit")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.rank_speed import with_topology_speeds
    from rankscope.simulator.train_report import train_report
    from rankscope.simulator.training import STRATEGIES, compile_step

    if a.out and a.compare_strategies:
        raise UsageError("--out writes one trace: give --strategy S instead of --compare-strategies")
    check_output(a.out)
    from rankscope.simulator import limits

    if not 0 < a.bucket_mb <= 1 << 20:  # also NaN
        raise UsageError(f"--bucket-mb must be > 0 and <= {1 << 20} MiB, got {a.bucket_mb}")
    if a.mfu is not None and not 0 < a.mfu <= 1:
        raise UsageError(f"--mfu must be in (0, 1], got {a.mfu}")
    if a.grad_accum > limits.MAX_GRAD_ACCUM:
        raise UsageError(f"--grad-accum {a.grad_accum} is over the limit of {limits.MAX_GRAD_ACCUM} micro-batches")
    step = f"a training step of {a.model} on {a.ranks} ranks" + (
        f" x {a.grad_accum} micro-batches" if a.grad_accum > 1 else "")
    units = limits.model_units(a.model)
    if units is not None:
        limits.check_ops(limits.train_ops(units, a.ranks, a.grad_accum), step)
    model = parse_model(a.model, a.micro_batch, a.seq_len)
    device = parse_device(a.device, a.mfu)
    limits.check_ops(limits.train_ops(len(model.units), a.ranks, a.grad_accum), step)
    limit = a.gpu_memory if a.gpu_memory is not None else device.memory
    topo = topology_from_args(a, a.ranks)
    if a.algo is None:  # NCCL's timing where the topology names a GPU cluster, the closed form elsewhere
        a.algo = "nccl" if "cluster" in topo.meta else "ring"
        if a.algo != "nccl" and (a.nccl_algo or a.nccl_proto or a.explain):
            raise UsageError("--nccl-algo, --nccl-proto and --explain go with --algo nccl")
    if a.algo not in ("ring", "nccl"):
        raise UsageError(f"sim train times its collectives with --algo ring (the closed form) or nccl, not {a.algo!r}")
    strategies = STRATEGIES if a.compare_strategies else (a.strategy,)
    if a.find_max_batch:
        if limit is None:
            raise UsageError(f"--find-max-batch needs a memory size: --gpu-memory (device {device.name} has none)")
        if a.out:
            raise UsageError("--find-max-batch writes no trace: leave out --out")
        return _max_batches(a, strategies, device, topo, limit)
    reports = []
    for strat in strategies:
        prog = compile_step(model, a.ranks, _train_config(a, strat), device)
        if a.algo == "nccl":
            from rankscope.simulator.training import nccl_collective_times

            secs, lat = nccl_collective_times(prog, topo, a.nccl_algo, a.nccl_proto)
            prog.meta["coll_seconds"], prog.meta["coll_latency"] = secs.tolist(), lat.tolist()
            prog.meta["collective_model"] = "nccl"
        prog = with_topology_speeds(prog, topo)
        sim = simulate(prog, topo, gamma=a.gamma)
        if a.out and not a.compare_strategies:
            from rankscope.simulator.trace import write_trace

            write_trace(a.out, sim.to_trace(prog, topo))
        rep = train_report(prog, sim)
        rep["peak"] = max(r["peak"] for r in rep["rows"])
        rep["gpu_memory"], rep["fits"] = limit, None if limit is None else rep["peak"] <= limit
        reports.append(rep)
    if a.json:
        dump_json({"model": model.name, "params": model.params, "nranks": a.ranks, "topology": topo.name,
               "reports": reports if a.compare_strategies else reports[0]})
        return 0
    seq = f", seq {model.tokens_per_sample}" if model.tokens_per_sample > 1 else ""
    accum = f" x {a.grad_accum} (sync {reports[0]['program']['grad_sync']})" if a.grad_accum > 1 else ""
    print(f"{model.name}: {format_count(model.params)} parameters, micro-batch {model.micro_batch}{accum}{seq}, "
          f"{a.precision}, checkpointing {a.checkpointing}, {a.ranks} ranks on {topo.name}, device {device.name} "
          f"at {device.efficiency:.0%} of peak" + (f", {_gb(limit)} of memory" if limit is not None else "")
          + "; collectives " + ("timed by NCCL 2.20.3's tuner" if a.algo == "nccl" else "timed by the ring's closed form"))
    if a.compare_strategies:
        print(f"\n{'strategy':<9}{'model state':>12}{'peak':>9}{'fits':>5}{'step':>10}{'exposed comm':>13}"
              f"{'sent/rank':>11}  peak at")
        for rep in reports:
            r0 = rep["rows"][0]
            print(f"{rep['program']['strategy']:<9}{_gb(r0['model_state']):>12}{_gb(rep['peak']):>9}"
                  f"{_fits(rep['peak'], limit):>5}{format_seconds(r0['step_time']):>10}"
                  f"{format_seconds(r0['exposed_comm']):>13}{_gb(r0['bytes_sent']):>11}  {r0['peak_at']}")
        return 0
    rep = reports[0]
    pm = rep["program"]
    print(f"strategy {pm['strategy']}" + (f" (FSDP{pm['fsdp_version']}, reshard_after_forward="
          f"{pm['reshard_after_forward']}, forward_prefetch={pm['forward_prefetch']}, backward_prefetch="
          f"{pm['backward_prefetch']})" if pm["strategy"] == "zero3" else "") +
          f"; padding {pm['padding_bytes']} B; {rep['collectives_per_rank']} collectives per rank; "
          f"step {format_seconds(rep['step_time'])}")
    print(f"\n{'rank':>5}{'params':>9}{'grads':>9}{'optim':>9}{'state':>9}{'acts':>9}{'full p':>9}{'full g':>9}"
          f"{'peak':>9}{'exposed':>10}{'sent':>9}  peak at")
    rows = rep["rows"]
    shown = rows if len(rows) <= 16 else rows[:8] + rows[-1:]
    for r in shown:
        if len(rows) > 16 and r is rows[-1]:
            print(f"{'...':>5}")
        print(f"{r['rank']:>5}{_gb(r['param']):>9}{_gb(r['grad']):>9}{_gb(r['optim']):>9}"
              f"{_gb(r['model_state']):>9}{_gb(r['activation']):>9}"
              f"{_gb(r['param_unsharded']):>9}{_gb(r['grad_unsharded']):>9}{_gb(r['peak']):>9}"
              f"{format_seconds(r['exposed_comm']):>10}{_gb(r['bytes_sent']):>9}  {r['peak_at']}")
    print("each column is its category's own peak over the step (simulator.memory categories): full p = "
          "param_unsharded, full g = grad_unsharded; state = params + grads + optim")
    st = rep["streams"]
    print(f"collective streams on rank 0 ({pm.get('communicators', 'one')} communicator"
          f"{'s' if pm.get('communicators') == 'per-stream' else ''}, {rep['comm_lanes']} comm lane"
          f"{'s' if rep['comm_lanes'] > 1 else ''}): " + ", ".join(
              f"{x['stream']} {x['collectives']} busy {format_seconds(x['busy'])}" for x in st["rows"])
          + f"; two or more in flight {format_seconds(st['concurrent'])}")
    if limit is not None and rep["peak"] > limit:
        tries = ([] if a.checkpointing == "full" else ["--checkpointing full"]) + \
            (["a smaller --micro-batch"] if (a.micro_batch or 1) > 1 else []) + \
            ([] if pm["strategy"] == "zero3" else ["zero3"])
        hint = ("; try " + (", ".join(tries[:-1]) + " or " if len(tries) > 1 else "") + tries[-1]) if tries else ""
        print(f"DOES NOT FIT: peak {_gb(rep['peak'])} is {_gb(rep['peak'] - limit)} over the {_gb(limit)} of "
              f"device memory (--gpu-memory{hint})")
    elif limit is not None:
        print(f"fits: peak {_gb(rep['peak'])} of {_gb(limit)} device memory")
    if a.out:
        print(f"trace written to {a.out}")
    return 0
