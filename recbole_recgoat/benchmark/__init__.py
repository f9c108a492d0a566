"""Benchmarks and leaderboards: many models x datasets x seeds under one protocol.

* :mod:`~recbole_recgoat.benchmark.spec` - entries (models, variants), cells and their keys;
* :mod:`~recbole_recgoat.benchmark.store` - the append-only results store;
* :mod:`~recbole_recgoat.benchmark.worker` - one cell through ``quick_start.run`` (+ per-user metrics);
* :mod:`~recbole_recgoat.benchmark.runner` - local process pool or Ray;
* :mod:`~recbole_recgoat.benchmark.tuning` - RecBole ``HyperTuning`` on validation only;
* :mod:`~recbole_recgoat.benchmark.leaderboard` and :mod:`~recbole_recgoat.benchmark.stats` - output.

Command line: ``python -m recbole_recgoat.benchmark {run,tune,leaderboard,status}`` or
``python -m recbole_recgoat.benchmark --config bench.yaml``; see ``docs/benchmark.md``.
"""

from recbole_recgoat.benchmark.store import Store

__all__ = ["Store"]
