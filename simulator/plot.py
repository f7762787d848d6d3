"""PNG plots for ``compare`` and ``validate`` (matplotlib, an optional dependency: ``.[plot]``)."""

from __future__ import annotations

from typing import Sequence

from .errors import UsageError


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'rankscope[plot]'") from None
    return plt


def check_plot_path(path: str) -> None:
    """A file name matplotlib can write (.png, .svg, .pdf, ...), in a folder that exists: checked
    before any work, so a long run does not end in a traceback about its plot."""
    import os

    from .errors import check_output

    check_output(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    plt = _plt()
    formats = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    if ext not in formats:
        raise UsageError(f"cannot write a plot as {path!r}: give a file name ending in one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")


def plot_steps(cmp, path: str) -> None:
    """Per-step durations, model against measured, as grouped bars (one run)."""
    plt = _plt()
    steps = cmp.by_step()
    x = [s["step"] for s in steps]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    w = 0.4
    ax.bar([i - w / 2 for i in x], [s["model"] * 1e6 for s in steps], w, label=f"model ({cmp.model_name})")
    ax.bar([i + w / 2 for i in x], [s["measured"] * 1e6 for s in steps], w,
           label=f"measured ({cmp.measured_name})")
    ax.set_xlabel("step")
    ax.set_ylabel("time the step adds (us)")
    s = cmp.summary()
    med = s["median_abs_error"]
    ax.set_title(f"per step: total error {s['total_error']:+.1%}" +
                 (f", median |op error| {med:.1%}" if med is not None else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(rows: Sequence[dict], path: str, title: str) -> None:
    """Time against size, model and measured per series, log-log, as nccl-tests users read it.
    ``rows``: dicts with series, size, model, measured (seconds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for series in sorted({r["series"] for r in rows}):
        rs = sorted((r for r in rows if r["series"] == series), key=lambda r: r["size"])
        line, = ax.plot([r["size"] for r in rs], [r["measured"] * 1e6 for r in rs], "o-",
                        label=f"{series} measured")
        ax.plot([r["size"] for r in rs], [r["model"] * 1e6 for r in rs], "--", color=line.get_color(),
                label=f"{series} simulated")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("size (bytes)")
    ax.set_ylabel("time (us)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
