"""Fuzz: bad values for every option of every verb (the options read from the parser); the real
verbs are parsed only, never launched. Fixed seed, small budget; benchmarks/fuzz.py runs more."""

from __future__ import annotations

import random

import fuzzing as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return F.base_traces(tmp_path_factory.mktemp("base"))


def test_every_verb_has_options_to_fuzz():
    for base in list(F.BASE_ARGV.values()) + F.parse_only_verbs():
        assert F.options(base), base
    assert "--max-ops" not in F.options(F.BASE_ARGV["sim"])  # budgets are environment variables
    assert {"--size", "--ranks", "--gamma", "--out", "--pieces"} <= set(F.options(F.BASE_ARGV["sim"]))


@FAST
@given(rng=st.randoms(use_true_random=False))
def test_bad_cli_values_are_one_line_and_exit_2(files, tmp_path_factory, monkeypatch, rng: random.Random):
    tmp = tmp_path_factory.mktemp("cli")
    monkeypatch.chdir(tmp)  # a bad --out is a relative name: keep it out of the checkout
    argv, call = F.make_cli_case(rng, files, tmp / "out")
    o = F.run_case("cli", argv, call)
    assert o.kind in ("ok", "error"), f"[{o.kind}] {argv}\n{o.detail}"
