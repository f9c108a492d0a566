#!/usr/bin/env python
"""Train and evaluate any model (RecGOAT, the plugin's baselines, RecBole's own) RecBole's way.

    python run_recbole.py --model=LightGCN --dataset=lastfm-2k --config_files="my.yaml" --epochs=50
"""

import sys

from recbole_recgoat.cli import main

if __name__ == "__main__":
    sys.exit(main())
