"""Changing a scroll view's virtual size without laying the whole screen out again when its own
size cannot change.

Textual's ``Widget.virtual_size`` is a reactive with ``layout=True``: any change reflows every
widget on the screen (textual ``screen.py``, ``Screen._refresh_layout``), though a table whose
height is fixed, or a grid whose height follows its rows but whose row count did not change, keeps
its place. On a step that costs more than the step itself (a transfers list one row longer, a grid
cell one character wider). :func:`set_virtual_size` lays out only when the widget's outer size may
follow the change (its height or width follows its content and that content's extent changed, not
merely beyond a limit it already reached) or a scrollbar appears or goes; otherwise it updates the
scrollbars and the scroll offset in place (``Widget._scroll_update``, what the layout would call)
and repaints the widget.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget


def _follows_content(scalar) -> bool:
    return scalar is None or scalar.is_auto


def set_virtual_size(w: Widget, size: Size) -> None:
    """``w.virtual_size = size``, laying out only where that can move something (module docstring)."""
    old = w.virtual_size
    if size == old:
        return
    if not w.is_mounted or not w.container_size:
        w.virtual_size = size  # not laid out yet: the first layout sizes it anyway
        return
    inner = w.container_size
    height_moves = _follows_content(w.styles.height) and size.height != old.height and \
        not (old.height > inner.height and size.height > inner.height)  # clamped (max-height) before and after
    width_moves = _follows_content(w.styles.width) and size.width != old.width and \
        not (old.width > inner.width and size.width > inner.width)
    if height_moves or width_moves:
        w.virtual_size = size
        return
    bars = (w.show_horizontal_scrollbar, w.show_vertical_scrollbar)
    w.set_reactive(Widget.virtual_size, size)
    w._scroll_update(size)  # scrollbars' thumbs, clamped scroll offsets
    if (w.show_horizontal_scrollbar, w.show_vertical_scrollbar) != bars:
        w.refresh(layout=True)  # a scrollbar came or went: the content region changed
    else:
        w.refresh()
