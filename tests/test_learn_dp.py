"""The data-parallel lesson's claim, on real gloo ranks: N ranks with batch b/N and summed
gradients end with the weights of one process with batch b (to float32 rounding); without the sum
they do not."""

import pytest

pytest.importorskip("torch")

from rankscope.real.dp_equivalence import TOLERANCE, DPConfig, run  # noqa: E402


def test_n_ranks_with_summed_gradients_equal_one_device():
    res = run(DPConfig(nranks=4, batch=32, steps=5))
    assert res["equal"] and res["ranks_agree"]
    assert res["max_abs_diff"] <= TOLERANCE < res["max_update"] / 100  # training moved the weights far more


def test_without_the_all_reduce_the_ranks_drift_apart():
    res = run(DPConfig(nranks=2, batch=32, steps=5, all_reduce=False))
    assert not res["equal"] and not res["ranks_agree"] and res["max_abs_diff"] > 100 * TOLERANCE
