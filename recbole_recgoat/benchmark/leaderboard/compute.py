"""The leaderboard as a json-able dict, computed from the results store alone: rows (mean +- std
over seeds), the best and runner-up of each column, paired tests across seeds and per user,
costs, dataset statistics, protocol and provenance, validation curves."""

import math
import os
from collections import OrderedDict, defaultdict

import numpy as np

from recbole_recgoat.benchmark import stats as st
from recbole_recgoat.benchmark.leaderboard.provenance import budget_of, cells_search, protocol_of, provenance_of
from recbole_recgoat.benchmark.leaderboard.ranks import average_rank
from recbole_recgoat.benchmark.store import Store
from recbole_recgoat.errors import InputError

DEFAULT_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")  # metrics shown by default
VOLATILE_CONFIG_KEYS = {"seed", "checkpoint_dir", "search_space", "log_file"}


def shown_columns(ds, columns=None):
    """The metrics of a dataset's tables to show: ``columns`` (default :data:`DEFAULT_COLUMNS`) that
    it has, else its first four."""
    return [c for c in (columns or DEFAULT_COLUMNS) if c in ds["metrics"]] or ds["metrics"][:4]


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


def feature_label(record, labels=None):
    """The feature set a record's model read, in words: ``text (MiniLM) + audio (VGGish, L2); users:
    offline summary`` from ``record["features"]`` (``{"items": [...], "users": bool}``), the loader's
    ``feature_norm`` and ``labels`` (``{modality or "user": description}``, the leaderboard yaml's
    ``feature_labels`` of the dataset; default the modality's name; ``"user:<file>"`` names the user
    features read from ``user_feature_file: <file>``, ``"user"`` the others).  ``IDs only`` for a model that
    reads no feature; ``n/a`` for records made before the field existed."""
    feats = record.get("features")
    if feats is None:
        return "n/a"
    labels = labels or {}
    norms = record.get("feature_norm") or {}
    items = []
    for m in feats.get("items") or []:
        text = str(labels.get(m, m))
        if norms.get(m, "none") != "none":
            text = f"{text} [{norms[m]}]"
        items.append(text)
    out = " + ".join(items) or "IDs only"
    if feats.get("users"):
        user_file = os.path.basename(str((record.get("config") or {}).get("user_feature_file") or ""))
        out += "; users: " + str(labels.get(f"user:{user_file}", labels.get("user", "user features")))
    return out


def summarize_row(name, recs, metrics, feature_labels=None):
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
        "same_run_as": sorted({r["same_run_as"]["variant"] for r in recs if r.get("same_run_as")}),
        "seeds": seeds,
        "n": len(recs),
        "first_epoch_kept": sum(1 for r in recs if r.get("best_epoch") == 0),  # early stopping kept the 1st evaluation
        "test": test,
        "valid": valid,
        "valid_metric": first.get("valid_metric"),
        "cost": cost,
        "overrides": (first.get("cell") or {}).get("config_dict") or {},
        "variant_overrides": (first.get("cell") or {}).get("variant_overrides") or {},
        "cell_overrides": (first.get("cell") or {}).get("overrides") or {},
        "tuning": first.get("tuning"),
        "features": feature_label(first, feature_labels),
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


