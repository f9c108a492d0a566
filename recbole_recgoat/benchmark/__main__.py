"""``python -m recbole_recgoat.benchmark``; see :mod:`recbole_recgoat.benchmark.cli`."""

import sys

import recbole_recgoat  # noqa: F401  (compat shims before recbole)
from recbole_recgoat.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
