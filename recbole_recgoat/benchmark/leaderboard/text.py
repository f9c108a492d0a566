"""Numbers and names as the leaderboard's pages print them: one rule each, shared by the Markdown,
the LaTeX and the figures."""

import math

_PRETTY = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP", "hit": "Hit", "mrr": "MRR"}


def seeds_text(counts):
    """``[1]`` -> "1 seed", ``[3, 5]`` -> "3/5 seeds"."""
    return f"{'/'.join(map(str, counts))} seed{'' if list(counts) == [1] else 's'}"


def table_seeds(rows):
    """The seed counts a table's caption names: those of its complete rows (a partial row shows its
    own "n/N"); all rows' when none is complete."""
    return sorted({r["n"] for r in rows if not r.get("partial")} or {r["n"] for r in rows})


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
