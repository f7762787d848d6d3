"""The footer of the stepping screens: Textual's, but a key that only turns on or off is restyled
in place instead of the whole footer being rebuilt.

Textual's :class:`~textual.widgets.Footer` recomposes (removes and mounts every key, then lays the
screen out again) whenever the screen's bindings change; a step that makes "prev" possible or
"next" impossible changes them, and the rebuild cost more than the step it follows (textual
``widgets/_footer.py``, ``Footer.bindings_changed``). Here the keys the footer would show are
composed without being mounted; when they are the same keys, with the same descriptions, as the
ones on screen, only their ``-disabled`` class is set (a repaint, no layout); otherwise the
footer is rebuilt as Textual does it.
"""

from __future__ import annotations

from textual.compose import compose
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

_STATE = frozenset({"-disabled", "-compact"})  # classes a key's state sets, not its identity


def _same_key(a, b) -> bool:
    """Whether the composed key ``a`` is the mounted key ``b``, but for being disabled."""
    return (type(a) is type(b) is FooterKey and a.key == b.key and a.action == b.action
            and a.description == b.description and a.key_display == b.key_display
            and a.tooltip == b.tooltip and set(a.classes) - _STATE == set(b.classes) - _STATE)


class StepFooter(Footer):
    """See the module docstring."""

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        shown = list(self.children)
        wanted = compose(self)
        if shown and len(shown) == len(wanted) and all(_same_key(w, s) for w, s in zip(wanted, shown)):
            for w, s in zip(wanted, shown):
                if s._disabled != w._disabled:
                    s._disabled = w._disabled
                    s.set_class(w._disabled, "-disabled")
            return
        self.call_after_refresh(self.recompose)
