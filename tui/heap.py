"""Keeping Python's cycle collector out of a step's redraw, and what a closed widget leaves behind.

A screen open holds some 10^5 objects (widgets, styles, the page's programs); CPython's collector
walks every tracked object of the oldest generation on each full collection, which on this 2-core
machine took 70-200 ms in the middle of a step, and a young collection still reaches objects that
survived from the open. Once the first screen is drawn, :func:`settle` collects what the open left
behind and freezes the survivors (``gc.freeze``: the collector ignores them from then on), so later
collections only see what steps allocate (CPython docs, ``gc.freeze``; the same as ``gc.freeze()``
before ``fork`` in a preforking server). A frozen object is never collected, garbage or not, until
the next :func:`settle` unfreezes it: a lesson's page turn settles again, so a page's widgets that
nothing refers to any more are collected then.

Freezing frees nothing that is still referred to, and Textual keeps references to widgets that are
gone from the screen: the lesson screen's page turn (:meth:`..screens.lesson.LessonScreen.turn`)
avoids the two that kept every page's widgets, and this module removes a third, for every screen:
Textual's ``StylesCache.get_inner_outer`` (``_styles_cache.py``) is an ``lru_cache`` of 1024 entries
on a method, so its key holds the widget's :class:`StylesCache`, and with it every line the widget
last rendered (1.4 MB a page turn of ps-vs-ring), for the next 1024 calls with other widgets or
colours.
Its result depends on the two colours alone: :func:`unpin_styles` caches it on those (same 1024
entries, same values, Textual's own function). ``tests/test_tui_lesson_memory.py`` measures page
turns: before, 1.2-1.9 MB stayed per turn, one more page's views, replay and header alive each
time; now 1-2 kB a turn, what bounded caches fill once, and only the open page's widgets alive.
"""

from __future__ import annotations

import gc
from functools import lru_cache


def settle() -> None:
    """Collect, then freeze what is alive (see the module docstring)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def unpin_styles() -> bool:
    """Make Textual's ``StylesCache.get_inner_outer`` cache on its colours, not on the instance;
    False (nothing done) when it is not the per-instance ``lru_cache`` this was written against."""
    from textual._styles_cache import StylesCache

    method = StylesCache.__dict__.get("get_inner_outer")
    original = getattr(method, "__wrapped__", None)
    if original is None or not hasattr(method, "cache_info"):
        return False  # already done, or Textual changed it: nothing of this kind to undo

    @lru_cache(1024)
    def inner_outer(base_background, background):
        return original(None, base_background, background)  # its first argument is unused

    def get_inner_outer(self, base_background, background):
        return inner_outer(base_background, background)

    get_inner_outer.__doc__ = original.__doc__
    StylesCache.get_inner_outer = get_inner_outer
    return True


unpin_styles()  # on import: before any screen of this package renders (tui.app imports this module)
