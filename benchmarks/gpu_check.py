"""The GPU check: the real backend's NCCL path end to end on this machine's GPUs, in one table.

    python benchmarks/gpu_check.py [--out-dir DIR] [--gpus N] [--json]

On a machine with CUDA (target: under 5 minutes, not yet measured on a GPU; each command has its
own time limit, and no command starts after 5 minutes), with N = every GPU here (one GPU: world size 1, which
still exercises device placement, CUDA-event timing and the launcher):
  1. ``torchrun --standalone --nproc-per-node N -m rankscope real COLL --algo A --backend nccl``
     for every collective and algorithm the real backend runs (hier with M = 2 nodes of N/2 where
     N is even and >= 4, else 1 node): the result must equal the native collective's, the
     measured provenance the simulated one after every step (``--check-steps``), every op must
     have run with end >= start;
  2. ``real train --model mlp:4x1024 --strategy fsdp --device cuda`` under torchrun: an FSDP2
     step on the GPUs, its collectives against the simulator's exactly, its peak memory
     (``torch.cuda.max_memory_allocated`` less the cuBLAS workspaces) within 10% of the
     simulated peak. (``real train`` builds ``mlp:LxW`` models only, so this is the model; a
     GPT-2 step is not buildable by it yet.)
  3. ``rankscope import kineto`` of that run's profiler files: every collective must be timed by
     its NCCL kernel (both ``ncclKernel_*``, NCCL < 2.19, and ``ncclDevKernel_*`` names count);
  4. ``real sweep --collective all`` under torchrun: native NCCL collectives (and rankscope's P2P
     programs where N >= 2) over sizes, every time finite and positive.
Prints one table (check, what ran, result, detail) and exits 1 if any check failed. Without CUDA
it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rankscope.simulator.collectives import ALGORITHMS  # noqa: E402

BUDGET_S = 300.0          # the check's own limit: no command starts after it
COMMAND_S = 150.0         # one command's limit
SIZE = "4MiB"


@dataclass
class Check:
    name: str
    argv: list[str]
    judge: Callable[["Check", int, str, str], tuple[bool, str]]
    timeout: float = COMMAND_S
    after: Callable[[], None] | None = None
    result: dict[str, Any] = field(default_factory=dict)


def torchrun(n: int) -> list[str]:
    """``torchrun --standalone --nproc-per-node N``: the script next to this Python, else the
    same launcher as a module of this Python."""
    exe = Path(sys.executable).with_name("torchrun")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return head + ["--standalone", f"--nproc-per-node={n}"]


def hier_nodes(n: int) -> int:
    return 2 if n >= 4 and n % 2 == 0 else 1


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of ``stdout`` that is a JSON object (rank 0 prints it; others print nothing)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _tail(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    return lines[-1][:160] if lines else "no output"


def judge_real(c: Check, rc: int, out: str, err: str) -> tuple[bool, str]:
    s = last_json(out)
    if rc != 0 or s is None:
        return False, f"exit {rc}: {_tail(err)}"
    c.result.update(s)
    bad = [k for k, want in (("provenance", "equal"), ("native", "equal")) if s.get(k) != want]
    if s.get("mismatch"):
        return False, str(s["mismatch"])[:160]
    if bad:
        return False, ", ".join(f"{k} {s.get(k)}" for k in bad)
    if s.get("executor") != "nccl" or s.get("clock") != "cuda-events":
        return False, f"ran on {s.get('executor')} with clock {s.get('clock')}, not nccl/cuda-events"
    if s["transfers"] and not (s["seconds"] > 0):
        return False, f"{s['transfers']} transfers in {s['seconds']} s"
    return True, (f"{s['transfers']} transfers, {s['seconds'] * 1e3:.3f} ms" +
                  (f", busbw {s['busbw'] / 1e9:.1f} GB/s" if s.get("busbw") else ""))


def check_trace(path: str) -> str | None:
    """What is wrong with a measured trace's times (None: every op ran, end >= start)."""
    import numpy as np

    from rankscope.simulator.trace import read_trace

    tr = read_trace(path)
    if not tr.ran.all():
        return f"{int((~tr.ran).sum())} of {tr.n_ops} ops did not run"
    if tr.n_ops and not (tr.end >= tr.start).all():
        return f"{int((tr.end < tr.start).sum())} ops end before they start"
    if tr.n_ops and float(np.max(tr.end - tr.start)) > 10:
        return "an op took more than 10 s"
    return None


