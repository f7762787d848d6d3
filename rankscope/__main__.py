"""``python -m rankscope ...`` is the ``rankscope`` command."""

import sys

from rankscope.cli import run

sys.exit(run())
