"""Keeping Python's cycle collector out of a step's redraw.

A screen open holds some 10^5 objects (widgets, styles, the page's programs); CPython's collector
walks every tracked object of the oldest generation on each full collection, which on this 2-core
machine took 70-200 ms in the middle of a step, and a young collection still reaches objects that
survived from the open. Once the first screen is drawn, :func:`settle` collects what the open left
behind and freezes the survivors (``gc.freeze``: the collector ignores them from then on), so later
collections only see what steps allocate. A page turn settles again, unfreezing first, so that the
widgets a page leaves behind are collected, not kept (CPython docs, ``gc.freeze``; the same as
``gc.freeze()`` before ``fork`` in a preforking server).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then freeze what is alive (see the module docstring)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
