"""Numbers and names as the leaderboard's pages print them: one rule each, shared by the Markdown,
the LaTeX and the figures."""

import math

_PRETTY = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP", "hit": "Hit", "mrr": "MRR"}


def seeds_text(counts):
    """``[1]`` -> "1 seed", ``[3, 5]`` -> "3/5 seeds"."""
    return f"{'/'.join(map(str, counts))} seed{'' if list(counts) == [1] else 's'}"


def pretty(metric):
    name, _, k = metric.partition("@")
    return f"{_PRETTY.get(name, name)}@{k}" if k else _PRETTY.get(name, name)


def fmt_p(p):
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def fmt_num(x, nd=4):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.{nd}f}"