def judge_train(c: Check, rc: int, out: str, err: str) -> tuple[bool, str]:
    d = last_json(out)
    if d is None:
        return False, f"exit {rc}: {_tail(err)}"
    comp = d["comparison"]
    c.result.update(d)
    mem = comp["memory"]
    peaks = "; ".join(f"rank {r['rank']} measured {r['measured_peak']:,} B (cuBLAS {r.get('cublas_workspace', 0):,} B "
                      f"left out) simulated {r['simulated_peak']:,} B ({r['ratio']:.3f})" for r in mem["ranks"][:2])
    if not comp["collectives"]["match"]:
        return False, "collectives differ from the simulator's; " + peaks
    if d["run"].get("device", "").split(":")[0] != "cuda" or "cuda" not in mem.get("source", ""):
        return False, f"ran on {d['run'].get('device')}, memory from {mem.get('source')}"
    if not mem["within_tolerance"]:
        return False, f"peak memory outside {mem['tolerance']:.0%}: " + peaks
    return rc == 0, peaks


def kineto_kernels(folder: str) -> dict[str, int]:
    """NCCL kernels in a run's profiler files, by family (``ncclKernel`` / ``ncclDevKernel``)."""
    out = {"ncclKernel": 0, "ncclDevKernel": 0}
    for f in sorted(Path(folder).glob("rank*.json")):
        if f.name.endswith(".stats.json"):
            continue
        for e in json.loads(f.read_text()).get("traceEvents", []):
            name = str(e.get("name", ""))
            if e.get("cat") == "kernel" and name.startswith("ncclDevKernel"):
                out["ncclDevKernel"] += 1
            elif e.get("cat") == "kernel" and name.startswith("ncclKernel"):
                out["ncclKernel"] += 1
    return out


def judge_import(profile_dir: str, trace_path: str) -> Callable[[Check, int, str, str], tuple[bool, str]]:
    def judge(c: Check, rc: int, out: str, err: str) -> tuple[bool, str]:
        d = last_json(out)
        if rc != 0 or d is None or not os.path.exists(trace_path):
            return False, f"exit {rc}: {_tail(err)}"
        from rankscope.simulator.trace import read_trace

        meta = read_trace(trace_path).meta
        kernels = kineto_kernels(profile_dir)
        fam = ", ".join(f"{v} {k}_*" for k, v in kernels.items() if v) or "no NCCL kernels"
        return imported_ok(meta, kernels, fam)
    return judge


def imported_ok(meta: dict[str, Any], kernels: dict[str, int], fam: str) -> tuple[bool, str]:
    """Every imported collective timed by an NCCL kernel (its ``impl``), no importer note about
    collectives timed by their CPU-side call."""
    colls = meta.get("collectives", [])
    notes = [n for r in meta.get("ranks", {}).values() for n in (r.get("notes") or []) if "kernel" in n]
    untimed = [c for c in colls if not str(c.get("impl", "")).lower().startswith("nccl")]
    if notes or untimed:
        return False, f"{len(untimed)} of {len(colls)} collectives without their NCCL kernel ({fam})" + \
            (f"; {notes[0]}" if notes else "")
    if colls and not any(kernels.values()):
        return False, f"{len(colls)} collectives but {fam} in the profile"
    return True, f"{len(colls)} collectives timed by their kernels; {fam}"


def judge_sweep(n: int) -> Callable[[Check, int, str, str], tuple[bool, str]]:
    def judge(c: Check, rc: int, out: str, err: str) -> tuple[bool, str]:
        d = last_json(out)
        if rc != 0 or d is None:
            return False, f"exit {rc}: {_tail(err)}"
        rows = d["rows"]
        native = [r for r in rows if r["impl"] == "native"]
        timed = native + ([r for r in rows if r["impl"] != "native"] if n >= 2 else [])
        bad = [r for r in timed if not (0 < r["seconds"] < float("inf"))]
        colls = sorted({r["collective"] for r in native})
        if bad or set(colls) != set(ALGORITHMS):
            return False, f"{len(bad)} rows without a time; native collectives {colls}"
        best = max(native, key=lambda r: r["busbw"])
        return True, (f"{len(rows)} rows; best native busbw {best['busbw'] / 1e9:.1f} GB/s "
                      f"({best['collective']}, {best['nbytes']:,} B)")
    return judge


