"""Adversarial inputs for rankscope's readers and command line, shared by tests/test_fuzz_*.py
(hypothesis, a small fixed-seed budget) and benchmarks/fuzz.py (>= 10,000 cases with counts).

Every case is a function of a ``random.Random``: hypothesis drives it through ``st.randoms()``
(shrinkable, reproducible with a seed), the benchmark through ``random.Random(seed)``. A case
*passes* when rankscope either works or raises a
:class:`~rankscope.simulator.errors.RankscopeError` (one line, exit 2); anything else is a
traceback. :func:`run_case` also times the case and, where the caller armed it, stops it after
:data:`TIME_LIMIT` seconds.

Four families:

- ``trace``: schema-valid trace files (the Arrow layout is right) with adversarial *content*: a
  header field or an end-marker field set to a wrong type, a huge count, NaN/inf, or removed; a
  column's values set to extremes; dependency cycles and dangling references; files cut short.
  Each goes through every reader: ``info``, ``export`` (chrome, kineto, chakra), ``compare``, and a
  headless replay (the TUI's :class:`~rankscope.tui.replay.Replay` cursor, no screen).
- ``cli``: every option of every verb (read from the parser itself) given a bad value; the
  ``real`` verbs are only parsed, never launched.
- ``toml``: a valid topology file with one value replaced, a line dropped or a link duplicated.
- ``fr``: flight-recorder dumps (JSON and pickle) with a field replaced or removed, a huge rank
  in the file name, a pickle that reuses one list many times ("billion laughs").
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pickle
import random
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from rankscope.simulator.errors import RankscopeError

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
TIME_LIMIT = 10.0

# -- adversarial values --------------------------------------------------------------------------
JSON_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 5, 300, 2**31, 2**31 - 1, 2**32, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
    2**70, 10**9, 10**11, -(2**63), 1e9, 4e8, 1e11, 1.0, 0.5, -0.0, 1e300, -1e300, math.nan, math.inf, -math.inf,
    "", "72", "1", "x", "ring:4", [], [0], [1, 2, 3], [None], [[[]]], [math.nan], [2**70], {}, {"a": 1},
    {"nranks": 2**64}, {"name": 5},
]
INT_EXTREMES = [-(2**31), -2, -1, 0, 1, 2, 3, 255, 300, 2**31 - 1, 10**9]
INT64_EXTREMES = [-(2**63), -1, 0, 1, 2**31, 2**53, 2**62, 2**63 - 1]
FLOAT_EXTREMES = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e12, 1e13, 1e300, -1e300]
CLI_VALUES = [
    "", "-", "0", "-1", "1", "2", "nan", "inf", "-inf", "1e400", "1e19", "1e30", "1e-9", "1e300", "1e308",
    "99999999999999999999", "2147483648", "65536", "65537", "30000", "1000000", "abc", "4KiB", "1e6", "0.5",
    "-0", "1,2", ",", "ring", "switch:0", "switch:99999999", "nodes:1000x1000", "nodes:0x4", "dgx-h100",
    "mlp:0x4", "mlp:1000000x1", "params:1e30", "params:1e9x99999999", "gpt2", "h100", "nan%", "1" * 5000,
    "\x00", "é", "1e19B", "-5KiB", "64MiB", "5 us", "0 GB/s", "1e-30 GB/s",
]


@dataclass
class Outcome:
    """What one case did: "ok" (it worked), "error" (a RankscopeError: one line), "traceback"
    (anything else), "slow" (over the time limit)."""

    family: str
    kind: str
    seconds: float
    what: str = ""
    detail: str = ""


class CaseTimeout(BaseException):
    """Raised by the alarm when a case runs past :data:`TIME_LIMIT` (a BaseException, so that no
    ``except Exception`` in the code under test swallows it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Any:
    if not seconds:
        yield
        return
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_case(family: str, what: str, fn: Callable[[], Any], limit: float | None = None) -> Outcome:
    """Run ``fn`` and classify it (see :class:`Outcome`)."""
    t = time.perf_counter()
    try:
        with time_limit(limit):
            fn()
        kind, detail = "ok", ""
    except RankscopeError as e:
        msg = str(e)
        kind, detail = ("error", msg) if "\n" not in msg else ("traceback", f"multi-line error: {msg!r}")
    except CaseTimeout:
        kind, detail = "slow", ""
    except MemoryError:
        kind, detail = "memory", traceback.format_exc(limit=-3)
    except Exception:
        kind, detail = "traceback", traceback.format_exc(limit=-4)
    dt = time.perf_counter() - t
    if kind != "slow" and dt > TIME_LIMIT:
        kind = "slow"
    return Outcome(family, kind, dt, what, detail)


# -- the command line, in process ----------------------------------------------------------------
def cli(argv: list[str]) -> tuple[int, str, str]:
    """``rankscope argv`` in this process: (exit code, stdout, stderr). A traceback propagates;
    an exit code 2 must come with exactly one line on stderr."""
    from rankscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's --help
            rc = int(e.code or 0)
    if rc == 2 and err.getvalue().count("\n") != 1:
        raise AssertionError(f"exit 2 without exactly one line on stderr: {err.getvalue()!r}")
    if rc == 2:
        raise _CliError(err.getvalue().strip())
    return rc, out.getvalue(), err.getvalue()


class _CliError(RankscopeError):
    """Exit 2 with one line on stderr: the CLI's clean refusal, as an error for :func:`run_case`."""


# -- trace files with adversarial content ---------------------------------------------------------
def base_traces(folder: Path) -> dict[str, Path]:
    """Three good traces to mutate: a simulated ring all-reduce (links, topology), a simulated
    ZeRO-3 step (compute, alloc/free, collective ops) and an imported flight-recorder run
    (other_collectives, steps, ranks in meta)."""
    from rankscope.simulator.collectives import build
    from rankscope.simulator.engine import simulate
    from rankscope.simulator.interop.flight_recorder import import_flight_recorder
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.topology import parse_topology
    from rankscope.simulator.trace import write_trace
    from rankscope.simulator.training import TrainConfig, compile_step

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    prog = build("all-reduce", "ring", 4, 4096)
    topo = parse_topology("switch:4")
    write_trace(folder / "ring.trace", simulate(prog, topo).to_trace(prog, topo))
    out["ring"] = folder / "ring.trace"
    step = compile_step(parse_model("mlp:2x64", 4), 2, TrainConfig(strategy="zero3"), parse_device("h100", None))
    topo2 = parse_topology("switch:2")
    write_trace(folder / "train.trace", simulate(step, topo2).to_trace(step, topo2))
    out["train"] = folder / "train.trace"
    write_trace(folder / "fr.trace", import_flight_recorder([str(FIXTURES / "nccl_fr")]))
    out["fr"] = folder / "fr.trace"
    return out


def _paths(obj: Any, prefix: tuple = (), depth: int = 0) -> list[tuple]:
    """Every path into a JSON document (dict keys and list indices), lists sampled to 8 items."""
    out = [prefix]
    if depth > 6:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,), depth + 1)
    elif isinstance(obj, list):
        for i in list(range(min(len(obj), 4))) + ([len(obj) - 1] if len(obj) > 4 else []):
            out += _paths(obj[i], prefix + (i,), depth + 1)
    return out


