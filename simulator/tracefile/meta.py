"""The trace's metadata: a JSON object with a few keys every layer reads (executor, clock, complete,
topology, lanes, the program's meta, the machine), typed once in :class:`TraceMeta`.

:func:`trace_meta` is the one reader: the trace reader calls it on every file (so a key of the
wrong type is a :class:`~rankscope.simulator.errors.TraceFormatError` naming the key), and
:attr:`Trace.info <rankscope.simulator.tracefile.model.Trace.info>` gives it to the views and
exporters instead of ``meta.get("...")`` with a default of their own.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import TraceFormatError
from .schema import jsonable, machine, rankscope_version

DEFAULTS: dict[str, Any] = {"executor": "unknown", "clock": "unknown", "topology": None, "lanes": [],
                            "complete": True}


def complete_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` with the defaults of the keys it lacks, as it reads back from JSON."""
    base = {**DEFAULTS, "rankscope": rankscope_version(), "machine": machine()}
    return jsonable({**base, **(meta or {})})


@dataclass(frozen=True)
class TraceMeta:
    """The typed keys of a trace's meta (the rest stays in ``Trace.meta``)."""

    executor: str = "unknown"          # "sim", "real", "kineto", "flight-recorder", ...
    clock: str = "unknown"             # "simulated", "epoch", ...
    complete: bool = True              # False: the recorder stopped early (or salvaged)
    topology: dict[str, Any] | None = None   # Topology.to_dict(), when the trace has one
    topology_name: str | None = None   # its name, or the name a trace gives without the dict
    lanes: tuple[str, ...] = ()
    program_meta: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    rankscope: str = "unknown"         # the version that wrote it
    error: str | None = None           # why a run stopped (from the end batch)
    salvaged: bool = False
    check_steps: bool = False          # a real run with --check-steps (meta["real"]["check_steps"]):
    #                                    provenance compared after every step, ~30x slower steps

    @property
    def collective(self) -> str | None:
        c = self.program_meta.get("collective")
        return c if isinstance(c, str) else None

    @property
    def algo(self) -> str | None:
        a = self.program_meta.get("algo")
        return a if isinstance(a, str) else None


def _str(meta: Mapping[str, Any], key: str, default: str | None) -> str | None:
    v = meta.get(key, default)
    if v is None and default is None:
        return None
    if not isinstance(v, str):
        raise TraceFormatError(f"trace meta {key!r} must be a string, got {type(v).__name__} {_short(v)}")
    return v


def _bool(meta: Mapping[str, Any], key: str, default: bool) -> bool:
    v = meta.get(key, default)
    if not isinstance(v, bool):
        raise TraceFormatError(f"trace meta {key!r} must be true or false, got {type(v).__name__} {_short(v)}")
    return v


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def check_topology_dict(topo: Any, nranks: int | None) -> None:
    """The shape of a recorded topology (``Topology.to_dict()``; older traces hold other small
    dicts): a name is a string, ``nranks`` equals the program's, the ring lists that many ranks,
    links are [src, dst, bw, lat] with finite figures; a rebuild (networkx, in the TUI's link
    view) then costs no more than what the file already holds."""
    if not isinstance(topo, dict):
        raise TraceFormatError(f"trace meta 'topology' must be an object, a string or null, got {type(topo).__name__}")
    name = topo.get("name")
    if "name" in topo and not isinstance(name, str):
        raise TraceFormatError(f"trace meta topology name must be a string, got {type(name).__name__} {_short(name)}")
    if "nranks" in topo:
        n = topo["nranks"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (nranks is not None and n != nranks):
            raise TraceFormatError(f"trace meta topology {name!r} has nranks {_short(n)}, the program has {nranks}")
    if "ring" in topo and (not isinstance(topo["ring"], list) or (nranks is not None and len(topo["ring"]) != nranks)):
        raise TraceFormatError(f"trace meta topology {name!r}: ring must list the program's {nranks} ranks")
    links = topo.get("links", [])
    if not isinstance(links, list):
        raise TraceFormatError(f"trace meta topology {name!r}: links must be a list")
    for i, row in enumerate(links):
        if not (isinstance(row, list) and len(row) == 4
                and all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)
                        for x in row[2:])):
            raise TraceFormatError(f"trace meta topology {name!r}: links[{i}] = {_short(row)} is not "
                                   "[src, dst, bw, lat] with finite numbers")
    if not isinstance(topo.get("meta") or {}, dict):
        raise TraceFormatError(f"trace meta topology {name!r}: meta must be an object")


def trace_meta(meta: Mapping[str, Any], program_meta: Mapping[str, Any] | None = None,
               nranks: int | None = None) -> TraceMeta:
    """The one reader of a trace's meta: each typed key checked (TraceFormatError naming it)."""
    if not isinstance(meta, Mapping):
        raise TraceFormatError(f"trace meta must be an object, got {type(meta).__name__}")
    if program_meta is not None and not isinstance(program_meta, Mapping):
        raise TraceFormatError(f"program meta must be an object, got {type(program_meta).__name__}")
    lanes = meta.get("lanes", [])
    if lanes is None:
        lanes = []
    if not isinstance(lanes, list) or not all(isinstance(x, str) for x in lanes):
        raise TraceFormatError(f"trace meta 'lanes' must be a list of strings, got {_short(lanes)}")
    topo = meta.get("topology")
    if topo is None or isinstance(topo, str):
        topo_dict, topo_name = None, topo
    else:
        check_topology_dict(topo, nranks)
        topo_dict, topo_name = topo, topo.get("name")
    mach = meta.get("machine", {})
    if not isinstance(mach, dict):
        raise TraceFormatError(f"trace meta 'machine' must be an object, got {type(mach).__name__}")
    real = meta.get("real")
    if real is not None and not isinstance(real, dict):
        raise TraceFormatError(f"trace meta 'real' must be an object, got {type(real).__name__}")
    steps_checked = (real or {}).get("check_steps", meta.get("check_steps", False))
    if steps_checked is None:  # a run that stopped before its summary
        steps_checked = False
    if not isinstance(steps_checked, bool):
        raise TraceFormatError(f"trace meta check_steps must be true or false, got {_short(steps_checked)}")
    error = meta.get("error")
    if error is not None and not isinstance(error, str):
        error = str(error)
    return TraceMeta(executor=_str(meta, "executor", "unknown"), clock=_str(meta, "clock", "unknown"),
                     complete=_bool(meta, "complete", True), topology=topo_dict, topology_name=topo_name,
                     lanes=tuple(lanes), program_meta=dict(program_meta or {}), machine=dict(mach),
                     rankscope=_str(meta, "rankscope", "unknown"), error=error,
                     salvaged=_bool(meta, "salvaged", False), check_steps=steps_checked)
