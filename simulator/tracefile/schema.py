"""Trace format v1 on disk: the Arrow schema, the constants of the format, and the JSON helpers the
writer and reader share (traces/README.md is the exact description; keep the two in step)."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import TraceFormatError

MAGIC = "rankscope-trace"
VERSION = 1
LINK = 255          # the ``kind`` of a link-usage row
META_KEY = b"rankscope"
END_KEY = b"rankscope-end"
BATCH_ROWS = 1 << 20
# Arrow's own buffer compression, which every Arrow reader undoes: the ring all-reduce on 1024
# ranks takes 10 MB instead of 500 MB, and writing it (with fsync) is 4x faster.
COMPRESSION = "zstd" if pa.Codec.is_available("zstd") else None

SCHEMA = pa.schema([
    ("op", pa.int64()), ("kind", pa.uint8()), ("rank", pa.int32()), ("peer", pa.int32()),
    ("step", pa.int32()), ("chunk", pa.int32()), ("buffer", pa.int32()), ("offset", pa.int64()),
    ("nbytes", pa.int64()), ("compute", pa.int32()), ("deps", pa.list_(pa.int64())),
    ("start", pa.float64()), ("end", pa.float64()), ("lane", pa.int32()), ("link", pa.int32()),
])
COL = {name: i for i, name in enumerate(SCHEMA.names)}
NUMPY = {f.name: np.dtype(f.type.to_pandas_dtype()) for f in SCHEMA if f.name != "deps"}


def rankscope_version() -> str:
    try:
        from importlib.metadata import version
        return version("rankscope")
    except Exception:  # not installed (running from a checkout): still write a trace
        return "unknown"


def machine() -> dict[str, Any]:
    """Where a trace was made: host name, OS, CPU architecture, CPU count, Python."""
    return {"hostname": platform.node(), "platform": platform.platform(),
            "arch": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, numpy scalars Python numbers)."""
    def default(o: Any) -> Any:
        if isinstance(o, (np.generic, np.ndarray)):
            return o.tolist()
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"{type(o).__name__} {o!r} is not JSON-able")
    try:
        return json.loads(json.dumps(obj, default=default))
    except (TypeError, ValueError, RecursionError) as e:
        raise TraceFormatError(f"trace metadata must be JSON-able: {e}") from None
