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
* the dataset statistics and the exact config of each row (yaml) beside the tables;
* PNG figures: bars with error bars (std over seeds) per metric, validation curves (mean over
  seeds of the validation metric vs epoch).

When one row (variant name on a dataset) has records of several settings (different overrides in
the same store), the setting with the newest record is used and the others are listed as ignored.
"""

import csv
import json
import math
import os
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
import yaml

from recbole_recgoat.benchmark import stats as st
from recbole_recgoat.benchmark.store import Store
from recbole_recgoat.errors import InputError

DEFAULT_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
VOLATILE_CONFIG_KEYS = {"seed", "checkpoint_dir", "search_space", "log_file"}
_PRETTY = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP", "hit": "Hit", "mrr": "MRR"}


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


# -- loading --------------------------------------------------------------------------------------
def select_records(records):
    """``(rows, ignored)``: ``{dataset: {variant: [records sorted by seed]}}`` (one setting each)."""
    groups = defaultdict(lambda: defaultdict(list))
    for rec in records:
        groups[(rec["dataset"], rec["variant"])][rec.get("setting") or rec["key"]].append(rec)
    rows, ignored = defaultdict(OrderedDict), []
    for (dataset, variant), by_setting in groups.items():
        newest = max(by_setting, key=lambda s: max(r.get("finished_at") or "" for r in by_setting[s]))
        for setting, recs in by_setting.items():
            if setting != newest:
                ignored.append({"dataset": dataset, "variant": variant, "setting": setting, "records": len(recs)})
        recs = sorted(by_setting[newest], key=lambda r: r["seed"])
        rows[dataset][variant] = recs
    return rows, ignored


def metric_order(records):
    """Metric names in the protocol's order (metrics x topk), restricted to those present."""
    present = set()
    for r in records:
        present |= set(r.get("test_result") or {})
    order = []
    for r in records:
        cfg = r.get("config") or {}
        for m in cfg.get("metrics") or []:
            for k in cfg.get("topk") or []:
                name = f"{str(m).lower()}@{k}"
                if name in present and name not in order:
                    order.append(name)
    order += sorted(present - set(order))
    return order


def clean_config(config):
    return {k: v for k, v in sorted((config or {}).items()) if k not in VOLATILE_CONFIG_KEYS}


# -- computation ----------------------------------------------------------------------------------
def summarize_row(name, recs, metrics):
    seeds = [r["seed"] for r in recs]
    test = {m: dict(zip(("mean", "std"), st.mean_std([r["test_result"][m] for r in recs if m in r["test_result"]])),
                    values=[r["test_result"].get(m) for r in recs]) for m in metrics}
    valid_metrics = sorted({k for r in recs for k in (r.get("best_valid_result") or {})})
    valid = {m: dict(zip(("mean", "std"), st.mean_std([r["best_valid_result"][m] for r in recs
                                                       if m in (r.get("best_valid_result") or {})])))
             for m in valid_metrics}
    cost_fields = {
        "best_epoch": lambda r: r.get("best_epoch"),
        "epochs_run": lambda r: r.get("epochs_run"),
        "epoch_time_mean_s": lambda r: r.get("epoch_time_mean_s"),
        "train_time_s": lambda r: r.get("train_time_s"),
        "wall_time_s": lambda r: r.get("wall_time_s"),
        "peak_memory_mb": lambda r: (r.get("peak_memory_bytes") or 0) / 2**20,
    }
    cost = {}
    for field, get in cost_fields.items():
        vals = [get(r) for r in recs if get(r) is not None]
        mean, std = st.mean_std(vals) if vals else (None, None)
        cost[field] = {"mean": mean, "std": std}
    configs = [clean_config(r.get("config")) for r in recs]
    differing = sorted({k for c in configs[1:] for k in set(c) | set(configs[0]) if c.get(k) != configs[0].get(k)})
    first = recs[0]
    return {
        "name": name,
        "model": first["model"],
        "variant": first["variant"] != first["model"],
        "setting": first.get("setting"),
        "keys": [r["key"] for r in recs],
        "seeds": seeds,
        "n": len(recs),
        "test": test,
        "valid": valid,
        "valid_metric": first.get("valid_metric"),
        "cost": cost,
        "overrides": (first.get("cell") or {}).get("config_dict") or {},
        "variant_overrides": (first.get("cell") or {}).get("variant_overrides") or {},
        "cell_overrides": (first.get("cell") or {}).get("overrides") or {},
        "tuning": first.get("tuning"),
        "config": configs[0],
        "config_differs_across_seeds": differing,
        "versions": first.get("versions"),
    }


