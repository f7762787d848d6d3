"""The report of ``rankscope validate``: the printed table and the plot of measured against
simulated time. No torch here."""

from __future__ import annotations

from typing import Any

import numpy as np

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.units import format_bytes, format_seconds


def plot(rows: list[dict[str, Any]], path: str) -> str | None:
    """Draw the rows' measured and simulated times against size into ``path``; the error's text
    when matplotlib is missing (the table still stands), else None."""
    try:
        from rankscope.simulator.plot import plot_sweep

        plot_sweep(rows, path, "ring all-reduce on this machine: measured vs simulated (ring-step calibrated)")
    except RankscopeError as e:
        return str(e)
    return None


def format_report(r: dict[str, Any]) -> str:
    lines = [f"rankscope validate: ring all-reduce, measured (median of {r['repeats']} runs; fastest beside it) "
             f"vs simulated on the ring-step calibrated topology; {r['cores']} cores"]
    for n, c in r["calibration"].items():
        pp = f"; ping-pong bw {np.median([p['bw'] for p in c['pingpong']]) / 1e9:.2f} GB/s" if c["pingpong"] else ""
        lines.append(f"  N={n}: per-step α {c['alpha'] * 1e6:.1f} us, ring-step bw {c['bw'] / 1e9:.2f} GB/s per flow, "
                     f"γ {c['gamma'] * 1e9:.3f} ns/B{pp}")
    lines.append(f"  {'N':>2} {'size':>9} {'measured':>10} {'(fastest)':>10} {'simulated':>10} {'error':>8} "
                 f"{'ping-pong sim':>14} {'error':>8}")
    for row in r["rows"]:
        lines.append(f"  {row['nranks']:>2} {format_bytes(row['requested']):>9} {format_seconds(row['measured']):>10} "
                     f"{format_seconds(row['measured_fastest']):>10} "
                     f"{format_seconds(row['model']):>10} {row['error']:>+8.1%} "
                     f"{format_seconds(row['pingpong_model']):>14} {row['pingpong_error']:>+8.1%}")
    for n, s in r["summary"].items():
        if s["median_abs_error"] is not None:
            lines.append(f"  N={n}: median |error| for sizes >= 1 MiB: {s['median_abs_error']:.1%} "
                         f"(ping-pong calibration: {s['pingpong_median_abs_error']:.1%}); the runs themselves "
                         f"lie a median {s['measurement_spread']:.1%} from their median")
    if r["median_abs_error_from_1MiB"] is not None:
        lines.append(f"median |error|, sizes >= 1 MiB, all N: {r['median_abs_error_from_1MiB']:.1%} (target <= 15%)")
    f = r.get("fsdp")
    if f:
        lines.append(f"FSDP step of {f['model']} on {f['nranks']} ranks: measured {format_seconds(f['measured_step'])}, "
                     f"simulated {format_seconds(f['simulated_step'])} ({f['error']:+.1%}; compute at "
                     f"{f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s measured); collectives "
                     f"{'match' if f['collectives_match'] else 'DIFFER'}")
        for c in f.get("collective_classes", []):
            lines.append(f"  {c['class']:<15} x{c['ops']:<3} simulated {format_seconds(c['model']):>9}  measured "
                         f"{format_seconds(c['measured']):>9}  {c['error']:+.1%}  (last step, both ranks)")
    lines.append(f"traces, topologies and validate.json in {r['out_dir']}" +
                 (f"; plot {r['plot']}" if r.get("plot") else ""))
    return "\n".join(lines)