def checks(n: int, out_dir: str) -> list[Check]:
    """Every command of the check, in order (see the module docstring)."""
    tr = torchrun(n)
    cs = []
    for coll, algos in ALGORITHMS.items():
        for algo in algos:
            extra = ["--nodes", str(hier_nodes(n))] if algo == "hier" else []
            trace = os.path.join(out_dir, f"real-{coll}-{algo}.trace")
            c = Check(f"real {coll} {algo}", tr + ["-m", "rankscope", "real", coll, "--algo", algo, "--size", SIZE,
                                                    "--backend", "nccl", "--check-steps", "--timeout", "60",
                                                    "--out", trace, "--json", *extra], judge_real)
            c.result["trace"] = trace
            cs.append(c)
    prof = os.path.join(out_dir, "train-profile")
    cs.append(Check("real train fsdp", tr + ["-m", "rankscope", "real", "train", "--model", "mlp:4x1024",
                                             "--strategy", "fsdp", "--ranks", str(n), "--steps", "3",
                                             "--device", "cuda", "--timeout", "120", "--profile-dir", prof,
                                             "--out", os.path.join(out_dir, "train.trace"), "--json"], judge_train))
    imported = os.path.join(out_dir, "train-import.trace")
    cs.append(Check("import kineto", [sys.executable, "-m", "rankscope", "import", "kineto", prof, "-o", imported,
                                      "--json"], judge_import(prof, imported), timeout=60))
    cs.append(Check("real sweep", tr + ["-m", "rankscope", "real", "sweep", "--collective", "all", "--backend", "nccl",
                                        "--sizes", "1MiB", "64MiB", "--iters", "5", "--json"], judge_sweep(n)))
    return cs


def run_check(c: Check, env: dict[str, str], cwd: str) -> tuple[bool, str, float]:
    t = time.monotonic()
    try:
        p = subprocess.run(c.argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=c.timeout)
    except subprocess.TimeoutExpired:
        return False, f"did not finish within {c.timeout:g} s", time.monotonic() - t
    ok, detail = c.judge(c, p.returncode, p.stdout, p.stderr)
    trace = c.result.get("trace")
    if ok and trace and os.path.exists(trace):
        wrong = check_trace(trace)
        if wrong:
            ok, detail = False, wrong
    return ok, detail, time.monotonic() - t


def format_table(rows: list[dict[str, Any]]) -> str:
    w = max([len(r["check"]) for r in rows] + [5])
    lines = [f"{'check':<{w}}  {'result':<6} {'seconds':>8}  detail"]
    for r in rows:
        lines.append(f"{r['check']:<{w}}  {'ok' if r['ok'] else 'FAIL':<6} {r['seconds']:>8.1f}  {r['detail']}")
    bad = sum(not r["ok"] for r in rows)
    lines.append(f"{len(rows) - bad} of {len(rows)} checks passed" + (f"; {bad} FAILED" if bad else ""))
    return "\n".join(lines)


def cuda_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", help="keep traces and profiles here (default: a temporary folder)")
    ap.add_argument("--gpus", type=int, help="world size (default: every GPU here)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    gpus = cuda_gpus()
    if gpus == 0:
        print("gpu_check: skipped: no CUDA device here (torch.cuda.is_available() is False or torch is missing)")
        return 0
    n = min(a.gpus or gpus, gpus)
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="rankscope-gpu-check-")
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    t0, rows = time.monotonic(), []
    for c in checks(n, out_dir):
        if time.monotonic() - t0 > BUDGET_S:
            rows.append({"check": c.name, "ok": False, "seconds": 0.0, "detail": "not run: the 5-minute budget is spent"})
            continue
        ok, detail, secs = run_check(c, env, out_dir)
        rows.append({"check": c.name, "ok": ok, "seconds": secs, "detail": detail})
        print(f"  {c.name}: {'ok' if ok else 'FAIL'} ({secs:.1f} s)", file=sys.stderr)
    import torch

    head = (f"rankscope GPU check: {n} of {gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
            f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}; {time.monotonic() - t0:.0f} s")
    if a.json:
        print(json.dumps({"header": head, "rows": rows}))
    else:
        print(head)
        print(format_table(rows))
    if not a.out_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
