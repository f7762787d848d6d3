"""Fuzz: mutated TOML topologies and flight-recorder dumps (JSON, pickle, flipped bytes, huge
ranks in file names, pickles that reuse one list). Fixed seed, small budget."""

from __future__ import annotations

import random

import fuzzing as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_the_base_topology_and_dumps_load(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(F.TOML_BASE)
    assert all(F.run_case("toml", w, c).kind == "ok" for w, c in F.toml_readers(path))
    folder = tmp_path / "fr"
    folder.mkdir()
    import json
    for r, d in enumerate(F.fr_base()):
        (folder / f"rank{r}").write_text(json.dumps(d))
    assert all(F.run_case("fr", w, c).kind == "ok" for w, c in F.fr_readers(folder, tmp_path / "o.trace"))


@FAST
@given(rng=st.randoms(use_true_random=False))
def test_mutated_topologies_load_or_fail_in_one_line(tmp_path_factory, rng: random.Random):
    path = tmp_path_factory.mktemp("toml") / "t.toml"
    what = F.make_toml_case(rng, path)
    for name, call in F.toml_readers(path):
        o = F.run_case("toml", f"{name}: {what}", call)
        assert o.kind in ("ok", "error"), f"[{o.kind}] {o.what}\n{o.detail}"


@FAST
@given(rng=st.randoms(use_true_random=False))
def test_mutated_dumps_import_or_fail_in_one_line(tmp_path_factory, rng: random.Random):
    tmp = tmp_path_factory.mktemp("fr")
    what = F.make_fr_case(rng, tmp / "fr")
    for name, call in F.fr_readers(tmp / "fr", tmp / "o.trace"):
        o = F.run_case("fr", f"{name}: {what}", call)
        assert o.kind in ("ok", "error"), f"[{o.kind}] {o.what}\n{o.detail}"
