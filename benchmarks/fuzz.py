"""The long fuzz run (issue 14's "Done means"): >= 10,000 adversarial cases through rankscope's
readers and command line, counting tracebacks, runs over 10 s and peak memory.

    python benchmarks/fuzz.py [--cases 10000] [--seed 14] [--family trace,cli,toml,fr] [--show 5]

The cases are tests/fuzzing.py's (the unit tests tests/test_fuzz_*.py run a few dozen of each with
hypothesis). Each case runs in this process under a 10 s alarm; the address space is capped at
RANKSCOPE_MEMORY (default 8 GiB here) so that a blow-up is a MemoryError, counted, not a dead
machine. Peak memory is this process's peak RSS (getrusage), over the whole run. A case's shares:
trace 40%, cli 30%, toml 15%, fr 15%; a trace case is one mutated file through each reader (info,
info --salvage, export chrome/kineto/chakra, compare, replay, replay --salvage), each counted.
Prints a table and the first reproducers of anything that is not "ok" or "error".
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fuzzing as F  # noqa: E402


def salvage_figure(m: int, folder: Path) -> str:
    """Issue 14's salvage case: ``m`` ops each waiting for the next, cut after half of them
    (110 s for 10^6 ops before the linear prefix)."""
    import numpy as np

    from rankscope.simulator.program import Buffer, Program
    from rankscope.simulator.trace import TraceWriter, read_trace

    ptr = np.concatenate([np.arange(m), [m - 1]]).astype(np.int64)
    prog = Program(1, np.full(m, 2, np.uint8), np.zeros(m), np.full(m, -1), np.zeros(m), np.zeros(m), ptr,
                   np.arange(1, m, dtype=np.int64), (Buffer("b", 8),), np.zeros(0), np.zeros(0), np.zeros(0),
                   np.ones(1), np.zeros(1), ("c",))  # valid; validate() walks it level by level, 10^6 passes
    w = TraceWriter(folder / "chain.trace", prog)
    w.append(np.arange(m // 2), np.zeros(m // 2), np.ones(m // 2))
    w._sink.close()  # the crash: no end marker
    size = os.path.getsize(folder / "chain.trace.partial")
    t = time.perf_counter()
    tr = read_trace(folder / "chain.trace.partial", salvage=True)
    dt = time.perf_counter() - t
    return (f"salvage of {m:,} chained ops cut after {m // 2:,} ({size / 1e6:.1f} MB): {dt:.2f} s, "
            f"{tr.n_ops} ops kept")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--family", default="trace,cli,toml,fr")
    ap.add_argument("--show", type=int, default=5, help="reproducers to print per kind")
    ap.add_argument("--memory", default="8GiB", help="address-space cap (RANKSCOPE_MEMORY too)")
    ap.add_argument("--salvage-ops", type=int, default=1_000_000, help="size of the salvage timing (0: skip)")
    a = ap.parse_args()
    os.environ.setdefault("RANKSCOPE_MEMORY", a.memory)
    from rankscope.simulator.units import parse_size

    cap = parse_size(os.environ["RANKSCOPE_MEMORY"]) * 2
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    fams = a.family.split(",")
    share = {"trace": 0.4, "cli": 0.3, "toml": 0.15, "fr": 0.15}
    total = sum(share[f] for f in fams)
    rng = random.Random(a.seed)
    outcomes: list[F.Outcome] = []
    biggest: list = [0, ""]  # the largest rise of the peak RSS in one case, and that case
    t0 = time.perf_counter()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # a bad --out value is a relative file name: it lands here, not in the checkout
        files = F.base_traces(tmp / "base")
        if a.salvage_ops:
            print(salvage_figure(a.salvage_ops, tmp), flush=True)
        for fam in fams:
            target = int(round(a.cases * share[fam] / total))
            done = 0
            while done < target:
                if fam == "trace":
                    base = files[rng.choice(list(files))]
                    path = tmp / "case.trace"
                    what = F.make_trace_case(rng, base, path)
                    calls = F.readers(path, files["ring"], tmp / "out")
                elif fam == "cli":
                    argv, call = F.make_cli_case(rng, files, tmp / "out")
                    what, calls = "", [(argv, call)]
                elif fam == "toml":
                    path = tmp / "case.toml"
                    what = F.make_toml_case(rng, path)
                    calls = F.toml_readers(path)
                else:
                    folder = tmp / "fr"
                    what = F.make_fr_case(rng, folder)
                    calls = F.fr_readers(folder, tmp / "fr.trace")
                for name, call in calls:
                    if done >= target:
                        break
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                    o = F.run_case(fam, f"{name}: {what}" if what else name, call, limit=F.TIME_LIMIT)
                    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
                    if rise > biggest[0]:
                        biggest[:] = [rise, o.what]
                    outcomes.append(o)
                    done += 1
        os.chdir(cwd)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = F.tally(outcomes)
    if biggest[0]:
        print(f"largest rise of the peak RSS in one case: {biggest[0] / 1024:.0f} MB ({biggest[1][:160]})")
    else:
        print("no case raised the peak RSS above what the set-up (base traces, salvage timing) reached")
    print(f"# rankscope fuzz: {len(outcomes)} cases, seed {a.seed}, {wall:.0f} s, peak RSS {peak_mb:.0f} MB "
          f"(address space capped at {cap / 2**30:.0f} GiB), limit {F.TIME_LIMIT:g} s per case")
    print(f"{'family':<8}{'cases':>8}{'ok':>8}{'error':>8}{'traceback':>11}{'over 10 s':>11}{'memory':>8}"
          f"{'slowest s':>11}")
    for fam, d in counts.items():
        slowest = max(o.seconds for o in outcomes if o.family == fam)
        print(f"{fam:<8}{d['cases']:>8}{d['ok']:>8}{d['error']:>8}{d['traceback']:>11}{d['slow']:>11}"
              f"{d['memory']:>8}{slowest:>11.2f}")
    bad = [o for o in outcomes if o.kind in ("traceback", "slow", "memory")]
    shown: dict[str, int] = {}
    for o in bad:
        key = o.family + o.kind + (o.detail.strip().splitlines()[-1] if o.detail.strip() else "")
        if shown.get(key, 0) >= 1 or sum(shown.values()) >= a.show * 4:
            continue
        shown[key] = shown.get(key, 0) + 1
        print(f"\n[{o.family} {o.kind} {o.seconds:.1f} s] {o.what}\n{o.detail.strip()[-1500:]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
