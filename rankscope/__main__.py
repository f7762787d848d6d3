"""``python -m rankscope ...`` is the ``rankscope`` command."""

import sys

from rankscope.cli import main

sys.exit(main())
