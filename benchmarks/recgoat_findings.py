#!/usr/bin/env python
"""What each part of RecGOAT contributes, from the benchmark store alone (no training).

    python benchmarks/recgoat_findings.py --store benchmarks/results [--figures docs/recgoat_findings_figures]

Prints Markdown (the tables of docs/recgoat-findings.md) per dataset:

* every RecGOAT row (the tuned model and its variants): test Recall@20 / NDCG@20 (mean +- std over
  seeds), the difference to the tuned RecGOAT, a paired t over seeds, and the diagnostics at each
  seed's best epoch (mean over seeds): item fusion weights, both sides of Lemma 3.3 per aligned
  pair (lhs = E||z^m - z||, rhs = sqrt(2 tau L + 2 tau log B)), the exact W1 between each
  modality's transported representation and the unified one, and the loss parts;
* RecGOAT against the best plain baseline (Recall@20, NDCG@20; paired t over seeds);
* RecGOAT's tuning trials (validation only): which grid points validation preferred.

With ``--figures``: the item fusion weights of the tuned RecGOAT over epochs (mean over seeds), one
PNG per dataset.  Rows are chosen as the leaderboard chooses them (the newest setting of each row).
"""

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from recbole_recgoat.benchmark import stats as st  # noqa: E402
from recbole_recgoat.benchmark.leaderboard.compute import select_records  # noqa: E402
from recbole_recgoat.benchmark.leaderboard.text import fmt_num  # noqa: E402
from recbole_recgoat.benchmark.store import Store  # noqa: E402

METRICS = ("recall@20", "ndcg@20")
DIAG_PREFIXES = ("fusion_w_", "lemma33_", "w1_exact_", "loss_")


def at_best_epoch(record):
    """The diagnostics dict of the record's best epoch (its last logged epoch <= best_epoch)."""
    best = record.get("best_epoch")
    chosen = None
    for epoch, values in record.get("diagnostics") or []:
        if best is None or epoch <= best:
            chosen = values
    return chosen or {}


def mean_of(recs, get):
    """Mean and sample std (:func:`stats.mean_std`) of ``get(record)`` over the records that have it; (None, None) if none."""
    vals = [v for v in (get(r) for r in recs) if v is not None]
    return st.mean_std(vals) if vals else (None, None)


def paired(a_recs, b_recs, metric):
    """Paired t over the seeds both rows have: ``(n, mean diff a - b, p)``."""
    a = {r["seed"]: r["test_result"][metric] for r in a_recs}
    b = {r["seed"]: r["test_result"][metric] for r in b_recs}
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return len(seeds), None, None
    t = st.paired_t([a[s] for s in seeds], [b[s] for s in seeds])
    return len(seeds), t["mean_diff"], t["p"]