def _set(doc: Any, path: tuple, value: Any, delete: bool = False) -> None:
    for k in path[:-1]:
        doc = doc[k]
    if delete and isinstance(doc, dict):
        doc.pop(path[-1], None)
    elif delete and isinstance(doc, list) and doc:
        doc.pop(path[-1])
    else:
        doc[path[-1]] = value


def mutate_json(rng: random.Random, doc: Any) -> tuple[Any, str]:
    """A deep copy of ``doc`` with one value replaced by an adversarial one (or removed, or a
    list made long); and a description."""
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    path = rng.choice(paths)
    r = rng.random()
    if r < 0.12:
        _set(doc, path, None, delete=True)
        return doc, f"del {path}"
    if r < 0.2:
        cur = doc
        for k in path:
            cur = cur[k]
        if isinstance(cur, list) and cur:
            _set(doc, path, cur * rng.choice([2, 100, 1000]))
            return doc, f"repeat {path}"
    v = rng.choice(JSON_VALUES)
    _set(doc, path, copy.deepcopy(v))
    return doc, f"{path} = {v!r}"[:200]


def read_raw(path: Path) -> tuple[pa.Table, dict, dict]:
    reader = ipc.open_stream(str(path))
    schema = reader.schema
    batches, end = [], {}
    while True:
        try:
            b, custom = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        if custom is not None and b"rankscope-end" in custom:
            end = json.loads(custom[b"rankscope-end"])
            break
        batches.append(b)
    table = pa.Table.from_batches(batches, schema=schema)
    return table, json.loads(schema.metadata[b"rankscope"]), end


