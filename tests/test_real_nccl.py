"""The NCCL path: the same programs, one GPU per rank, CUDA-event timestamps.

It differs from gloo only in device (cuda:LOCAL_RANK), backend (``cpu:gloo,cuda:nccl``: CPU
tensors such as the clock ping-pong and the timestamp gather still use gloo), batching (a wave is
one ``batch_isend_irecv``), waits (no timeout on CUDA) and clock (``cuda-events``). Ranks are
spawned (CUDA does not survive fork), so N <= the GPUs present. With one GPU only N = 1 could
run, whose programs have no transfers at all: nothing would be tested, so the test needs two.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = pytest.mark.skipif(GPUS < 2, reason=f"needs >= 2 CUDA GPUs (one rank each, so that transfers "
                                                 f"happen); this machine has {GPUS}")

from rankscope.real.encoding import Encoding, aligned_program  # noqa: E402
from rankscope.real.runner import run_programs  # noqa: E402
from rankscope.simulator.program import OpKind  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402

SPECS = [("all-reduce", "ring"), ("reduce-scatter", "ring"), ("all-gather", "ring"), ("broadcast", "ring"),
         ("broadcast", "tree"), ("all-reduce", "hd"), ("all-reduce", "ps")]


def test_nccl_runs_every_builder_like_gloo(tmp_path):
    n = min(GPUS, 4)
    enc = Encoding(n)
    progs = [aligned_program(c, a, n, 1 << 16, enc.elem_bytes) for c, a in SPECS]
    outs = [str(tmp_path / f"{i}.trace") for i in range(len(progs))]
    summaries = run_programs(progs, outs, nranks=n, backend="nccl", timeout=60, check_steps=True)
    assert len(summaries) == len(progs)
    for (coll, algo), s in zip(SPECS, summaries):
        assert (s["collective"], s["algo"]) == (coll, algo)
        assert s["executor"] == "nccl" and s["clock"] == "cuda-events"
        assert s["mismatch"] is None and s["provenance"] == "equal"
        assert s["native"] == "equal", (coll, algo, s)          # the result against dist.all_reduce & co.
        assert 0 < s["seconds"] < 10
    for prog, path in zip(progs, outs):
        tr = read_trace(path)
        transfers = (prog.kind == OpKind.REDUCE) | (prog.kind == OpKind.COPY)
        assert transfers.sum() > 0 and tr.n_ops == prog.n_ops
        assert tr.meta["executor"] == "nccl" and tr.meta["clock"] == "cuda-events"
        assert tr.ran.all() and tr.meta["complete"] is True
        dur = tr.end - tr.start
        assert (dur >= 0).all() and (dur < 10).all()            # end >= start, plausible durations
        assert np.nanmin(tr.start) == 0.0
