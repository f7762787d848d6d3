"""Import flight-recorder dumps (one per rank) into one rankscope trace.

[Note: flight recorder]
PyTorch's flight recorder keeps the last ``TORCH_FR_BUFFER_SIZE`` collectives of each rank. A dump
is a dict: ``version``, ``pg_config`` (process groups and their ranks), ``pg_status`` (per group id:
``last_enqueued_collective``, ``last_started_collective``, ``last_completed_collective``) and
``entries``, each with ``collective_seq_id``, ``p2p_seq_id``, ``pg_id``, ``process_group``
(name, description), ``profiling_name`` (``nccl:all_reduce``, ``gloo:all_gather``),
``time_created_ns``, ``input_sizes``/``output_sizes``, ``input_dtypes``/``output_dtypes``,
``state`` (scheduled, started, completed), ``time_discovered_started_ns``,
``time_discovered_completed_ns`` (and ``duration_ms`` when NCCL timing is on), ``is_p2p``.
Files: JSON (``_dump_fr_trace_json``) or pickle (``_dump_fr_trace``, the automatic dump), read only
through :mod:`.safe_pickle`. The rank is the dump's ``rank`` if it has one, else ``rank<N>`` or the
trailing number of the file name (the dump files are ``<prefix><rank>``).

Ranks are aligned by ``collective_seq_id`` per process group: a rank missing an id that another
holds is reported (that rank stopped there, the usual reason for a dump). Timing: a collective
started at ``time_discovered_started_ns`` (else when created, if ``pg_status`` or ``state`` says it
started) and ended at ``time_discovered_completed_ns`` (or start + ``duration_ms``); gloo records
neither, so its completed collectives get zero-length spans at their creation time (counted in
``meta.ranks[r].untimed``), and collectives that never started or never finished have NaN times.
gloo runs a reduce-scatter as an all-reduce, and its flight recorder calls it ``gloo:all_reduce``
with input and output of the full size: the dump says all-reduce, and so does the import.
Point-to-point entries are kept per rank, unaligned.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from .collectives import MeasuredCollective, collective_kind, dtype_bytes, numel
from .errors import ImportFormatError
from .files import input_files
from .measured import RankRecord, build_trace

_RANK = re.compile(r"rank[_\-.]?(\d+)", re.I)
_TRAILING = re.compile(r"(\d+)(\.[A-Za-z]+)*$")


def fr_files(items: list[str]) -> list[str]:
    """Dumps from files and folders (a folder: every file in it that is not hidden)."""
    return input_files(items, lambda f: not f.startswith("."), "flight-recorder dumps")


def read_dump(path: str) -> dict[str, Any]:
    """One dump, JSON or (restricted) pickle; no larger than the memory budget allows."""
    from .. import limits
    from .safe_pickle import plain_loads

    try:
        budget = limits.memory_budget() // 8  # a dump's objects take several times its bytes
        if os.path.getsize(path) > budget:
            raise ImportFormatError(f"{path}: over {budget} bytes, too large for a flight-recorder dump "
                                    f"({limits.BUDGET_HINT})")
        with open(path, "rb") as f:
            data = f.read(budget + 1)
    except OSError as e:
        raise ImportFormatError(f"{path}: cannot read the file ({e})") from None
    if not data:
        raise ImportFormatError(f"{path}: the file is empty")
    if data[:1] == b"\x80":
        doc = plain_loads(data, path)
    else:
        try:
            doc = json.loads(data.decode("utf-8"))
        except RecursionError:
            raise ImportFormatError(f"{path}: JSON nested too deeply") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ImportFormatError(f"{path}: neither JSON nor a pickle ({e})") from None
    if not isinstance(doc, dict):
        raise ImportFormatError(f"{path}: a flight-recorder dump is a dict, this is a {type(doc).__name__}")
    if not isinstance(doc.get("entries"), list):
        raise ImportFormatError(f"{path}: no 'entries' list; not a flight-recorder dump")
    for key in ("pg_status", "pg_config"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ImportFormatError(f"{path}: {key!r} must be a dict, this is a {type(doc[key]).__name__}")
    st = doc.get("pg_status") or {}
    bad = next((k for k, v in st.items() if not isinstance(v, dict)), None)
    if bad is not None:
        raise ImportFormatError(f"{path}: pg_status[{bad!r}] must be a dict")
    return doc


def _rank_of(path: str, doc: dict[str, Any]) -> int:
    from .. import limits

    r = doc.get("rank")
    if isinstance(r, int) and not isinstance(r, bool):
        rank, how = int(r), "its 'rank'"
    else:
        name = os.path.basename(path)
        m = _RANK.search(name) or _TRAILING.search(name)
        if not m:
            raise ImportFormatError(f"{path}: the dump has no 'rank' and the file name ends in no rank number")
        if len(m.group(1)) > 9:
            raise ImportFormatError(f"{path}: the rank number in the file name ({m.group(1)[:12]}...) is out of range")
        rank, how = int(m.group(1)), "the number in its name"
    if not 0 <= rank < limits.max_ranks():
        raise ImportFormatError(f"{path}: rank {rank} ({how}) is out of range 0..{limits.max_ranks() - 1}")
    return rank


_ENTRY_KEYS = ("profiling_name", "time_created_ns", "input_sizes", "output_sizes", "state")


def _record(path: str, doc: dict[str, Any], t0_ns: int) -> RankRecord:
    rank = _rank_of(path, doc)
    status = doc.get("pg_status") or {}
    cfg = doc.get("pg_config") or {}
    colls, untimed, p2p = [], 0, 0
    for i, e in enumerate(doc["entries"]):
        where = f"{path}: entries[{i}]"
        try:
            c = _collective(e, where, status, t0_ns, cfg, rank)
        except (ValueError, TypeError, OverflowError) as err:  # a field of the wrong type
            raise ImportFormatError(f"{where}: {err}") from None
        if c is None:
            continue
        coll, timed, is_p2p = c
        untimed += not timed
        p2p += is_p2p
        colls.append(coll)
    info = {"flight_recorder_version": doc.get("version"), "entries": len(doc["entries"]),
            "untimed": untimed, "p2p": p2p}
    return RankRecord(rank, path, colls, [], [], [], info)


def _collective(e: Any, where: str, status: dict[str, Any], t0_ns: int, cfg: dict[str, Any],
                rank: int) -> tuple[MeasuredCollective, bool, bool] | None:
    """One entry as (collective, timed, point-to-point), or None when it is no collective.
    A field of the wrong type raises ValueError or TypeError, which the caller reports."""
    if not isinstance(e, dict):
        raise ImportFormatError(f"{where} is not a dict")
    for k in _ENTRY_KEYS:
        if k not in e:
            raise ImportFormatError(f"{where} has no {k!r}")
    name = str(e["profiling_name"])
    kind = collective_kind(name)
    if kind is None:
        return None
    pg = e.get("process_group") or [str(e.get("pg_id", 0)), ""]
    group = str(pg[0] if isinstance(pg, (list, tuple)) and pg else pg)
    is_p2p = bool(e.get("is_p2p")) or kind == "p2p"
    seq = e.get("p2p_seq_id" if is_p2p else "collective_seq_id")
    if not isinstance(seq, int):
        raise ImportFormatError(f"{where} has no integer collective_seq_id")
    dts = e.get("output_dtypes" if kind == "all-gather" else "input_dtypes") or []
    sizes = e["output_sizes"] if kind == "all-gather" else e["input_sizes"]
    try:
        elems = numel(sizes) if sizes else 0
    except TypeError:
        raise ImportFormatError(f"{where}: sizes {sizes!r} are not shapes") from None
    if elems and (not isinstance(dts, (list, tuple)) or not dts):
        raise ImportFormatError(f"{where} has sizes {sizes!r} but no "
                                f"{'output' if kind == 'all-gather' else 'input'}_dtypes")
    nbytes = elems * dtype_bytes(dts[0], where) if elems else 0
    from ..units import MAX_BYTES

    if not 0 <= nbytes <= MAX_BYTES:
        raise ImportFormatError(f"{where}: {nbytes} bytes is out of range 0..{MAX_BYTES}")
    st = status.get(str(e.get("pg_id", group)), {})
    last_started = _int(st.get("last_started_collective"), -1)
    last_done = _int(st.get("last_completed_collective"), -1)
    state = str(e["state"])
    done = state == "completed" or (not is_p2p and seq <= last_done)
    started = done or state == "started" or (not is_p2p and seq <= last_started)
    created = (int(e["time_created_ns"]) - t0_ns) / 1e9
    t_start = e.get("time_discovered_started_ns") or None
    t_end = e.get("time_discovered_completed_ns") or None
    start = (int(t_start) - t0_ns) / 1e9 if t_start else (created if started else math.nan)
    timed = True
    if t_end:
        end = (int(t_end) - t0_ns) / 1e9
    elif done and isinstance(e.get("duration_ms"), (int, float)) and not math.isnan(start):
        end = start + e["duration_ms"] / 1e3
    elif done:
        end, timed = start, False
    else:
        end = math.nan
    for what, t in (("created", created), ("start", start), ("end", end)):
        if math.isinf(t) or abs(t) > 1e12:
            raise ImportFormatError(f"{where}: its {what} time {t!r} s is not a finite time")
    ranks = _parse_ranks(cfg, group)
    if is_p2p:
        group = f"{group}:p2p:{rank}"
    coll = MeasuredCollective(rank, kind, int(nbytes), start, end, name=name, impl=name, group=group,
                              group_ranks=ranks, dtype=str(dts[0]) if dts else "", seq=seq, issue=created)
    return coll, timed, is_p2p


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _parse_ranks(cfg: dict[str, Any], group: str) -> tuple[int, ...] | None:
    c = cfg.get(group)
    if not isinstance(c, dict):
        return None
    r = c.get("ranks")
    try:
        r = json.loads(r) if isinstance(r, str) else r
    except ValueError:
        return None
    return tuple(r) if isinstance(r, list) and all(isinstance(x, int) for x in r) else None


def import_flight_recorder(items: list[str]):
    """One :class:`~simulator.trace.Trace` from flight-recorder dumps (files or folders)."""
    files = fr_files(items)
    docs = [(f, read_dump(f)) for f in files]
    created = [e["time_created_ns"] for _, d in docs for e in d["entries"]
               if isinstance(e, dict) and isinstance(e.get("time_created_ns"), int)]
    t0 = min(created) if created else 0
    records = [_record(f, d, t0) for f, d in docs]
    names = {c.name.split(":")[0] for r in records for c in r.collectives if ":" in c.name}
    meta = {"executor": names.pop() if len(names) == 1 else "measured",
            "source": {"format": "flight-recorder", "files": [os.path.abspath(f) for f in files]},
            "epoch_ns": t0}
    return build_trace(records, meta)
