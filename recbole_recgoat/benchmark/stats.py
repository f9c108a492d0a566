"""Aggregates and paired significance tests (scipy) used by the leaderboard.

* ``mean_std``: mean and sample standard deviation (``ddof=1``; 0 for a single value).
* ``paired_t``: Student's paired t-test, two-sided (``scipy.stats.ttest_rel``).
* ``paired_wilcoxon``: Wilcoxon signed-rank test, two-sided, zero differences dropped
  (``zero_method='wilcox'``), scipy's ``method='auto'`` (exact for small samples without ties,
  else the normal approximation with continuity correction).
* ``holm``: Holm-Bonferroni adjusted p-values for a family of comparisons.
"""

import math

import numpy as np


def mean_std(values):
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def paired_t(a, b):
    """``{'n', 'mean_diff', 't', 'df', 'p'}`` of a paired t-test of ``a`` against ``b``."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = int(a.size)
    out = {"n": n, "mean_diff": float(np.mean(a - b)) if n else float("nan"), "t": None, "df": n - 1, "p": None}
    if n < 2:
        return out
    d = a - b
    if np.allclose(d, d[0]):  # zero variance: t undefined (scipy returns nan)
        out["t"], out["p"] = (0.0, 1.0) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
        return out
    res = stats.ttest_rel(a, b)
    out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def paired_wilcoxon(a, b, correction=True):
    """``{'n', 'n_nonzero', 'W', 'p'}`` of a two-sided Wilcoxon signed-rank test."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    nonzero = int(np.count_nonzero(d))
    out = {"n": int(d.size), "n_nonzero": nonzero, "W": None, "p": None}
    if nonzero == 0:
        out["W"], out["p"] = 0.0, 1.0
        return out
    import warnings

    # The method is chosen here, not by scipy's 'auto' (which changed between scipy 1.12 and 1.13+
    # for data with zeros): the exact distribution for up to 50 non-zero differences without zeros
    # or ties, else the normal approximation (with continuity correction), as R's wilcox.test does.
    nz = d[d != 0]
    exact = nonzero <= 50 and nonzero == d.size and np.unique(np.abs(nz)).size == nz.size
    with warnings.catch_warnings():  # scipy warns when it uses the normal approximation
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(a, b, zero_method="wilcox", correction=correction, alternative="two-sided",
                             method="exact" if exact else "approx")
    out["W"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (None stays None), in the input order."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    adjusted = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def relative_improvement(best, runner_up):
    """``(best - runner_up) / runner_up`` in percent (None when the runner-up is 0)."""
    if runner_up is None or best is None or runner_up == 0 or not np.isfinite(runner_up):
        return None
    return 100.0 * (best - runner_up) / abs(runner_up)
