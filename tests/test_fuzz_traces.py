"""Fuzz: schema-valid trace files with adversarial content through every reader (info, export
chrome/kineto/chakra, compare, headless replay). A fixed seed and a small budget here;
benchmarks/fuzz.py runs the same cases by the thousand (README, "Reliability")."""

from __future__ import annotations

import random

import fuzzing as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return F.base_traces(tmp_path_factory.mktemp("base"))


def _clean(outcomes):
    bad = [o for o in outcomes if o.kind not in ("ok", "error")]
    assert not bad, "\n\n".join(f"[{o.kind}] {o.what}\n{o.detail}" for o in bad)


def test_the_base_traces_read_in_every_reader(files, tmp_path):
    for name, path in files.items():
        _clean([F.run_case("trace", f"{name} {r}", call) for r, call in F.readers(path, files["ring"], tmp_path / name)])
        assert all(F.run_case("trace", r, call).kind == "ok"
                   for r, call in F.readers(path, files["ring"], tmp_path / name) if r != "compare")


@FAST
@given(rng=st.randoms(use_true_random=False), base=st.sampled_from(["ring", "train", "fr"]))
def test_mutated_traces_are_read_or_refused_in_one_line(files, tmp_path_factory, rng: random.Random, base):
    tmp = tmp_path_factory.mktemp("case")
    path = tmp / "case.trace"
    what = F.make_trace_case(rng, files[base], path)
    _clean([F.run_case("trace", f"{r}: {what}", call) for r, call in F.readers(path, files["ring"], tmp / "out")])
