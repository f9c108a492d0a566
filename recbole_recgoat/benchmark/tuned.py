"""The tuned-parameter documents a search writes (``<store>/tuned/<model>-<dataset>.yaml``, see
:mod:`recbole_recgoat.benchmark.tuning`), read back for ``run --use-tuned``, the leaderboard's
provenance and ``status``."""

import os
from pathlib import Path

from recbole_recgoat.config import load_yaml
from recbole_recgoat.errors import InputError


def load_tuned(store, model, dataset):
    """``(params, info)`` from ``<store>/tuned/<model>-<dataset>.yaml``, or None if absent."""
    path = Path(store.tuned_path(model, dataset))
    if not path.exists():
        return None
    doc = load_yaml(path)
    info = {
        "file": os.path.relpath(path, store.root),
        "tune_key": doc.get("tune_key"),
        "params": doc.get("params") or {},
        "algo": (doc.get("budget") or {}).get("algo"),
        "max_evals": (doc.get("budget") or {}).get("max_evals"),
        "evaluated": (doc.get("budget") or {}).get("evaluated"),
        "space_size": (doc.get("budget") or {}).get("space_size"),
        "best_valid_score": (doc.get("selection") or {}).get("best_valid_score"),
        "overrides": doc.get("overrides") or {},
    }
    return dict(doc.get("params") or {}), info


def tuned_for(store, entries, datasets, required=True):
    """``{(model, dataset): (params, info)}`` for every model of ``entries`` on ``datasets``."""
    out, missing = {}, []
    for model in dict.fromkeys(e.model for e in entries):
        for ds in datasets:
            got = load_tuned(store, model, ds)
            if got is None:
                missing.append(f"{model}-{ds}")
            else:
                out[(model, ds)] = got
    if missing and required:
        raise InputError(
            f"--use-tuned: no tuned parameters for {', '.join(missing)} in {store.root / 'tuned'}; "
            "expected `python -m recbole_recgoat.benchmark tune` first"
        )
    return out