def rank_columns(rows, metrics):
    """Best, runner-up and improvement (%) per metric (higher is better)."""
    best, runner, improvement = {}, {}, {}
    for m in metrics:
        scored = sorted(((r["test"][m]["mean"], r["name"]) for r in rows
                         if r["test"][m]["mean"] is not None and not math.isnan(r["test"][m]["mean"])),
                        key=lambda x: -x[0])
        if not scored:
            continue
        best[m] = scored[0][1]
        if len(scored) > 1:
            runner[m] = scored[1][1]
            improvement[m] = st.relative_improvement(scored[0][0], scored[1][0])
    return best, runner, improvement


def seed_level_tests(rows, best_name, metric):
    by = {r["name"]: r for r in rows}
    b = by[best_name]
    b_vals = dict(zip(b["seeds"], b["test"][metric]["values"]))
    out = []
    for r in rows:
        if r["name"] == best_name:
            continue
        o_vals = dict(zip(r["seeds"], r["test"][metric]["values"]))
        common = sorted(s for s in set(b_vals) & set(o_vals) if b_vals[s] is not None and o_vals[s] is not None)
        x = [b_vals[s] for s in common]
        y = [o_vals[s] for s in common]
        t = st.paired_t(x, y)
        w = st.paired_wilcoxon(x, y) if len(common) >= 5 else {"W": None, "p": None, "n_nonzero": None}
        out.append({"other": r["name"], "seeds": common, "n": len(common), "mean_diff": t["mean_diff"],
                    "t": t["t"], "df": t["df"], "p_t": t["p"], "W": w["W"], "p_wilcoxon": w["p"]})
    for key in ("p_t", "p_wilcoxon"):
        for item, adj in zip(out, st.holm([o[key] for o in out])):
            item[key + "_holm"] = adj
    return out


def per_user_tests(store, rows, records_by_key, best_name, metric):
    by = {r["name"]: r for r in rows}
    b = by[best_name]

    def arrays(row):
        out = {}
        for key, seed in zip(row["keys"], row["seeds"]):
            pu = store.load_per_user(records_by_key[key])
            if pu is not None and metric in pu:
                out[seed] = dict(zip(pu["user"].tolist(), pu[metric].tolist()))
        return out

    b_arr = arrays(b)
    out = []
    for r in rows:
        if r["name"] == best_name:
            continue
        o_arr = arrays(r)
        seeds = sorted(set(b_arr) & set(o_arr))
        if not seeds:
            out.append({"other": r["name"], "metric": metric, "n_seeds": 0, "n_users": 0, "mean_diff": None,
                        "W": None, "p_wilcoxon": None, "t": None, "p_t": None, "seeds_significant": None})
            continue
        users = set(b_arr[seeds[0]]) & set(o_arr[seeds[0]])
        significant = 0
        for s in seeds:
            common = sorted(set(b_arr[s]) & set(o_arr[s]))
            users &= set(common)
            w = st.paired_wilcoxon([b_arr[s][u] for u in common], [o_arr[s][u] for u in common])
            significant += int(w["p"] is not None and w["p"] < 0.05)
        users = sorted(users)
        x = [float(np.mean([b_arr[s][u] for s in seeds])) for u in users]
        y = [float(np.mean([o_arr[s][u] for s in seeds])) for u in users]
        w = st.paired_wilcoxon(x, y)
        t = st.paired_t(x, y)
        out.append({"other": r["name"], "metric": metric, "n_seeds": len(seeds), "n_users": len(users),
                    "mean_diff": t["mean_diff"], "W": w["W"], "p_wilcoxon": w["p"], "t": t["t"], "p_t": t["p"],
                    "seeds_significant": significant})
    for item, adj in zip(out, st.holm([o["p_wilcoxon"] for o in out])):
        item["p_wilcoxon_holm"] = adj
    return out


