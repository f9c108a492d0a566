"""``tune`` and ``run`` in one schedule (benchmark/pipeline.py): a search's cells start while other
searches still run, a failed search holds back its own cells only, and the grid ends with the
cells that ``run`` would train from the tuned files."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.pipeline import schedule
from recbole_recgoat.benchmark.store import Store


def test_a_search_releases_its_cells_while_another_search_runs():
    """Two workers: the long search ends only once the short search's cell has started (or after
    10 s). One step after the other, that cell would wait for every search: the wait times out."""
    short_cell_started = threading.Event()
    log = []

    def work(kind, task):
        if task == "long":
            log.append(("long search saw the short search's cell start", short_cell_started.wait(10)))
        if task == "short-cell":
            short_cell_started.set()
        log.append((kind, task))
        return {"error": "Traceback: boom"} if task == "bad" else {}

    def on_search(task, out):
        return (False, []) if out.get("error") else (True, [f"{task}-cell"])

    with ThreadPoolExecutor(2) as pool:
        counts = schedule(lambda kind, task: pool.submit(work, kind, task), ["long", "short", "bad"], on_search,
                          on_cell=lambda cell, out: True, cells=["free"])
    assert ("long search saw the short search's cell start", True) in log
    assert counts == {"searches": (2, 1), "cells": (3, 0)}  # bad released nothing
    assert sorted(t for k, t in log if k == "cell") == ["free", "long-cell", "short-cell"]
    assert [t for k, t in log if k == "search"].index("long") == 2  # the long search finished last


@pytest.mark.process  # a process pool; CI's second lane leaves it out
def test_yaml_form_tunes_and_runs_in_one_pool(tmp_path):
    """``--config`` with tune and run, jobs 2: both searches and the cells of their tuned settings
    land; ``run`` afterwards finds every cell finished (the same cells as tune, then run)."""
    store = tmp_path / "s"
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"store: {store}\nmodels: [BPR, LightGCN]\ndatasets: [lastfm-2k]\nseeds: 2\njobs: 2\nthreads: 1\n"
                   "overrides: {epochs: 1, train_batch_size: 4096, state: WARNING}\n"
                   "variants:\n  LightGCN-1layer: {model: LightGCN, n_layers: 1}\n"
                   "tune: {max_evals: 2, seed: 7}\nsearch_space:\n  BPR: {weight_decay: [0.0, 1.0e-4]}\n"
                   "  LightGCN: {n_layers: [1, 2]}\n")
    assert main(["--config", str(cfg), "--steps", "tune,run"]) == 0
    s = Store(store)
    assert {p.name for p in (store / "tuned").glob("*.yaml")} == {"BPR-lastfm-2k.yaml", "LightGCN-lastfm-2k.yaml"}
    recs = s.records()
    assert sorted((r["variant"], r["seed"]) for r in recs) == [
        (v, seed) for v in ("BPR", "LightGCN", "LightGCN-1layer") for seed in (999, 1000)]
    assert all(r["tuning"] and r["tuning"]["file"].startswith("tuned/") for r in recs)
    before = s.records_path.read_bytes()
    assert main(["run", "--config", str(cfg)]) == 0  # tune then run would train exactly these cells
    assert s.records_path.read_bytes() == before
    starts = [k for e, k, _ in s.run_events() if e == "start"]
    assert len(starts) == len(set(starts))  # nothing trained twice (a variant equal to the tuned row is a copy)
