"""What a leaderboard's numbers cost and came from: each model's tuning trials and runs in hours,
the software versions of the records, the evaluation protocol they share, and the search a row's
cells stand for (the store's current one when it kept their choice; else they are superseded)."""

from collections import OrderedDict

from recbole_recgoat.benchmark.store import read_lines


def budget_of(store, dataset, rows_by_name, records_by_key):
    """What each plain model cost on ``dataset``, from the store: its tuning trials (the
    ``tuning/<model>-<dataset>-<tune_key>.jsonl`` its records name) and its seed runs.

    Returns:
        list of dict: per model row, ``trials`` / ``space_size`` / ``tuning_train_h`` (sum of the
        trials' training wall-clock hours), ``runs`` / ``runs_train_h`` (its records), ``threads``
        (torch threads of its runs; the benchmark gives its trials the same), ``cpu_h``
        (training hours x threads, trials and runs).
    """
    out = []
    for name, row in rows_by_name.items():
        if row["variant"]:
            continue
        recs = [records_by_key[k] for k in row["keys"]]
        tuning = row.get("tuning") or {}
        trials = []
        if tuning.get("tune_key"):
            trials, _ = read_lines(store.trials_path(row["model"], dataset, tuning["tune_key"]))
        threads = sorted({r.get("threads") for r in recs if r.get("threads")})
        tuning_h = sum(float(t.get("train_time_s") or 0) for t in trials) / 3600
        runs_h = sum(float(r.get("train_time_s") or 0) for r in recs) / 3600
        per = threads[0] if len(threads) == 1 else None
        out.append({"model": name, "trials": len(trials), "space_size": tuning.get("space_size"),
                    "tuning_train_h": tuning_h, "runs": len(recs), "runs_train_h": runs_h, "threads": threads,
                    "cpu_h": (tuning_h + runs_h) * per if per else None})
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
    out = {k: cfg.get(k) for k in keys if k in cfg}
    # records made before the key existed ran RecBole's own masking, the default
    out["test_mask"] = cfg.get("test_mask") or "train_valid"
    return out


def cells_search(store, model, dataset, tuning):
    """``(tuning, newer)``: the search a row's cells stand for, and the store's current search when
    that one no longer chooses their parameters (else None); ``tuning`` is the records' own.

    A current search (``tuned/<model>-<dataset>.yaml``) of another tune key that chose the cells'
    parameters (a larger budget that kept the choice) stands for the cells: it is returned with
    ``cells_tuned_by`` naming the search they were first run for. One that chose other parameters
    (a better point, or a renamed key) is ``newer`` (``load_tuned``'s info): the row is pending
    until its cells are re-run, so that no table ranks a model by a setting it no longer has."""
    from recbole_recgoat.benchmark.tuned import load_tuned

    if not tuning or not tuning.get("tune_key"):
        return tuning, None
    current = load_tuned(store, model, dataset)
    if current is None or current[1].get("tune_key") == tuning["tune_key"]:
        return tuning, None
    if current[0] != tuning.get("params"):
        return tuning, current[1]
    return {**current[1], "cells_tuned_by": tuning["tune_key"]}, None