def default_tables(row_names, rows_by_name):
    plain = [n for n in row_names if not rows_by_name[n]["variant"]]
    tables = []
    if plain:
        tables.append({"title": "Overall", "rows": plain})
    bases = OrderedDict()
    for n in row_names:
        if rows_by_name[n]["variant"]:
            bases.setdefault(rows_by_name[n]["model"], []).append(n)
    for model, variants in bases.items():
        rows = ([model] if model in rows_by_name else []) + variants
        tables.append({"title": f"Ablation of {model}", "rows": rows})
    return tables


def compute(store, tables=None, headline=None, per_user_metrics=None, datasets=None):
    """The leaderboard as a json-able dict (see the module docstring)."""
    store = store if isinstance(store, Store) else Store(store)
    records, read_stats = store.records(with_stats=True)
    if not records:
        raise InputError(f"--store {store.root}: no records in {store.records_path}; expected a finished `run`")
    records_by_key = {r["key"]: r for r in records}
    grouped, ignored = select_records(records)
    out = {"store": str(store.root), "records": len(records), "torn_lines": read_stats["torn"],
           "duplicate_records": read_stats["duplicates"], "ignored_settings": ignored,
           "provenance": provenance_of(records), "datasets": OrderedDict()}
    for dataset in sorted(grouped):
        if datasets and dataset not in datasets:
            continue
        variants = grouped[dataset]
        all_recs = [r for recs in variants.values() for r in recs]
        metrics = metric_order(all_recs)
        valid_metric = (all_recs[0].get("valid_metric") or "recall@20").lower()
        head = (headline or valid_metric).lower()
        if head not in metrics:
            raise InputError(f"--headline {head}: not a test metric of {dataset}; expected one of {', '.join(metrics)}")
        pu_metrics = [m.lower() for m in (per_user_metrics or [head, head.replace("recall", "ndcg")])]
        pu_metrics = list(dict.fromkeys(m for m in pu_metrics if m in metrics))
        rows_by_name = OrderedDict((name, summarize_row(name, recs, metrics)) for name, recs in variants.items())
        stats_list = [r.get("dataset_stats") for r in all_recs if r.get("dataset_stats")]
        ds_out = {"stats": stats_list[0] if stats_list else None,
                  "stats_consistent": all(s == stats_list[0] for s in stats_list) if stats_list else None,
                  "metrics": metrics, "headline": head, "valid_metric": valid_metric,
                  "protocol": protocol_of(all_recs), "tables": []}
        table_specs = tables or default_tables(list(rows_by_name), rows_by_name)
        for spec in table_specs:
            names = [n for n in spec["rows"] if n in rows_by_name]
            if not names:
                continue
            rows = [rows_by_name[n] for n in names]
            if spec.get("sort", "score") == "score":
                rows.sort(key=lambda r: -(r["test"][head]["mean"] if r["test"][head]["mean"] is not None else -1e9))
            best, runner, improvement = rank_columns(rows, metrics)
            table = {"title": spec["title"], "rows": rows, "best": best, "runner_up": runner,
                     "improvement_pct": improvement, "headline": head}
            if head in best and len(rows) > 1:
                table["seed_tests"] = seed_level_tests(rows, best[head], head)
                table["per_user_tests"] = {m: per_user_tests(store, rows, records_by_key, best[head], m) for m in pu_metrics}
            ds_out["tables"].append(table)
        out["datasets"][dataset] = ds_out
    return out


def provenance_of(records):
    """``{field: [distinct values]}`` of the records' ``versions`` (packages, platform, code
    fingerprint, git commit): which software produced the numbers; more than one value = mixed."""
    seen = OrderedDict()
    for r in records:
        for key, value in sorted((r.get("versions") or {}).items()):
            if value is not None and value not in seen.setdefault(key, []):
                seen[key].append(value)
    return dict(seen)


def protocol_of(records):
    cfg = records[0].get("config") or {}
    keys = ["valid_metric", "stopping_step", "epochs", "eval_step", "eval_args", "benchmark_filename",
            "train_neg_sample_args", "metrics", "topk", "learner", "train_batch_size"]
    return {k: cfg.get(k) for k in keys if k in cfg}


