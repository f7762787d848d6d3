"""The NCCL path: the same programs, one GPU per rank, CUDA-event timestamps.

It differs from gloo only in device (cuda:LOCAL_RANK), backend (``cpu:gloo,cuda:nccl``: CPU
tensors such as the clock ping-pong and the timestamp gather still use gloo), batching (a wave is
one ``batch_isend_irecv``) and clock (``cuda-events``). Ranks are spawned (CUDA does not survive
fork), so N <= the GPUs present; with one GPU only N = 1 runs, whose programs have no transfers.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA is not available: the NCCL backend needs GPUs")

from rankscope.real.encoding import Encoding, aligned_program  # noqa: E402
from rankscope.real.runner import run_programs  # noqa: E402
from rankscope.simulator.trace import read_trace  # noqa: E402


def test_nccl_runs_every_builder_like_gloo(tmp_path):
    n = min(torch.cuda.device_count(), 4)
    enc = Encoding(n)
    specs = [("all-reduce", "ring"), ("reduce-scatter", "ring"), ("all-gather", "ring"),
             ("broadcast", "ring"), ("broadcast", "tree"), ("all-reduce", "hd"), ("all-reduce", "ps")]
    progs = [aligned_program(c, a, n, 1 << 16, enc.elem_bytes) for c, a in specs]
    outs = [str(tmp_path / f"{i}.trace") for i in range(len(progs))]
    for s in run_programs(progs, outs, nranks=n, backend="nccl", timeout=60, check_steps=True):
        assert s["mismatch"] is None and s["native"] == "equal" and s["provenance"] == "equal"
    for prog, path in zip(progs, outs):
        tr = read_trace(path)
        assert tr.meta["executor"] == "nccl" and tr.meta["clock"] == "cuda-events"
        assert tr.n_ops == prog.n_ops and tr.ran.all()