def write_raw(dst: Path, table: pa.Table, header: Any, end: Any | None) -> None:
    schema = table.schema.with_metadata({b"rankscope": json.dumps(header).encode()})
    with pa.OSFile(str(dst), "wb") as sink:
        w = ipc.new_stream(sink, schema)
        for b in table.to_batches():
            w.write_batch(b)
        if end is not None:
            w.write_batch(pa.RecordBatch.from_pylist([], schema=schema),
                          custom_metadata={b"rankscope-end": json.dumps(end).encode()})
        w.close()


_INT_COLS = {"op": INT64_EXTREMES, "kind": [0, 1, 2, 3, 4, 5, 6, 200, 254, 255], "rank": INT_EXTREMES,
             "peer": INT_EXTREMES, "step": INT_EXTREMES, "chunk": INT_EXTREMES, "buffer": INT_EXTREMES,
             "offset": INT64_EXTREMES, "nbytes": INT64_EXTREMES, "compute": INT_EXTREMES, "lane": INT_EXTREMES,
             "link": INT_EXTREMES}


def mutate_table(rng: random.Random, table: pa.Table) -> tuple[pa.Table, str]:
    """One column's value at a few rows set to an extreme; or the deps made cyclic or dangling."""
    n = table.num_rows
    if n == 0:
        return table, "empty"
    names = table.schema.names
    col = rng.choice(names)
    rows = sorted({rng.randrange(n) for _ in range(rng.choice([1, 1, 2, 5]))})
    i = names.index(col)
    if col == "deps":
        deps = table.column("deps").to_pylist()
        how = rng.choice(["cycle", "dangling", "self", "huge"])
        for r in rows:
            deps[r] = {"cycle": [n - 1], "dangling": [10**12], "self": [int(table.column("op")[r].as_py())],
                       "huge": list(range(min(n, 50)))}[how]
        arr = pa.array(deps, type=pa.list_(pa.int64()))
        return table.set_column(i, table.schema.field(i), arr), f"deps {how} at {rows}"
    vals = table.column(col).to_numpy(zero_copy_only=False).copy()
    if col in ("start", "end"):
        v = rng.choice(FLOAT_EXTREMES)
    else:
        v = rng.choice(_INT_COLS[col])
        info = np.iinfo(vals.dtype)
        v = min(max(v, info.min), info.max)
    vals[rows] = v
    arr = pa.array(vals, type=table.schema.field(i).type)
    return table.set_column(i, table.schema.field(i), arr), f"{col}[{rows}] = {v!r}"


def make_trace_case(rng: random.Random, base: Path, dst: Path) -> str:
    """Write a mutated copy of ``base`` to ``dst``; returns what was changed."""
    table, header, end = read_raw(base)
    r = rng.random()
    what = []
    if r < 0.45:
        header, w = mutate_json(rng, header)
        what.append(f"header {w}")
    elif r < 0.8:
        table, w = mutate_table(rng, table)
        what.append(w)
    elif r < 0.9:
        end, w = mutate_json(rng, end) if end else (end, "no end")
        what.append(f"end {w}")
    else:
        k = rng.randrange(table.num_rows + 1)
        table = table.slice(0, k)
        end = None
        what.append(f"cut at row {k}")
    if rng.random() < 0.15:  # two faults at once
        header, w = mutate_json(rng, header)
        what.append(f"header {w}")
    write_raw(dst, table, header, end)
    return "; ".join(what)


def readers(path: Path, good: Path, out: Path, replay: bool = True) -> list[tuple[str, Callable[[], Any]]]:
    """Every reader of a trace file, each as a (name, call) to run as its own case."""
    p, o = str(path), str(out)

    def do_replay(salvage: bool) -> None:
        from rankscope.simulator.trace import read_trace
        from rankscope.tui.replay import Replay

        tr = read_trace(p, salvage=salvage)
        rp = Replay(tr)
        rp.seek_step(rp.n_steps - 1)
        rp.back(2)
        rp.forward(1)
        rp.seek_time((rp.t0 + rp.t_end) / 2)
        rp.links(), rp.algbw(), rp.busbw(), rp.phase(), rp.window(), rp.transfers(), rp.comm_ops()
        _ = (rp.moved, rp.elapsed)
        if rp.program.n_ops:
            rp.seek_op(rp.program.n_ops - 1)
            rp.last_writer(0, 0) if rp.nsegments else None
            rp.next_op(0)

    out_list = [
        ("info", lambda: cli(["info", p, "--json"])),
        ("info --salvage", lambda: cli(["info", p, "--salvage"])),
        ("export chrome", lambda: cli(["export", p, "-f", "chrome", "-o", o + ".json"])),
        ("export kineto", lambda: cli(["export", p, "-f", "kineto", "-o", o + ".kineto", "--salvage"])),
        ("export chakra", lambda: cli(["export", p, "-f", "chakra", "-o", o + ".chakra"])),
        ("compare", lambda: cli(["compare", str(good), p, "--json"])),
    ]
    if replay:
        out_list += [("replay", lambda: do_replay(False)), ("replay --salvage", lambda: do_replay(True))]
    return out_list


