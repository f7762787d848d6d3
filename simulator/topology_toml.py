"""Topology files: TOML with ``[[link]]`` tables (and ``[[rank]]`` speeds, an ``[nccl]`` channel
layout kept as meta) or one ``[cluster]`` table; the format is the README's "Topologies". Every
error names the file and what to write instead."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from .cluster import NodeSpec, node_spec
from .errors import TopologyError
from .topology_model import Topology, checked
from .topology_values import bounded, parse_count, parse_quantity

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MAX_TOML_BYTES = 256 << 20  # a topology file larger than this is refused before parsing

ClusterBuilder = Callable[[NodeSpec, "int | None", str], Topology]


def load_toml(path: Path, nranks: int | None, cluster: ClusterBuilder) -> Topology:
    """The topology in ``path``; ``cluster(spec, nranks, name)`` builds a ``[cluster]`` table's links
    (:func:`simulator.topology.cluster_topology`, passed in: that module imports this one)."""
    if not path.is_file():
        raise TopologyError(f"topology file {str(path)!r} does not exist; check the path")
    try:
        if path.stat().st_size > MAX_TOML_BYTES:
            raise TopologyError(f"topology file {str(path)!r} is over {MAX_TOML_BYTES >> 20} MiB; not a topology")
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"topology file {str(path)!r} is not valid TOML: {e}; fix the syntax there") from None
    except RecursionError:
        raise TopologyError(f"topology file {str(path)!r} nests arrays or tables too deeply") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"cannot read topology file {str(path)!r}: {e}") from None
    where = str(path)
    if "cluster" in doc:
        return _toml_cluster(doc, where, path, nranks, cluster)
    extra = sorted(set(doc) - {"name", "ranks", "ring", "link", "rank", "nccl"})
    if extra:
        raise TopologyError(f"{where}: unknown key {extra[0]!r}; the keys are name, ranks, ring, [[rank]], [[link]] "
                            "and [nccl]")
    if not isinstance(doc.get("nccl", {}), dict):  # NCCL's channel layout (simulator/interop/nccl_topology.py), kept as meta
        raise TopologyError(f"{where}: 'nccl' must be a table, written [nccl]")
    if "ranks" not in doc:
        raise TopologyError(f"{where}: missing key 'ranks' (the number of ranks); add e.g. ranks = 4")
    raw = doc.get("link", [])
    if not isinstance(raw, list):
        raise TopologyError(f"{where}: 'link' must be an array of tables, written [[link]]")
    links = []
    for k, t in enumerate(raw, 1):
        label = f"{where}: [[link]] #{k}"
        if not isinstance(t, dict):
            raise TopologyError(f"{label} is {t!r}, not a table; write it as [[link]]")
        bad = sorted(set(t) - {"src", "dst", "bw", "lat", "bidirectional"})
        if bad:
            raise TopologyError(f"{label}: unknown key {bad[0]!r}; a link has src, dst, bw, lat, bidirectional")
        for key in ("src", "dst", "bw", "lat"):
            if key not in t:
                raise TopologyError(f"{label} is missing key {key!r}; every link needs src, dst, bw and lat")
        both = t.get("bidirectional", False)
        if not isinstance(both, bool):
            raise TopologyError(f"{label}: bidirectional = {both!r} must be true or false")
        links.append((t["src"], t["dst"], t["bw"], t["lat"], label))
        if both:
            links.append((t["dst"], t["src"], t["bw"], t["lat"], f"{label} (reverse)"))
    n = parse_count(doc["ranks"], f"{where}: ranks")
    from . import limits

    if n > limits.max_ranks():
        raise TopologyError(f"{where}: ranks = {n} is over the limit of {limits.max_ranks()} "
                            "(raise it with RANKSCOPE_MAX_RANKS=<n>)")
    name = doc.get("name", path.stem)
    if not isinstance(name, str):
        raise TopologyError(f"{where}: name = {name!r} must be a string")
    meta = {"preset": "toml", "path": where, **({"nccl": doc["nccl"]} if "nccl" in doc else {})}
    if "rank" in doc:
        meta["rank_speed"] = _rank_speeds(doc["rank"], n, where)
    try:
        return checked(name, n, nranks, links, meta, doc.get("ring"))
    except TopologyError as e:  # say which file, once
        raise e if str(e).startswith(where) else TopologyError(f"{where}: {e}") from None


def _rank_speeds(raw, n: int, where: str) -> list[float]:
    """``[[rank]]`` tables (``id``, ``speed``: compute runs at ``speed`` x the device's rate, so a
    rank's compute ops take 1/speed as long) as one factor per rank, 1.0 where none is given."""
    if not isinstance(raw, list):
        raise TopologyError(f"{where}: 'rank' must be an array of tables, written [[rank]]")
    speeds = [1.0] * n
    seen = set()
    for k, t in enumerate(raw, 1):
        label = f"{where}: [[rank]] #{k}"
        if not isinstance(t, dict) or sorted(t) != ["id", "speed"]:
            raise TopologyError(f"{label}: a rank table has exactly the keys id and speed")
        r, speed = t["id"], t["speed"]
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < n or r in seen:
            raise TopologyError(f"{label}: id = {r!r} must be a rank 0..{n - 1}, given once")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < math.inf:
            raise TopologyError(f"{label}: speed = {speed!r} must be a number > 0 (1 = the device's rate)")
        seen.add(r)
        speeds[r] = float(speed)
    return speeds


def _toml_cluster(doc: dict, where: str, path: Path, nranks: int | None, cluster: ClusterBuilder) -> Topology:
    """A ``[cluster]`` table: ``nodes``, ``gpus`` and the options of [Note: cluster presets]."""
    extra = sorted(set(doc) - {"name", "cluster"})
    if extra:
        raise TopologyError(f"{where}: key {extra[0]!r} cannot go with [cluster]; a cluster file has name and "
                            "[cluster] (nodes, gpus, gpu, nvlinks, nvlink, nvswitch, nvls, nics, nic)")
    t = doc["cluster"]
    if not isinstance(t, dict) or "nodes" not in t or "gpus" not in t:
        raise TopologyError(f"{where}: [cluster] needs nodes and gpus, e.g. nodes = 2, gpus = 8")
    options = {k: v for k, v in t.items() if k not in ("nodes", "gpus")}
    try:
        spec = node_spec(t["nodes"], t["gpus"], options, lambda v, w: parse_quantity(v, w, True))
        bounded(spec.nranks, where)
        return cluster(spec, nranks, doc.get("name", path.stem))
    except TopologyError as e:
        raise TopologyError(f"{where}: {e}") from None