# -- output ---------------------------------------------------------------------------------------
def write(board, out_dir, name="leaderboard", columns=None, title=None, focus=None, command=None, figures=True,
          note=None):
    """Write ``<name>.md``, ``<name>.csv``, ``<name>.json`` and ``<name>_figures/*.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / f"{name}_figures"
    if figures:
        board["figures"] = make_figures(board, fig_dir, columns)
        board["figures"] = {k: os.path.relpath(v, out_dir) for k, v in board["figures"].items()}
    else:
        board["figures"] = {}
    (out_dir / f"{name}.json").write_text(json.dumps(board, indent=1, default=_json_default) + "\n", encoding="utf-8")
    write_csv(board, out_dir / f"{name}.csv")
    md = render_markdown(board, columns=columns, title=title, focus=focus, command=command, note=note)
    (out_dir / f"{name}.md").write_text(md, encoding="utf-8")
    return {"md": out_dir / f"{name}.md", "csv": out_dir / f"{name}.csv", "json": out_dir / f"{name}.json",
            "figures": [out_dir / p for p in board["figures"].values()]}


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def write_csv(board, path):
    header = ["dataset", "table", "name", "model", "n_seeds", "seeds"]
    lines = []
    all_metrics = []
    for ds in board["datasets"].values():
        for m in ds["metrics"]:
            if m not in all_metrics:
                all_metrics.append(m)
    cost_fields = ["best_epoch", "epochs_run", "epoch_time_mean_s", "train_time_s", "wall_time_s", "peak_memory_mb"]
    header += [f"test_{m}_{s}" for m in all_metrics for s in ("mean", "std")]
    header += [f"valid_{m}_{s}" for m in all_metrics for s in ("mean", "std")]
    header += [f"{c}_{s}" for c in cost_fields for s in ("mean", "std")]
    for dname, ds in board["datasets"].items():
        for table in ds["tables"]:
            for r in table["rows"]:
                row = [dname, table["title"], r["name"], r["model"], r["n"], " ".join(map(str, r["seeds"]))]
                for m in all_metrics:
                    v = r["test"].get(m, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                for m in all_metrics:
                    v = r["valid"].get(m, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                for c in cost_fields:
                    v = r["cost"].get(c, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                lines.append(row)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(lines)


def _csv_num(x):
    return "" if x is None else repr(float(x))


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def make_figures(board, fig_dir, columns=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for dname, ds in board["datasets"].items():
        cols = [c for c in (columns or DEFAULT_COLUMNS) if c in ds["metrics"]] or ds["metrics"][:4]
        for table in ds["tables"]:
            rows = table["rows"]
            names = [r["name"] for r in rows]
            ncol = len(cols)
            fig, axes = plt.subplots(1, ncol, figsize=(max(3.2 * ncol, 6), 3.6 + 0.12 * len(rows)), squeeze=False)
            for ax, m in zip(axes[0], cols):
                means = [r["test"][m]["mean"] for r in rows]
                stds = [r["test"][m]["std"] for r in rows]
                colors = ["tab:red" if n == table["best"].get(m) else "tab:blue" for n in names]
                ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors, alpha=0.85)
                ax.set_xticks(range(len(rows)))
                ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
                ax.set_title(f"test {pretty(m)}", fontsize=10)
                ax.grid(axis="y", alpha=0.3)
                hi = max(mu + (sd or 0) for mu, sd in zip(means, stds))
                ax.set_ylim(0.0, hi * 1.12 if hi > 0 else 1.0)
            fig.suptitle(f"{dname}: {table['title']} (mean ± std over seeds; best in red)", fontsize=10)
            fig.tight_layout()
            path = fig_dir / f"{_slug(dname)}-{_slug(table['title'])}-bars.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            out[f"{dname}/{table['title']}/bars"] = str(path)

            fig, ax = plt.subplots(figsize=(6.4, 4.0))
            for r in rows:
                curve = r.get("valid_curve_mean") or {}
                if not curve.get("epoch"):
                    continue
                epochs, mean, std = curve["epoch"], curve["mean"], curve["std"]
                line = ax.plot(epochs, mean, label=r["name"], lw=1.5, marker="o" if len(epochs) <= 30 else None,
                               markersize=3)[0]
                ax.fill_between(epochs, np.array(mean) - np.array(std), np.array(mean) + np.array(std),
                                color=line.get_color(), alpha=0.15)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"valid {pretty(ds['valid_metric'])}")
            ax.set_title(f"{dname}: {table['title']}: validation curves (mean ± std over seeds)", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = fig_dir / f"{_slug(dname)}-{_slug(table['title'])}-valid_curves.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            out[f"{dname}/{table['title']}/valid_curves"] = str(path)
    return out


def attach_curves(board, store):
    """Mean +- std validation curve per row (over the seeds that reached each epoch)."""
    store = store if isinstance(store, Store) else Store(store)
    by_key = {r["key"]: r for r in store.records()}
    for ds in board["datasets"].values():
        for table in ds["tables"]:
            for r in table["rows"]:
                per_epoch = defaultdict(list)
                for key in r["keys"]:
                    for e, s in by_key[key].get("valid_curve") or []:
                        per_epoch[int(e)].append(float(s))
                epochs = sorted(per_epoch)
                r["valid_curve_mean"] = {
                    "epoch": epochs,
                    "mean": [float(np.mean(per_epoch[e])) for e in epochs],
                    "std": [float(np.std(per_epoch[e], ddof=1)) if len(per_epoch[e]) > 1 else 0.0 for e in epochs],
                    "seeds": [len(per_epoch[e]) for e in epochs],
                }
    return board


def _cell(r, m, best, bold=True):
    v = r["test"][m]
    text = f"{fmt_num(v['mean'])} ± {fmt_num(v['std'])}"
    return f"**{text}**" if bold and best.get(m) == r["name"] else text


def render_markdown(board, columns=None, title=None, focus=None, command=None, note=None):
    lines = [f"# {title or 'Leaderboard'}", ""]
    if note:
        lines += [note.strip(), ""]
    lines.append(f"Generated from the results store `{os.path.basename(board['store'])}` ({board['records']} records) "
                 "by `python -m recbole_recgoat.benchmark leaderboard`; every number below is recomputed from the "
                 "store's records alone (no training). Test-split values, mean ± sample std (ddof=1) over seeds; "
                 "models were selected (early stopping, hyper-parameters) on the validation split only.")
    if command:
        lines += ["", "```", command, "```"]
    if board.get("provenance"):
        lines += ["", "Software of the records: " + ", ".join(
            f"{k} {' / '.join(str(v) for v in vals)}" for k, vals in board["provenance"].items()) + "."]
    if board.get("ignored_settings"):
        lines += ["", "Ignored (older settings of a row in the same store): " + "; ".join(
            f"{i['variant']} on {i['dataset']} ({i['records']} records, setting {i['setting']})" for i in board["ignored_settings"])]
    for dname, ds in board["datasets"].items():
        cols = [c for c in (columns or DEFAULT_COLUMNS) if c in ds["metrics"]] or ds["metrics"][:4]
        head = ds["headline"]
        shown_configs = set()
        lines += ["", f"## {dname}", ""]
        lines += summary_lines(ds, focus)
        lines += ["", "### Dataset", ""]
        s = ds.get("stats")
        if s:
            lines += ["| users | items | interactions | train | valid | test | test users | sparsity |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|",
                      f"| {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['train_interactions']:,} | "
                      f"{s['valid_interactions']:,} | {s['test_interactions']:,} | {s['test_users']:,} | {100 * s['sparsity']:.2f}% |"]
        p = ds.get("protocol") or {}
        lines += ["", "Protocol: " + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in p.items())]
        for table in ds["tables"]:
            rows = table["rows"]
            best = table["best"]
            nseeds = sorted({r["n"] for r in rows})
            lines += ["", f"### {table['title']}", "",
                      f"Test split, mean ± std over {'/'.join(map(str, nseeds))} seeds; best of each column in bold; "
                      f"rows sorted by test {pretty(head)}.", ""]
            lines.append("| Model | " + " | ".join(pretty(c) for c in cols) + " | seeds |")
            lines.append("|---|" + "---:|" * len(cols) + "---:|")
            for r in rows:
                lines.append(f"| {r['name']} | " + " | ".join(_cell(r, c, best) for c in cols) + f" | {r['n']} |")
            if len(rows) > 1:
                imp = [table["improvement_pct"].get(c) for c in cols]
                lines.append("| *Improv. best vs runner-up* | " + " | ".join(
                    "n/a" if v is None else f"{v:+.2f}% ({best[c]} vs {table['runner_up'][c]})" for v, c in zip(imp, cols)) + " | |")
            figs = board.get("figures") or {}
            bar = figs.get(f"{dname}/{table['title']}/bars")
            if bar:
                lines += ["", f"![{table['title']}: test metrics]({bar})"]
            if table.get("seed_tests"):
                lines += ["", f"#### Significance of {best[head]} (best on test {pretty(head)})", "",
                          "Across seeds (paired by seed; Holm-adjusted over the comparisons of this table):", "",
                          "| vs | seeds | mean diff | t | p (t) | p (t, Holm) | W | p (Wilcoxon) |",
                          "|---|---:|---:|---:|---:|---:|---:|---:|"]
                for t in table["seed_tests"]:
                    lines.append(f"| {t['other']} | {t['n']} | {fmt_num(t['mean_diff'])} | {fmt_num(t['t'], 3)} | "
                                 f"{fmt_p(t['p_t'])} | {fmt_p(t.get('p_t_holm'))} | {fmt_num(t['W'], 1)} | {fmt_p(t['p_wilcoxon'])} |")
                lines += ["", "Wilcoxon across seeds needs at least 5 seeds (with 5, its smallest two-sided p is 0.0625)."]
                for metric, tests in (table.get("per_user_tests") or {}).items():
                    lines += ["", f"Per user on the test users, {pretty(metric)} (users paired by id, each user's value "
                              "averaged over the common seeds; Wilcoxon signed-rank with zero differences dropped, "
                              "Holm-adjusted; paired t; seeds with a per-seed Wilcoxon p < 0.05):", "",
                              "| vs | users | seeds | mean diff | p (Wilcoxon) | p (Wilcoxon, Holm) | p (t) | seeds p<0.05 |",
                              "|---|---:|---:|---:|---:|---:|---:|---:|"]
                    for t in tests:
                        sig = "n/a" if t["seeds_significant"] is None else f"{t['seeds_significant']}/{t['n_seeds']}"
                        lines.append(f"| {t['other']} | {t['n_users']} | {t['n_seeds']} | {fmt_num(t['mean_diff'])} | "
                                     f"{fmt_p(t['p_wilcoxon'])} | {fmt_p(t.get('p_wilcoxon_holm'))} | {fmt_p(t['p_t'])} | {sig} |")
            lines += ["", "#### Cost", "",
                      "| Model | best epoch | epochs run | s / epoch | train s | wall s / cell | peak memory MB |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for r in rows:
                c = r["cost"]
                lines.append(f"| {r['name']} | {fmt_num(c['best_epoch']['mean'], 1)} | {fmt_num(c['epochs_run']['mean'], 1)} | "
                             f"{fmt_num(c['epoch_time_mean_s']['mean'], 2)} | {fmt_num(c['train_time_s']['mean'], 1)} | "
                             f"{fmt_num(c['wall_time_s']['mean'], 1)} | {fmt_num(c['peak_memory_mb']['mean'], 1)} |")
            curve = figs.get(f"{dname}/{table['title']}/valid_curves")
            if curve:
                lines += ["", f"![{table['title']}: validation curves]({curve})"]
            lines += ["", "#### Settings", "",
                      "| Model | tuned parameters | variant overrides | tuning (algo, trials / budget, grid size) | seeds |",
                      "|---|---|---|---|---|"]
            for r in rows:
                tun = r.get("tuning")
                if not tun:
                    tun_txt = "not tuned (defaults)"
                elif not tun.get("space_size"):
                    tun_txt = "no grid (defaults)"
                else:
                    tun_txt = f"{tun.get('algo')}, {tun.get('evaluated')} / {tun.get('max_evals')}, {tun.get('space_size')}"
                tuned = ", ".join(f"`{k}={v}`" for k, v in ((tun or {}).get("params") or {}).items()) or "-"
                variant = ", ".join(f"`{k}={v}`" for k, v in (r.get("variant_overrides") or {}).items()) or "-"
                lines.append(f"| {r['name']} | {tuned} | {variant} | {tun_txt} | {', '.join(map(str, r['seeds']))} |")
            common = {k: v for k, v in (rows[0]["cell_overrides"] or {}).items()}
            if common:
                lines += ["", "Benchmark overrides (every cell): " + ", ".join(f"`{k}={v}`" for k, v in common.items())]
            tune_over = {}
            for r in rows:
                tune_over.update(((r.get("tuning") or {}).get("overrides")) or {})
            if tune_over:
                lines += ["", "Overrides of the tuning trials: " + ", ".join(f"`{k}={v}`" for k, v in tune_over.items())]
            for r in rows:
                if r["name"] in shown_configs:
                    continue
                shown_configs.add(r["name"])
                cfg = dict(r["config"])
                cfg["seeds"] = r["seeds"]
                text = yaml.safe_dump(_plain(cfg), sort_keys=True, default_flow_style=None, width=100)
                note = (f" (differs across seeds in: {', '.join(r['config_differs_across_seeds'])})"
                        if r["config_differs_across_seeds"] else "")
                lines += ["", f"<details><summary>Config of {r['name']}{note}</summary>", "", "```yaml", text.rstrip(),
                          "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def summary_lines(ds, focus=None):
    out = []
    head = ds["headline"]
    for table in ds["tables"]:
        rows = table["rows"]
        best = table["best"].get(head)
        if best is None:
            continue
        b = next(r for r in rows if r["name"] == best)
        txt = (f"**{table['title']}**: best on test {pretty(head)} is **{best}** "
               f"({fmt_num(b['test'][head]['mean'])} ± {fmt_num(b['test'][head]['std'])}, {b['n']} seeds)")
        runner = table["runner_up"].get(head)
        if runner:
            imp = table["improvement_pct"].get(head)
            seed_t = next((t for t in table.get("seed_tests") or [] if t["other"] == runner), None)
            pu = next((t for t in (table.get("per_user_tests") or {}).get(head, []) if t["other"] == runner), None)
            txt += f", {imp:+.2f}% over the runner-up {runner}" if imp is not None else f"; runner-up {runner}"
            tests = []
            if seed_t:
                tests.append(f"paired t over seeds p = {fmt_p(seed_t['p_t'])}")
            if pu:
                tests.append(f"per-user Wilcoxon p = {fmt_p(pu['p_wilcoxon'])}")
            if tests:
                txt += " (" + "; ".join(tests) + ")"
        out.append(txt + ".")
        if focus:
            f = next((r for r in rows if r["name"] == focus), None)
            if f is not None and f["name"] != best:
                order = [r["name"] for r in sorted(rows, key=lambda r: -r["test"][head]["mean"])]
                rank = order.index(focus) + 1
                gap = st.relative_improvement(f["test"][head]["mean"], b["test"][head]["mean"])
                seed_t = next((t for t in table.get("seed_tests") or [] if t["other"] == focus), None)
                out.append(f"{focus} ranks {rank} of {len(rows)} in this table ({fmt_num(f['test'][head]['mean'])} ± "
                           f"{fmt_num(f['test'][head]['std'])}), {gap:+.2f}% relative to {best}"
                           + (f" (paired t over seeds p = {fmt_p(seed_t['p_t'])})." if seed_t else "."))
            elif f is not None and len(rows) > 1:
                out.append(f"{focus} is the best row of this table.")
    return [("- " + o) for o in out]


def build(store, out_dir, name="leaderboard", tables=None, headline=None, columns=None, per_user_metrics=None,
          title=None, focus=None, datasets=None, command=None, figures=True, note=None):
    """Compute the leaderboard from ``store`` and write it to ``out_dir``; returns the written paths."""
    board = compute(store, tables=tables, headline=headline, per_user_metrics=per_user_metrics, datasets=datasets)
    attach_curves(board, store)
    return write(board, out_dir, name=name, columns=columns, title=title, focus=focus, command=command, figures=figures,
                 note=note)