# -- the command line: every option of every verb -------------------------------------------------
BASE_ARGV = {
    "sim": ["sim", "all-reduce", "--ranks", "4", "--size", "4KiB"],
    "sim train": ["sim", "train", "--ranks", "2", "--model", "mlp:2x64"],
    "sweep": ["sweep", "--ranks", "4", "--min", "1KiB", "--max", "4KiB"],
    "info": ["info", "{ring}"],
    "compare": ["compare", "{ring}", "{ring}"],
    "export": ["export", "{ring}", "-o", "{out}.json"],
    "import kineto": ["import", "kineto", str(FIXTURES / "nccl_kineto"), "-o", "{out}.trace"],
    "import flight-recorder": ["import", "flight-recorder", str(FIXTURES / "nccl_fr"), "-o", "{out}.trace"],
    "import nccl-tests": ["import", "nccl-tests", str(FIXTURES / "nccl" / "all_reduce_1x8.txt"), "-o", "{out}.t"],
    "import nccl-log": ["import", "nccl-log", str(FIXTURES / "nccl" / "nccl_2x4.log"), "-o", "{out}.toml"],
}
PARSE_ONLY = ("real", "calibrate", "validate", "demo", "replay")


def options(verb_argv: list[str]) -> list[str]:
    """The option strings of the leaf parser ``verb_argv`` selects (read from the parser)."""
    import argparse

    from rankscope.cli import make_parser

    p = make_parser(verb_argv[0])
    words = list(verb_argv)
    while words:
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or words[0] not in sub.choices:
            words.pop(0)
            continue
        p = sub.choices[words.pop(0)]
    return [max(a.option_strings, key=len) for a in p._actions
            if a.option_strings and "--help" not in a.option_strings]


def parse_only_verbs() -> list[list[str]]:
    """``real COLLECTIVE``, ``real sweep``, ``real train``, ``calibrate``, ``validate``, ``replay``,
    ``demo``: parsed, never run."""
    return [["real", "all-reduce"], ["real", "broadcast"], ["real", "sweep"], ["real", "train"],
            ["calibrate"], ["validate"], ["replay", "x.trace"], ["demo"]]


def make_cli_case(rng: random.Random, files: dict[str, Path], out: Path) -> tuple[str, Callable[[], Any]]:
    """One verb, one option with a bad value (sometimes two), as a case."""
    parse = rng.random() < 0.25
    if parse:
        base = rng.choice(parse_only_verbs())
    else:
        base = BASE_ARGV[rng.choice(list(BASE_ARGV))]
    opts = options(base)
    argv = [a.format(ring=files["ring"], out=out) for a in base]
    for _ in range(rng.choice([1, 1, 1, 2])):
        opt = rng.choice(opts)
        argv += [opt, rng.choice(CLI_VALUES)]
    if rng.random() < 0.1:  # a bad positional instead
        argv[1 if len(argv) > 1 else 0] = rng.choice(CLI_VALUES)
    if parse:
        def call() -> None:
            from rankscope.cli import make_parser

            with contextlib.suppress(SystemExit):  # --help and the like
                make_parser(argv[0]).parse_args(argv)
        return " ".join(argv)[:300], call
    return " ".join(argv)[:300], lambda: cli(argv)


