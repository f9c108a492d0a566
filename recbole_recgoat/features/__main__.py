"""``python -m recbole_recgoat.features {item-text,user-profiles} ...``"""

import sys

from recbole_recgoat.features.cli import main

if __name__ == "__main__":
    sys.exit(main())
