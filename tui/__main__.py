"""``python -m tui``: the operator console without going through ``valkyrie-routing``."""

import sys

from tui.cli import main

sys.exit(main())
