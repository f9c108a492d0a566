"""The average rank of every model across datasets (the overview page's table and figure)."""

import math
from collections import defaultdict

import numpy as np


def rank_of(values):
    """1-based ranks of ``values`` (higher is better), ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def average_rank(datasets, shown_columns):
    """Every model's rank across datasets: on each dataset the first table (the models' table,
    "Overall" by default) is ranked per shown metric by the test mean (1 = best; ties share the
    mean rank); a model's average rank is the mean over datasets of its headline rank, and over
    datasets x metrics. Pending rows, partial rows (``partial``: fewer seeds than configured) and
    datasets without numbers take no part; partial rows are listed under ``partial``.
    ``shown_columns(ds)``: the metrics a dataset's tables show (ranked beside the headline).

    Returns:
        dict: ``columns``, ``headline``, ``datasets`` (those ranked), ``table`` (its title per
        dataset), ``n_models`` (rows ranked per dataset), ``models``: sorted by the number of
        datasets ranked on (most first), then the average rank, each ``{name, ranks: {dataset:
        {metric: rank}}, datasets, mean_rank_headline, mean_rank_all}``; ``partial``: ``{name:
        {dataset: "n/N"}}``.
    """
    ranks, n_models, titles, heads, cols_all = defaultdict(dict), {}, {}, set(), []
    partial = defaultdict(dict)
    for dname, ds in datasets.items():
        tables = [t for t in ds["tables"] if t["rows"]]
        if not tables:
            continue
        for r in tables[0]["rows"]:
            if r.get("partial"):
                partial[r["name"]][dname] = r["partial"]
        table = dict(tables[0], rows=[r for r in tables[0]["rows"] if not r.get("partial")])
        if not table["rows"]:
            continue
        titles[dname] = table["title"]
        heads.add(ds["headline"])
        cols = [ds["headline"]] + [c for c in shown_columns(ds) if c != ds["headline"]]
        cols_all += [c for c in cols if c not in cols_all]
        n_models[dname] = len(table["rows"])
        for m in cols:
            means = [r["test"][m]["mean"] for r in table["rows"]]
            if any(v is None or math.isnan(v) for v in means):
                continue
            for r, rank in zip(table["rows"], rank_of(means)):
                ranks[r["name"]].setdefault(dname, {})[m] = rank
    models = []
    for name, by_ds in ranks.items():
        head = [by_ds[d][datasets[d]["headline"]] for d in by_ds if datasets[d]["headline"] in by_ds[d]]
        every = [v for d in by_ds for v in by_ds[d].values()]
        models.append({"name": name, "ranks": by_ds, "datasets": sorted(by_ds),
                       "mean_rank_headline": float(np.mean(head)) if head else None,
                       "mean_rank_all": float(np.mean(every)) if every else None})
    models.sort(key=lambda m: (-len(m["datasets"]), m["mean_rank_headline"] if m["mean_rank_headline"] is not None
                               else 1e9, m["mean_rank_all"] or 1e9, m["name"]))
    return {"columns": cols_all, "headline": sorted(heads), "datasets": sorted(titles), "table": titles,
            "n_models": n_models, "models": models, "partial": dict(partial)}
