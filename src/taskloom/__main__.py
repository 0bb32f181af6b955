"""``python -m taskloom``: the command line (see ``taskloom.cli``)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
