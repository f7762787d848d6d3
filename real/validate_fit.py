"""The fits and the calibrated topology of ``rankscope validate``; no torch here.

See [Note: the model and its calibration] in real/validate.py: a ring step costs
α + n/bw (+ γ·n when it reduces); :func:`relative_fit` finds α and bw from measured step times,
:func:`loaded_topology` turns the figures into a topology the simulator loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rankscope.simulator.topology import Topology

from .calibrate import fit


@dataclass(frozen=True)
class RingStepFit:
    nranks: int
    alpha: float                    # s per message
    bw: float                       # B/s per flow with every rank busy
    gamma: float                    # s per reduced byte
    sizes: tuple[int, ...]
    step_seconds: tuple[float, ...]  # median over ranks, adds excluded
    residuals: tuple[float, ...]


def relative_fit(sizes: Sequence[int], times: Sequence[float]) -> tuple[float, float, np.ndarray]:
    """α, bw and residuals of t = α + n / bw fitted by least squares on *relative* residuals (weights
    1/t): validation judges relative error, and the sizes span three decades, so a plain fit would
    be all large sizes (and α whatever noise leaves). Falls back to :func:`real.calibrate.fit` rules
    (α >= 0, bw > 0)."""
    n, t = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
    beta, alpha = np.polyfit(n, t, 1, w=1.0 / t)
    if alpha < 0 or not beta > 0:
        return fit(sizes, times)
    return float(alpha), 1.0 / float(beta), t - (alpha + beta * n)


def loaded_topology(f: RingStepFit, alpha: float, meta: dict[str, Any]) -> Topology:
    """A full mesh whose every link has the ring-step figures (every pair can be simulated; on a
    ring only successor links carry traffic)."""
    n = f.nranks
    links = [[i, j, f.bw, alpha] for i in range(n) for j in range(n) if i != j]
    return Topology.from_dict({"name": f"ring-step-calibrated:{n}", "nranks": n, "ring": list(range(n)),
                               "links": links, "meta": meta})
