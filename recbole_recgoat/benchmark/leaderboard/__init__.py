"""Leaderboard tables and figures, computed from the results store alone (no training).

For every dataset and table (default: one table of the plain models, plus one ablation table per
model that has variants) the output holds, on the TEST split:

* mean +- sample std over seeds of every metric (Markdown shows ``columns``; CSV and JSON all),
  the best of each column in bold, and the relative improvement of the best row over the
  runner-up in each column;
* a paired test across seeds between the best row (on the headline metric, default the test
  value of the validation metric) and each other row: paired t (``scipy.stats.ttest_rel``) and
  Wilcoxon signed-rank (``scipy.stats.wilcoxon``), over the seeds both rows have, Holm-adjusted;
* a per-user paired test on the test users: users are paired by id; each user's value is averaged
  over the seeds both rows have, then Wilcoxon signed-rank (zero differences dropped) and paired t
  across users; the number of seeds in which the per-seed Wilcoxon test has p < 0.05 is given too;
* the cost of each row (best epoch, epochs run, seconds per epoch, train time, peak memory);
* the dataset statistics and each row's tuning and tuned settings (yaml) beside the tables, one
  results page per dataset (Markdown, and its tables in LaTeX); the full config of every row in
  the JSON export;
* the average rank of every model across datasets (an overview page and a figure);
* rows the configuration runs but the store has no record of yet, listed as pending;
* PNG figures: bars with error bars (std over seeds) per metric, validation curves (mean over
  seeds of the validation metric vs epoch).

When one row (variant name on a dataset) has records of several settings (different overrides in
the same store), the setting with the newest record is used and the others are listed as ignored.

Modules: :mod:`.compute` (the numbers), :mod:`.markdown`, :mod:`.latex`, :mod:`.figures`, :mod:`.export` (files).
"""

from recbole_recgoat.benchmark.leaderboard.compute import attach_curves, compute
from recbole_recgoat.benchmark.leaderboard.export import write

__all__ = ["build", "compute", "write"]


def build(store, out_dir, name="leaderboard", tables=None, headline=None, columns=None, per_user_metrics=None,
          title=None, focus=None, datasets=None, command=None, figures=True, note=None, feature_labels=None,
          expected=None, expected_seeds=None):
    """Compute the leaderboard from ``store`` and write it to ``out_dir``; returns the written paths.
    ``expected``: ``{dataset: [row names]}`` the configuration runs (rows without records: pending);
    ``expected_seeds``: ``{dataset: seeds}`` it runs (rows with fewer: partial, not ranked)."""
    board = compute(store, tables=tables, headline=headline, per_user_metrics=per_user_metrics, datasets=datasets,
                    feature_labels=feature_labels, expected=expected, columns=columns, expected_seeds=expected_seeds)
    attach_curves(board, store)
    return write(board, out_dir, name=name, columns=columns, title=title, focus=focus, command=command, figures=figures,
                 note=note)
