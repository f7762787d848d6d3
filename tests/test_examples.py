"""The shipped example traces load, and still equal what the simulator produces today."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rankscope.simulator.provenance import check_promise, layout
from rankscope.simulator.trace import program_equal, read_trace

TRACES = Path(__file__).resolve().parents[1] / "traces"
spec = importlib.util.spec_from_file_location("make_examples", TRACES / "make_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_shipped_trace_is_current(name):
    shipped = read_trace(TRACES / name)
    fresh = examples.make(name)
    assert program_equal(shipped.program, fresh.program)
    for col in ("start", "end", "lane", "link_id", "link_t0", "link_t1", "link_bytes"):
        assert np.array_equal(getattr(shipped, col), getattr(fresh, col)), col
    assert shipped.meta["topology"] == fresh.meta["topology"]
    if shipped.program.meta.get("collective"):  # a training step promises no collective's result
        check_promise(shipped.program, layout(shipped.program))


@pytest.mark.parametrize("name", sorted(examples.MEASURED))
def test_shipped_measured_trace_joins_its_simulated_twin(name):
    from rankscope.simulator.compare import compare

    measured = read_trace(TRACES / name)
    twin = read_trace(TRACES / name.replace("_gloo", ""))
    assert measured.meta["executor"] == "gloo" and measured.meta["complete"] and measured.ran.all()
    assert measured.meta["real"]["provenance"] == "equal" and measured.meta["real"]["native"] == "equal"
    c = compare(twin, measured)
    assert c.joined_on == "op id" and c.op_measured.size == twin.program.n_ops