# -- topology files -------------------------------------------------------------------------------
TOML_BASE = """name = "fuzz"
ranks = 4
ring = [0, 1, 2, 3]

[[link]]
src = 0
dst = "sw"
bw = "25 GB/s"
lat = "5 us"
bidirectional = true

[[link]]
src = 1
dst = "sw"
bw = 25e9
lat = 5e-6
bidirectional = true

[[link]]
src = 2
dst = "sw"
bw = "200 Gb/s"
lat = 0.000005
bidirectional = true

[[link]]
src = 3
dst = "sw"
bw = "25 GB/s"
lat = "5 us"
bidirectional = true
"""
TOML_VALUES = ["0", "-1", "1e300", "-1e300", "nan", "inf", "-inf", '"abc"', '"0 GB/s"', '"-5 us"', '"1e400 GB/s"',
               "[1, 2]", "{a = 1}", "true", "9999999999999999999", "1000000000", "2", "4", "0.5", '""', '"sw"',
               "[" * 600 + "]" * 600, '"5 parsecs"', "1e-300", '"1e-300 us"', "65537", "[3, 2, 1, 0]",
               "[0, 0, 1, 2]", "[0, 1, 2]", "[]"]


def make_toml_case(rng: random.Random, path: Path) -> str:
    lines = TOML_BASE.splitlines()
    what = []
    for _ in range(rng.choice([1, 1, 2])):
        r = rng.random()
        keyed = [i for i, line in enumerate(lines) if " = " in line]
        if r < 0.7:
            i = rng.choice(keyed)
            key = lines[i].split(" = ")[0]
            v = rng.choice(TOML_VALUES)
            lines[i] = f"{key} = {v}"
            what.append(f"line {i}: {key} = {v[:30]}")
        elif r < 0.85:
            i = rng.choice(keyed)
            what.append(f"drop {lines[i]}")
            lines.pop(i)
        else:
            block = TOML_BASE.split("\n\n")[1]
            src = rng.choice(["0", "1", '"sw"', "7"])
            lines += ["", block.replace("src = 0", "src = " + src)]
            what.append("duplicate a link")
    path.write_text("\n".join(lines) + "\n")
    return "; ".join(what)


def toml_readers(path: Path) -> list[tuple[str, Callable[[], Any]]]:
    from rankscope.simulator.topology import parse_topology

    p = str(path)
    return [("parse", lambda: parse_topology(p)), ("parse nranks=4", lambda: parse_topology(p, 4)),
            ("sim -t FILE", lambda: cli(["sim", "all-reduce", "--size", "4KiB", "-t", p]))]


# -- flight-recorder dumps ------------------------------------------------------------------------
def fr_base() -> list[dict]:
    return [json.loads((FIXTURES / "nccl_fr" / f"rank{r}.json").read_text()) for r in (0, 1)]


def laughs(depth: int) -> bytes:
    """A pickle of ``depth`` nested lists, each holding the one below twice: 2^depth leaves in a
    few bytes per level (memo GET reuses the list)."""
    inner: list = [0]
    for _ in range(depth):
        inner = [inner, inner]
    return pickle.dumps({"version": "2.4", "rank": 0, "entries": [{"input_sizes": inner}]}, protocol=4)


def make_fr_case(rng: random.Random, folder: Path) -> str:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    docs = fr_base()
    what = []
    r = rng.random()
    if r < 0.7:
        k = rng.randrange(2)
        docs[k], w = mutate_json(rng, docs[k])
        what.append(f"rank{k} {w}")
    if r >= 0.9:
        (folder / "rank0").write_bytes(laughs(rng.choice([20, 40, 60])))
        return "billion laughs pickle"
    names = ["rank0", "rank1"]
    if 0.7 <= r < 0.8:
        names[1] = rng.choice(["rank99999999999999999999", "rank70000", "dump", "rank0"])
        for d in docs:
            d.pop("rank", None)
        what.append(f"file name {names[1]}")
    as_pickle = rng.random() < 0.4
    for d, name in zip(docs, names):
        try:
            data = pickle.dumps(d, protocol=4) if as_pickle else json.dumps(d).encode()
        except (ValueError, OverflowError):
            data = json.dumps(d).encode()
        if 0.8 <= r < 0.9 and as_pickle:
            b = bytearray(data)
            for _ in range(rng.choice([1, 3, 10])):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
            what.append("bytes flipped")
        (folder / name).write_bytes(data)
    return "; ".join(what) + (" (pickle)" if as_pickle else " (json)")


def fr_readers(folder: Path, out: Path) -> list[tuple[str, Callable[[], Any]]]:
    return [("import flight-recorder", lambda: cli(["import", "flight-recorder", str(folder), "-o", str(out),
                                                    "--json"]))]


def tally(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for o in outcomes:
        d = out.setdefault(o.family, {"cases": 0, "ok": 0, "error": 0, "traceback": 0, "slow": 0, "memory": 0})
        d["cases"] += 1
        d[o.kind] += 1
    return out


