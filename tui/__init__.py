"""rankscope's terminal UI: replay a trace step by step, or compare two traces of one program.

Layers (each imports only the ones above it):

- :mod:`tui.replay`, :mod:`tui.training`, :mod:`tui.compare` — pure models over a
  :class:`~simulator.trace.Trace`: no widgets, no Textual; tests drive them without a screen.
- :mod:`tui.widgets` — Line-API widgets that draw what they are given (attributes down) and report
  what the user picked (messages up).
- :mod:`tui.screens` — the collective, training, compare and help screens, which own a model and
  hand its state to their widgets.
- :mod:`tui.app` — the Textual app and the entry points the CLI calls (``replay_main``,
  ``demo_main``).

Nothing here imports torch (a test checks it in a subprocess).
"""
