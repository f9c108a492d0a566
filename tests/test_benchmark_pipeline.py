"""``tune`` and ``run`` in one schedule (benchmark/pipeline.py): a search's cells start while other
searches still run, a failed search holds back its own cells only, and the grid ends with the
cells that ``run`` would train from the tuned files."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.pipeline import schedule
from recbole_recgoat.benchmark.store import Store, read_lines
from recbole_recgoat.config import load_yaml


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

    def on_done(kind, task, out):
        if kind == "cell":
            return True, []
        return (False, []) if out.get("error") else (True, [("cell", f"{task}-cell")])

    with ThreadPoolExecutor(2) as pool:
        counts = schedule(lambda kind, task: pool.submit(work, kind, task),
                          [("search", "long"), ("search", "short"), ("search", "bad"), ("cell", "free")], on_done)
    assert ("long search saw the short search's cell start", True) in log
    assert counts == {"search": (2, 1), "cell": (3, 0)}  # bad released nothing
    assert sorted(t for k, t in log if k == "cell") == ["free", "long-cell", "short-cell"]
    assert [t for k, t in log if k == "search"].index("long") == 2  # the long search finished last


def test_an_exhaustive_search_is_its_points_in_order(tmp_path):
    """The trials a pool trains are the points the search itself would evaluate: the first budget of
    its seeded grid order, less those in hand (its own, or another budget's by run key)."""
    from recbole_recgoat.benchmark.grid import grid_order
    from recbole_recgoat.benchmark.store import append_line
    from recbole_recgoat.benchmark.trials import open_trials, search_points
    from recbole_recgoat.benchmark.tuning import TuneTask

    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    task = TuneTask("BPR", "d", space, max_evals=4, seed=5)
    order = grid_order(space, 5)
    assert search_points(task) == [{"a": space["a"][p["a"]], "b": space["b"][p["b"]]} for p in order[:4]]
    store = Store(tmp_path / "s")
    assert [t.values for t in open_trials(task, store)] == search_points(task)
    done = open_trials(task, store)[1]
    append_line(store.trials_path("BPR", "d", task.key), {"trial_key": done.key, "params": done.values})
    smaller = TuneTask("BPR", "d", space, max_evals=1, seed=5)  # budget 1: the same first point, another search
    append_line(store.trials_path("BPR", "d", smaller.key), {"trial_key": "t", "run_key": smaller.run_key(
        search_points(smaller)[0]), "params": search_points(smaller)[0], "tune_key": smaller.key})
    assert [t.values for t in open_trials(task, store)] == [search_points(task)[i] for i in (2, 3)]


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
    assert main(["tune", "--config", str(cfg), "--jobs", "1", "--store", str(tmp_path / "one_by_one")]) == 0
    for name in ("BPR-lastfm-2k.yaml", "LightGCN-lastfm-2k.yaml"):  # trials in parallel: the search's own document
        pooled, alone = (load_yaml(root / "tuned" / name) for root in (store, tmp_path / "one_by_one"))
        assert {k: pooled[k] for k in ("params", "selection", "budget", "trials", "tune_key")} == \
            {k: alone[k] for k in ("params", "selection", "budget", "trials", "tune_key")}
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


@pytest.mark.process  # a process pool; CI's second lane leaves it out
def test_a_failed_trial_holds_back_its_own_search_only(tmp_path, capsys):
    """A trial that fails (a grid value the model cannot take) fails its search: exit 1, its cells
    wait, its finished trial stays for the rerun; the other search's cells land."""
    store = tmp_path / "s"
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"store: {store}\nmodels: [BPR, LightGCN]\ndatasets: [lastfm-2k]\nseeds: 1\njobs: 2\nthreads: 1\n"
                   "overrides: {epochs: 1, train_batch_size: 4096, state: WARNING}\n"
                   "tune: {max_evals: 2, seed: 7}\nsearch_space:\n  BPR: {weight_decay: [0.0, 1.0e-4]}\n"
                   "  LightGCN: {embedding_size: [16, -1]}\n")
    assert main(["--config", str(cfg), "--steps", "tune,run"]) == 1
    out = capsys.readouterr().out
    assert "FAILED trial {'embedding_size': -1} of tune LightGCN on lastfm-2k" in out
    assert "FAILED tune LightGCN on lastfm-2k" in out and "1 searches and 1 cells finished, 1 searches" in out
    s = Store(store)
    assert [(r["variant"], r["seed"]) for r in s.records()] == [("BPR", 999)]
    assert not (store / "tuned" / "LightGCN-lastfm-2k.yaml").exists()
    trials = [t for p in (store / "tuning").glob("LightGCN-*.jsonl") for t in read_lines(p)[0]]
    assert [t["params"] for t in trials] == [{"embedding_size": 16}]  # kept for the rerun