def compute(store, tables=None, headline=None, per_user_metrics=None, datasets=None, feature_labels=None,
            expected=None, columns=None, expected_seeds=None):
    """The leaderboard as a json-able dict (see the module docstring); ``feature_labels``:
    ``{dataset: {modality or "user": description}}`` for the rows' feature-set column.

    ``expected``: ``{dataset: [row names]}``, the rows the benchmark's configuration puts on each
    dataset (its models and variants). A row of a table that is expected but has no record yet is
    listed in the table's ``pending`` (shown as "pending"), and an expected dataset without any
    record gets its tables of pending rows: a model can be added to the configuration before its
    cells have run. ``columns``: the metrics of the average rank (default :data:`DEFAULT_COLUMNS`).
    ``expected_seeds``: ``{dataset: seeds}`` the configuration runs; a row with fewer finished seeds
    gets ``partial: "n/N"``: shown, but not ranked (no best, runner-up or average rank) until its seeds are in.
    """
    store = store if isinstance(store, Store) else Store(store)
    records, read_stats = store.records(with_stats=True)
    if not records and not expected:
        raise InputError(f"--store {store.root}: no records in {store.records_path}; expected a finished `run`")
    records_by_key = {r["key"]: r for r in records}
    grouped, ignored = select_records(records)
    out = {"store": str(store.root), "records": len(records), "torn_lines": read_stats["torn"],
           "duplicate_records": read_stats["duplicates"], "ignored_settings": ignored,
           "provenance": provenance_of(records), "datasets": OrderedDict()}
    expected = {str(d): list(names) for d, names in (expected or {}).items()}
    for dataset in sorted(set(grouped) | set(expected)):
        if datasets and dataset not in datasets:
            continue
        if dataset not in grouped:
            out["datasets"][dataset] = pending_dataset(dataset, expected[dataset], tables, headline)
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
        labels = (feature_labels or {}).get(dataset)
        rows_by_name = OrderedDict((name, summarize_row(name, recs, metrics, labels)) for name, recs in variants.items())
        table_specs = tables or default_tables(list(rows_by_name), rows_by_name)  # superseded rows stay in them, pending
        want = (expected_seeds or {}).get(dataset)
        superseded = OrderedDict()
        for name, row in list(rows_by_name.items()):
            if want and row["n"] < want:
                row["partial"] = f"{row['n']}/{want}"
            row["tuning"], newer = cells_search(store, row["model"], dataset, row.get("tuning"))
            if newer is not None:  # its cells ran for parameters the current search no longer chooses
                superseded[name] = {"cells_params": row["tuning"].get("params"), "cells_tune_key": row["tuning"]["tune_key"],
                                    "current_params": newer["params"], "current_tune_key": newer["tune_key"], "cells": row["n"]}
                del rows_by_name[name]
        stats_list = [r.get("dataset_stats") for r in all_recs if r.get("dataset_stats")]
        ds_out = {"stats": stats_list[0] if stats_list else None,
                  "stats_consistent": all(s == stats_list[0] for s in stats_list) if stats_list else None,
                  "metrics": metrics, "headline": head, "valid_metric": valid_metric,
                  "protocol": protocol_of(all_recs), "tables": [], "superseded": superseded}
        for spec in table_specs:
            if not table_on(spec, dataset):
                continue
            names = [n for n in spec["rows"] if n in rows_by_name]
            pending = [n for n in spec["rows"] if n not in rows_by_name and (n in expected.get(dataset, ()) or n in superseded)]
            if not names:
                if pending:
                    ds_out["tables"].append({"title": spec["title"], "sort": spec.get("sort", "score"), "rows": [],
                                             "pending": pending, "best": {}, "runner_up": {}, "improvement_pct": {},
                                             "column_tests": {}, "headline": head})
                continue
            rows = [rows_by_name[n] for n in names]
            sort = spec.get("sort", "score")
            if sort == "score":
                rows.sort(key=lambda r: -(r["test"][head]["mean"] if r["test"][head]["mean"] is not None else -1e9))
            best, runner, improvement = rank_columns([r for r in rows if not r.get("partial")], metrics)
            table = {"title": spec["title"], "sort": sort, "rows": rows, "pending": pending, "best": best,
                     "runner_up": runner, "improvement_pct": improvement, "headline": head,
                     "column_tests": column_tests(rows, best, runner, metrics)}
            if head in best and len(rows) > 1:
                table["seed_tests"] = seed_level_tests(rows, best[head], head)
                table["per_user_tests"] = {m: per_user_tests(store, rows, records_by_key, best[head], m) for m in pu_metrics}
            ds_out["tables"].append(table)
        ds_out["budget"] = budget_of(store, dataset, rows_by_name, records_by_key)
        out["datasets"][dataset] = ds_out
    out["average_rank"] = average_rank(out["datasets"], lambda ds: shown_columns(ds, columns))
    return out


def table_on(spec, dataset):
    """Whether a table of the leaderboard yaml is shown on ``dataset`` (its ``datasets:``, if any)."""
    only = spec.get("datasets")
    return not only or dataset in ([only] if isinstance(only, str) else only)


def pending_dataset(dataset, names, tables, headline):
    """A dataset of the configuration without any record yet: its tables, every row pending."""
    specs = tables or [{"title": "Overall", "rows": list(names)}]
    ds_tables = []
    for spec in specs:
        if not table_on(spec, dataset):
            continue
        pending = [n for n in spec["rows"] if n in names]
        if pending:
            ds_tables.append({"title": spec["title"], "sort": spec.get("sort", "score"), "rows": [], "pending": pending,
                              "best": {}, "runner_up": {}, "improvement_pct": {}, "column_tests": {},
                              "headline": (headline or "recall@20").lower()})
    return {"stats": None, "stats_consistent": None, "metrics": [], "headline": (headline or "recall@20").lower(),
            "valid_metric": "recall@20", "protocol": {}, "tables": ds_tables, "budget": []}


def column_tests(rows, best, runner, metrics):
    """Per metric, the paired t-test across seeds of the column's best row against its runner-up
    (the significance mark of the LaTeX table): ``{metric: {best, runner_up, n, mean_diff, t, p_t}}``."""
    by = {r["name"]: r for r in rows}
    out = {}
    for m in metrics:
        if m not in runner:
            continue
        b, o = by[best[m]], by[runner[m]]
        bv, ov = dict(zip(b["seeds"], b["test"][m]["values"])), dict(zip(o["seeds"], o["test"][m]["values"]))
        common = sorted(s for s in set(bv) & set(ov) if bv[s] is not None and ov[s] is not None)
        t = st.paired_t([bv[s] for s in common], [ov[s] for s in common])
        out[m] = {"best": best[m], "runner_up": runner[m], "n": len(common), "mean_diff": t["mean_diff"],
                  "t": t["t"], "p_t": t["p"]}
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