def fmt_p(p):
    return "n/a" if p is None or np.isnan(p) else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def rows_table(dataset, rows, focus="RecGOAT"):
    base = rows.get(focus)
    names = [focus] + sorted(n for n, recs in rows.items() if n != focus and recs[0]["model"] == "RecGOAT")
    out = [f"| row | seeds | Recall@20 | NDCG@20 | diff R@20 vs {focus} | p (paired t) | valid Recall@20 |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        if n not in rows:
            continue
        recs = rows[n]
        cells = []
        for m in METRICS:
            mu, sd = mean_of(recs, lambda r: r["test_result"].get(m))
            cells.append(f"{fmt_num(mu)} ± {fmt_num(sd)}" if len(recs) > 1 else fmt_num(mu))  # one seed: no spread to show
        if n == focus or base is None:
            diff, p = "-", "-"
        else:
            _, d, p = paired(recs, base, "recall@20")
            diff, p = (f"{d:+.4f}" if d is not None else "n/a"), fmt_p(p)
        valid, _ = mean_of(recs, lambda r: r.get("best_valid_score"))  # what a choice between rows may read
        out.append(f"| {n} | {len(recs)} | {cells[0]} | {cells[1]} | {diff} | {p} | {fmt_num(valid)} |")
    return out


def diagnostics_table(rows, focus="RecGOAT"):
    names = [focus] + sorted(n for n, recs in rows.items() if n != focus and recs[0]["model"] == "RecGOAT")
    keys = []
    for n in names:
        for r in rows.get(n, []):
            for k in at_best_epoch(r):
                if k.startswith(DIAG_PREFIXES) and not k.endswith("_violations") and k not in keys:
                    keys.append(k)
    keys.sort(key=lambda k: (DIAG_PREFIXES.index(next(p for p in DIAG_PREFIXES if k.startswith(p))), k))
    out = ["| row | best epoch | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for n in names:
        if n not in rows:
            continue
        recs = rows[n]
        be, _ = mean_of(recs, lambda r: r.get("best_epoch"))
        vals = [mean_of(recs, lambda r, k=k: at_best_epoch(r).get(k))[0] for k in keys]
        out.append(f"| {n} | {fmt_num(be, 1)} | " + " | ".join(fmt_num(v, 3) for v in vals) + " |")
    return out


def versus_baselines(rows, focus="RecGOAT"):
    """RecGOAT against the baselines with as many seeds as the dataset's fullest row; a baseline
    whose seeds are still running is named under the table, not ranked (as on the leaderboard)."""
    plain = {n: recs for n, recs in rows.items() if recs[0]["variant"] == recs[0]["model"] and n != focus}
    full = max((len(recs) for recs in [*plain.values(), rows.get(focus, [])]), default=0)
    running = {n: len(recs) for n, recs in plain.items() if len(recs) < full}
    plain = {n: recs for n, recs in plain.items() if n not in running}
    if focus not in rows or not plain:
        return []
    out = ["| metric | RecGOAT | best baseline | its value | diff | p (paired t) | RecGOAT's rank |", "|---|---:|---|---:|---:|---:|---:|"]
    for m in METRICS:
        means = {n: mean_of(recs, lambda r: r["test_result"].get(m))[0] for n, recs in {**plain, focus: rows[focus]}.items()}
        best = max(plain, key=lambda n: means[n])
        _, d, p = paired(rows[focus], plain[best], m)
        rank = 1 + sum(1 for n, v in means.items() if n != focus and v > means[focus])
        out.append(f"| {m} | {fmt_num(means[focus])} | {best} | {fmt_num(means[best])} | {fmt_num(d) if d is None else f'{d:+.4f}'} | "
                   f"{fmt_p(p)} | {rank} of {len(means)} |")
    if running:
        out += ["", "Not ranked yet, seeds still running: " + ", ".join(f"{n} ({k}/{full})" for n, k in running.items()) + "."]
    return out


def tuning_table(store, dataset, model="RecGOAT"):
    """The trials of the search that chose the tuned parameters (the tuned file's tune key; an
    earlier budget's file or another dataset's whose name starts alike are not read)."""
    from recbole_recgoat.benchmark.store import read_lines
    from recbole_recgoat.benchmark.tuned import load_tuned

    tuned = load_tuned(store, model, dataset)
    if tuned is not None and tuned[1].get("tune_key"):
        paths = [store.trials_path(model, dataset, tuned[1]["tune_key"])]
    else:  # a search still running: its files (exactly this dataset's)
        paths = [p for p, _ in store.trial_files(model, dataset)]
    trials = [t for p in paths for t in read_lines(p)[0]]
    if not trials:
        return []
    out = ["| trial | parameters | valid Recall@20 | best epoch |", "|---:|---|---:|---:|"]
    for i, t in enumerate(trials, 1):
        params = ", ".join(f"`{k}={v}`" for k, v in t["params"].items())
        out.append(f"| {i} | {params} | {fmt_num(t['best_valid_score'])} | {t['best_epoch']} |")
    return out


def tuned_summary(store):
    """Every tuned file of the store: model, dataset, chosen parameters, validation score, trials."""
    from recbole_recgoat.config import load_yaml

    out = ["| file | chosen parameters | valid Recall@20 | trials / grid |", "|---|---|---:|---:|"]
    for path in sorted((store.root / "tuned").glob("*.yaml")):
        doc = load_yaml(path)
        params = ", ".join(f"`{k}={v}`" for k, v in (doc.get("params") or {}).items()) or "defaults"
        budget = doc.get("budget") or {}
        score = (doc.get("selection") or {}).get("best_valid_score")
        out.append(f"| {path.name} | {params} | {fmt_num(score)} | {budget.get('evaluated')} / {budget.get('space_size')} |")
    return out if len(out) > 2 else []


def fusion_figure(dataset, recs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(lambda: defaultdict(list))
    for r in recs:
        for epoch, values in r.get("diagnostics") or []:
            for k, v in values.items():
                if k.startswith("fusion_w_"):
                    series[k[len("fusion_w_"):]][epoch].append(v)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, by_epoch in series.items():
        epochs = sorted(by_epoch)
        ax.plot(epochs, [np.mean(by_epoch[e]) for e in epochs], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("item fusion weight")
    ax.set_title(f"RecGOAT on {dataset}: fusion weights (mean over {len(recs)} seeds)")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.path.join(os.path.dirname(HERE), "benchmarks", "results"))
    parser.add_argument("--figures", help="folder for the fusion-weight figures")
    args = parser.parse_args(argv)
    store = Store(args.store)
    tuned = tuned_summary(store)
    if tuned:
        print("## Tuned parameters (validation split only)\n")
        print("\n".join(tuned))
    grouped, _ = select_records(store.records() if store.records_path.exists() else [])
    if not grouped:
        for dataset in sorted({p.name.split("-", 1)[1].rsplit("-", 1)[0] for p in (store.root / "tuning").glob("RecGOAT-*.jsonl")}):
            print(f"\n## {dataset}: RecGOAT's tuning trials (validation split)\n")
            print("\n".join(tuning_table(store, dataset)))
    for dataset in sorted(grouped):
        rows = grouped[dataset]
        print(f"\n## {dataset}\n")
        print("### RecGOAT against the baselines\n")
        print("\n".join(versus_baselines(rows)) or "(no RecGOAT or no baseline records yet)")
        print("\n### RecGOAT's parts (test split; each variant is the tuned RecGOAT with the named change)\n")
        print("\n".join(rows_table(dataset, rows)))
        print("\n### Diagnostics at the best epoch (mean over seeds)\n")
        print("\n".join(diagnostics_table(rows)))
        tt = tuning_table(store, dataset)
        if tt:
            print("\n### RecGOAT's tuning trials (validation split)\n")
            print("\n".join(tt))
        if args.figures and "RecGOAT" in rows:
            path = fusion_figure(dataset, rows["RecGOAT"], os.path.join(args.figures, f"{dataset}-fusion.png"))
            if path:
                print(f"\n![fusion weights over epochs on {dataset}]({os.path.relpath(path, 'docs')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
