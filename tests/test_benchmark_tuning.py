"""Hyper-parameter search: validation only, the same budget for every model, reused by run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import recbole_recgoat.quick_start as qs
from recbole_recgoat.benchmark import tuning
from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.config import load_yaml
from recbole_recgoat.benchmark.store import Store, read_lines

BUNDLED = Path(__file__).resolve().parents[1] / "recbole_recgoat" / "bundled" / "lastfm-2k"
QUICK = ["--set", "epochs=1", "--set", "train_batch_size=4096", "--set", "state=WARNING"]


class ForbiddenSplit:
    """Stands in for the test dataloader: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read during tuning (.{name})")

    def __iter__(self):
        raise AssertionError("the test split was iterated during tuning")

    def __len__(self):
        raise AssertionError("the test split was measured during tuning")

    def __bool__(self):
        raise AssertionError("the test split was inspected during tuning")


def copy_dataset(dest, corrupt_test=False):
    dest = Path(dest) / "lastfm-2k"
    shutil.copytree(BUNDLED, dest)
    if corrupt_test:  # relabel the test file's items by a random permutation: a completely different test split
        path = dest / "lastfm-2k.test.inter"  # (a bijection keeps each (user, item) pair once: the loader refuses repeats)
        header, *rows = path.read_text().splitlines()
        cols = [r.split("\t") for r in rows]
        distinct = sorted({c[1] for c in cols})
        relabel = dict(zip(distinct, [distinct[j] for j in np.random.default_rng(0).permutation(len(distinct))]))
        path.write_text("\n".join([header] + ["\t".join([c[0], relabel[c[1]], *c[2:]]) for c in cols]) + "\n")
    return dest.parent


def trials_of(store_dir):
    out = []
    for p in sorted((Path(store_dir) / "tuning").glob("*.jsonl")):
        out += read_lines(p)[0]
    return out


def test_selection_never_reads_the_test_split(tmp_path, monkeypatch):
    clean = copy_dataset(tmp_path / "clean")
    corrupt = copy_dataset(tmp_path / "corrupt", corrupt_test=True)
    # The corruption changes the test split and nothing else.
    loaded = {}
    for name, root in (("clean", clean), ("corrupt", corrupt)):
        _, _, tr, va, te, _ = qs.prepare("BPR", "lastfm-2k", config_dict={"data_path": str(root), "state": "WARNING"}, log=False)
        loaded[name] = [d._dataset.inter_feat.numpy() for d in (tr, va, te)]
    for i in (0, 1):
        for f in ("user_id", "item_id"):
            assert np.array_equal(loaded["clean"][i][f], loaded["corrupt"][i][f])
    assert not np.array_equal(loaded["clean"][2]["item_id"], loaded["corrupt"][2]["item_id"])

    # Tune on the corrupted data with every test dataloader replaced by a tripwire.
    real = qs.data_preparation

    def guarded(config, dataset):
        train, valid, test = real(config, dataset)
        return train, valid, ForbiddenSplit()

    monkeypatch.setattr(qs, "data_preparation", guarded)
    args = ["tune", "--models", "BPR", "--algo", "exhaustive", "--max-evals", "2", "--jobs", "1", *QUICK]
    assert main([*args, "--store", "s_corrupt", "--set", f"data_path={corrupt}"]) == 0
    monkeypatch.setattr(qs, "data_preparation", real)
    assert main([*args, "--store", "s_clean", "--set", f"data_path={clean}"]) == 0

    t_corrupt, t_clean = trials_of("s_corrupt"), trials_of("s_clean")
    assert len(t_corrupt) == len(t_clean) == 2
    for a, b in zip(t_corrupt, t_clean):
        assert a["params"] == b["params"]
        assert a["best_valid_result"] == b["best_valid_result"] and a["best_valid_score"] == b["best_valid_score"]
        assert not any("test" in k for k in a)
    tuned_a = load_yaml("s_corrupt/tuned/BPR-lastfm-2k.yaml")
    tuned_b = load_yaml("s_clean/tuned/BPR-lastfm-2k.yaml")
    assert tuned_a["params"] == tuned_b["params"] and tuned_a["selection"] == tuned_b["selection"]
    assert tuned_a["selection"]["split"] == "valid"
    best = max(t_clean, key=lambda t: t["best_valid_score"])
    assert tuned_b["params"] == best["params"]
    assert "test" not in json.dumps(tuned_b["trials"])

    # run --use-tuned trains the grid with the chosen parameters and says where they came from.
    assert main(["run", "--models", "BPR", "--seeds", "1", "--store", "s_clean", "--use-tuned", "--jobs", "1",
                 *QUICK, "--set", f"data_path={clean}"]) == 0
    (rec,) = Store("s_clean").records()
    assert rec["config"]["weight_decay"] == tuned_b["params"]["weight_decay"]
    assert rec["cell"]["config_dict"] == tuned_b["params"]
    assert rec["tuning"]["file"] == "tuned/BPR-lastfm-2k.yaml" and rec["tuning"]["evaluated"] == 2
    # The leaderboard's budget table counts that model's trials and runs, and their hours.
    from recbole_recgoat.benchmark.leaderboard import compute
    from recbole_recgoat.benchmark.leaderboard.markdown import budget_lines

    (budget,) = compute(Store("s_clean"))["datasets"]["lastfm-2k"]["budget"]
    hours = sum(t["train_time_s"] for t in t_clean) / 3600
    assert budget["model"] == "BPR" and budget["trials"] == 2 and budget["runs"] == 1
    assert budget["tuning_train_h"] == pytest.approx(hours) and budget["threads"] == [rec["threads"]]
    assert budget["cpu_h"] == pytest.approx((hours + rec["train_time_s"] / 3600) * rec["threads"])
    assert f"| BPR | 2 / {tuned_b['budget']['space_size']} |" in "\n".join(budget_lines([budget]))
    # Tuning again with the same settings reuses the result; other settings are refused.
    assert main([*args, "--store", "s_clean", "--set", f"data_path={clean}"]) == 0
    assert len(trials_of("s_clean")) == 2
    assert main(["tune", "--models", "BPR", "--max-evals", "2", "--tune-seed", "5", "--jobs", "1", "--store",
                 "s_clean", *QUICK, "--set", f"data_path={clean}"]) == 2
    # A larger budget that keeps the choice keeps the cells: the leaderboard shows the new search
    # (3 trials: 2 reused, 1 trained) and names the one the cells were run for.
    assert main(["tune", "--models", "BPR", "--max-evals", "3", "--jobs", "1", "--store", "s_clean", *QUICK,
                 "--set", f"data_path={clean}"]) == 0
    assert load_yaml("s_clean/tuned/BPR-lastfm-2k.yaml")["params"] == tuned_b["params"]  # the third point scores lower
    board = compute(Store("s_clean"))["datasets"]["lastfm-2k"]
    (budget,) = board["budget"]
    assert budget["trials"] == 3 and budget["runs"] == 1
    row = board["tables"][0]["rows"][0]
    assert row["tuning"]["max_evals"] == 3 and row["tuning"]["cells_tuned_by"] == tuned_b["tune_key"]
    # A search that chooses other parameters than the cells ran with (here its document is edited to
    # stand for one) makes the row pending until its cells are re-run: no table ranks the old setting.
    from recbole_recgoat.benchmark.leaderboard.markdown import render_dataset
    from recbole_recgoat.utils.io import atomic_write

    doc = load_yaml("s_clean/tuned/BPR-lastfm-2k.yaml")
    other = next(v for v in doc["search_space"]["weight_decay"] if v != doc["params"]["weight_decay"])
    doc.update(params={"weight_decay": other}, tune_key="f" * 16)
    atomic_write("s_clean/tuned/BPR-lastfm-2k.yaml", yaml.safe_dump(doc).encode("utf-8"))
    full = compute(Store("s_clean"), expected={"lastfm-2k": ["BPR"]})
    board = full["datasets"]["lastfm-2k"]
    assert board["tables"][0]["rows"] == [] and board["tables"][0]["pending"] == ["BPR"]
    assert board["superseded"]["BPR"]["current_params"] == {"weight_decay": other} and board["superseded"]["BPR"]["cells"] == 1
    assert full["average_rank"]["models"] == []
    page = render_dataset(full, "lastfm-2k")
    assert "| BPR | pending |" in page and "Re-running for its current tuning" in page
    assert main(["run", "--models", "BPR", "--seeds", "1", "--store", "s_clean", "--use-tuned", "--jobs", "1",
                 *QUICK, "--set", f"data_path={clean}"]) == 0
    (row,) = compute(Store("s_clean"))["datasets"]["lastfm-2k"]["tables"][0]["rows"]
    assert row["tuning"]["params"] == {"weight_decay": other} and row["n"] == 1  # the re-run cell, the old one ignored
    # --use-tuned without tuned parameters is an error naming what is missing.
    assert main(["run", "--models", "Pop", "--store", "s_clean", "--use-tuned", "--jobs", "1", *QUICK]) == 2


@pytest.mark.parametrize("algo", ["exhaustive", "random", "bayes"])
def test_every_model_gets_the_same_budget(algo, tmp_path, monkeypatch):
    """No early stop of the search (RecBole's default stops after 10 trials without progress)."""
    calls = []

    def fake_trial(task, store, trials, values, reusable=None):
        calls.append((task.model, dict(values)))
        return {"trial_key": str(len(calls)), "params": values, "valid_metric": "recall@20", "valid_score_bigger": True,
                "best_valid_score": 0.5, "best_valid_result": {"recall@20": 0.5}, "best_epoch": 0, "epochs_run": 1}

    monkeypatch.setattr(tuning, "train_trial", fake_trial)
    store = Store(tmp_path / "s")
    spaces = {"Big": {"a": list(range(10)), "b": list(range(10))}, "Small": {"a": [1, 2, 3]},
              "Lists": {"modalities": [["text", "audio"], ["text"]]}}  # list values (RecGOAT's modality subsets)
    for model, space in spaces.items():
        tuning.run_search(tuning.TuneTask(model, "d", space, algo=algo, max_evals=14, seed=1), store)
    per_model = {m: [v for mm, v in calls if mm == m] for m in spaces}
    assert len(per_model["Big"]) == 14  # 14 trials, all without progress, none cut
    if algo == "exhaustive":
        assert len(per_model["Small"]) == 3  # the whole grid, each point once
        assert sorted(v["a"] for v in per_model["Small"]) == [1, 2, 3]
        assert len({tuple(sorted(v.items())) for v in per_model["Big"]}) == 14
    else:
        assert len(per_model["Small"]) == 14
    lists = store.tuned_path("Lists", "d")
    assert load_yaml(lists)["params"]["modalities"] in (["text", "audio"], ["text"])
    assert "&id" not in lists.read_text()  # no yaml anchors for a value shared by params and trials
    doc = load_yaml(store.tuned_path("Big", "d"))
    assert doc["budget"]["evaluated"] == 14 and doc["budget"]["max_evals"] == 14 and doc["budget"]["algo"] == algo
    assert doc["params"] == per_model["Big"][0]  # ties keep the first trial
    # Seeded: the same search proposes the same points.
    calls.clear()
    tuning.run_search(tuning.TuneTask("Big", "d", spaces["Big"], algo=algo, max_evals=14, seed=1, force=True), store)
    assert [v for _, v in calls] == per_model["Big"]


def test_killed_search_replays_its_finished_trials(tmp_path, monkeypatch):
    from recbole_recgoat.benchmark.spec import short_hash
    from recbole_recgoat.benchmark.store import append_line

    store = Store(tmp_path / "s")
    task = tuning.TuneTask("BPR", "lastfm-2k", {"weight_decay": [0.0, 1.0e-05]}, algo="exhaustive", max_evals=2)
    for wd, score in ((0.0, 0.30), (1.0e-05, 0.31)):  # what a killed search had finished
        values = {"weight_decay": wd}
        append_line(store.trials_path("BPR", "lastfm-2k", task.key), {
            "trial_key": short_hash({"tune_key": task.key, "params": values}), "tune_key": task.key, "params": values,
            "valid_metric": "recall@20", "valid_score_bigger": True, "best_valid_score": score,
            "best_valid_result": {"recall@20": score}, "best_epoch": 3, "epochs_run": 5, "train_time_s": 1.0})

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(qs, "prepare", no_training)
    doc = tuning.run_search(task, store)
    assert doc["params"] == {"weight_decay": 1.0e-05} and doc["budget"]["evaluated"] == 2


def test_a_larger_budget_reuses_the_smaller_searchs_trials(tmp_path, monkeypatch, capsys):
    """Raising the budget (or changing the algorithm) of a search trains only the new grid points;
    the reused trials keep their results and say where they came from. Another seed, another
    dataset whose name extends this one's, or another store not named in reuse_from reuse nothing."""
    trained = []

    def fake_run(model, dataset, config_file_list, config_dict, cmd_args, **kw):
        trained.append((model, dataset, cmd_args["seed"], dict(config_dict)))
        score = 0.1 + 0.01 * config_dict["a"] + 0.001 * cmd_args["seed"]
        return {"valid_metric": "recall@20", "config": {"valid_metric_bigger": True}, "best_valid_score": score,
                "best_valid_result": {"recall@20": score}, "best_epoch": 1, "epochs_run": 2, "train_time_s": 3.5}

    monkeypatch.setattr(qs, "run", fake_run)
    space = {"a": list(range(12))}
    store = Store(tmp_path / "s")
    small = tuning.run_search(tuning.TuneTask("M", "ml-100k", space, max_evals=6, seed=7), store)
    first6 = [t["params"] for t in small["trials"]]
    assert len(trained) == 6
    # the same search under budget 10: 4 new trainings, the 6 first proposals are the earlier ones
    trained.clear()
    big_task = tuning.TuneTask("M", "ml-100k", space, max_evals=10, seed=7)
    big = tuning.run_search(big_task, store)  # no --force needed: same search, larger budget
    assert "0 finished trials of its own; other searches' trials, reused by run key: 6 in s" in capsys.readouterr().out
    assert len(trained) == 4 and [t["params"] for t in big["trials"]][:6] == first6
    assert {tuple(c[3].items()) for c in trained}.isdisjoint({tuple(p.items()) for p in first6})
    records = read_lines(store.trials_path("M", "ml-100k", big_task.key))[0]
    reused = [r for r in records if r.get("reused_from")]
    assert len(reused) == 6 and all(r["reused_from"]["tune_key"] == small["tune_key"] for r in reused)
    assert all(r["train_time_s"] == 3.5 and r["tune_key"] == big_task.key for r in records)
    assert big["budget"]["evaluated"] == 10
    # trials written before run keys existed (lines without run_key) count when their file is the
    # same search under another budget, and only then
    from recbole_recgoat.benchmark.store import append_line

    legacy_store = Store(tmp_path / "legacy")
    legacy = tuning.TuneTask("L", "d", space, max_evals=2, seed=7)
    for line in read_lines(store.trials_path("M", "ml-100k", small["tune_key"]))[0][:2]:
        line = {k: v for k, v in line.items() if k not in ("run_key", "checksum")}
        append_line(legacy_store.trials_path("L", "d", legacy.key), dict(line, model="L", dataset="d"))
    append_line(legacy_store.trials_path("L", "d", "0123456789abcdef"),  # another search: its a=10 (3rd proposal) is not reused
                {"trial_key": "x", "tune_key": "0123456789abcdef", "params": {"a": 10}, "best_valid_score": 9.0})
    trained.clear()
    tuning.run_search(tuning.TuneTask("L", "d", space, max_evals=4, seed=7), legacy_store)
    assert len(trained) == 2 and {c[3]["a"] for c in trained}.isdisjoint({p["a"] for p in first6[:2]})
    # another seed is another trial; another dataset named "ml-100k-llm" shares no file with "ml-100k"
    trained.clear()
    tuning.run_search(tuning.TuneTask("M", "ml-100k", space, max_evals=6, seed=8, force=True), store)
    assert len(trained) == 6
    trained.clear()
    tuning.run_search(tuning.TuneTask("M", "ml-100k-llm", space, max_evals=6, seed=7), store)
    assert len(trained) == 6
    # another store counts only when named in reuse_from
    trained.clear()
    tuning.run_search(tuning.TuneTask("M", "ml-100k", space, max_evals=8, seed=7), Store(tmp_path / "other"))
    assert len(trained) == 8
    trained.clear()
    capsys.readouterr()
    doc = tuning.run_search(tuning.TuneTask("M", "ml-100k", space, max_evals=8, seed=7,
                                            reuse_from=[str(tmp_path / "s")]), Store(tmp_path / "third"))
    assert len(trained) == 0 and doc["budget"]["evaluated"] == 8
    # every store searched is named; s holds seed 7's 10 trials and seed 8's 6 (other run keys: not reused)
    assert "other searches' trials, reused by run key: 0 in third, 16 in s" in capsys.readouterr().out


def test_status_says_what_the_grid_still_needs(tmp_path, monkeypatch, capsys):
    """``status --config`` counts, per dataset, the searches not done at the yaml's budget (with the
    trials in hand, reused ones included) and the cells not finished, those that wait for their
    search apart; the counts move as searches and cells land."""
    def fake_run(model, dataset, config_file_list, config_dict, cmd_args, **kw):
        score = 0.1 + sum(float(v) for v in config_dict.values() if isinstance(v, (int, float)))
        return {"valid_metric": "recall@20", "config": {"valid_metric_bigger": True}, "best_valid_score": score,
                "best_valid_result": {"recall@20": score}, "best_epoch": 1, "epochs_run": 2, "train_time_s": 1.0}

    monkeypatch.setattr(qs, "run", fake_run)
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"store: {tmp_path / 's'}\nmodels: [BPR, LightGCN]\ndatasets: [lastfm-2k]\nseeds: 2\n"
                   "tune: {max_evals: 3, seed: 7}\nsearch_space:\n  BPR: {weight_decay: [0.0, 1.0e-4, 1.0e-3, 1.0e-2]}\n"
                   "  LightGCN: {n_layers: [1, 2, 3, 4]}\n")

    def status():
        capsys.readouterr()
        assert main(["status", "--config", str(cfg)]) == 0
        return capsys.readouterr().out.split(f"what {cfg} still needs:\n")[1]

    assert status() == ("  lastfm-2k      searches 0/2 done (to run: BPR 0/3 trials, LightGCN 0/3 trials); cells 0/4 finished, "
                        "0 to run, 4 wait for their search\n  in all: 6 trials and 0 cells to run, 4 cells after their search\n"
                        "  no time estimate yet (no finished run of the model in this store): BPR on lastfm-2k (3 trials, "
                        "2 cells), LightGCN on lastfm-2k (3 trials, 2 cells)\n")
    # a smaller budget first (--jobs 1: the trials run in this process, with the fake training)
    assert main(["tune", "--config", str(cfg), "--jobs", "1", "--models", "BPR", "--max-evals", "2"]) == 0
    out = status()
    assert "searches 0/2 done (to run: BPR 2/3 trials, LightGCN 0/3 trials); cells 0/4 finished, 2 to run, 2 wait" in out
    # time left: BPR's 1 trial and 2 cells at its trials' mean (1 s: the fake training), no records yet (x1.00)
    assert f"    lastfm-2k      trials {1 / 3600:.1f} h, cells {2 / 3600:.1f} h\n" in out and "x1.00" in out
    assert out.endswith("(and the runs without an estimate below)\n  no time estimate yet (no finished run of the "
                        "model in this store): LightGCN on lastfm-2k (3 trials, 2 cells)\n")
    assert main(["tune", "--config", str(cfg), "--jobs", "1"]) == 0
    assert "searches 2/2 done; cells 0/4 finished, 4 to run\n  in all: 0 trials and 4 cells to run" in status()
    from recbole_recgoat.benchmark.spec import build_cells, build_entries
    from recbole_recgoat.benchmark.store import append_line
    from recbole_recgoat.benchmark.tuned import tuned_for

    store = Store(tmp_path / "s")
    tuned = tuned_for(store, build_entries(["BPR"]), ["lastfm-2k"])
    cell = build_cells(build_entries(["BPR"]), ["lastfm-2k"], [999], tuned=tuned)[0]
    append_line(store.records_path, {"key": cell.key, "dataset": "lastfm-2k", "variant": "BPR", "seed": 999})
    assert "cells 1/4 finished, 3 to run" in status()


def test_time_left_comes_from_the_same_model_else_scaled_from_its_other_datasets():
    """seconds_per_run: the model's own runs on the dataset (the asked kind first); without them its
    runs on other datasets, each times the median ratio (this dataset over that one) of the models'
    trial times on both; nothing for a model never run."""
    from recbole_recgoat.benchmark.todo import point_key, seconds_per_run

    times = {("A", "d1"): {"trial": [10.0, 20.0], "cell": [40.0]}, ("A", "d2"): {"trial": [30.0], "cell": []},
             ("B", "d1"): {"trial": [100.0], "cell": []}, ("B", "d3"): {"trial": [300.0], "cell": []},
             ("C", "d1"): {"trial": [10.0], "cell": []}, ("C", "d3"): {"trial": [20.0], "cell": []},
             ("D", "d1"): {"trial": [10.0], "cell": []}, ("D", "d3"): {"trial": [50.0], "cell": []}}
    assert seconds_per_run(times, "A", "d1", "trial") == (15.0, False)
    assert seconds_per_run(times, "A", "d1", "cell") == (40.0, False)
    assert seconds_per_run(times, "A", "d2", "cell") == (30.0, False)  # no cell there: its trials
    # A on d3: from d1 (cell mean 40, ratios d3/d1 of B, C, D: 3, 2, 5 -> median 3) and from d2 (no model on both: x1)
    assert seconds_per_run(times, "A", "d3", "cell") == (pytest.approx((40.0 * 3 + 30.0) / 2), True)
    assert seconds_per_run(times, "E", "d1", "trial") == (None, False)
    # a variant row (cells keyed by row): its own cells on other datasets first, else its model's
    times[("A-slow", "d1")] = {"trial": [], "cell": [400.0]}
    assert seconds_per_run(times, "A-slow", "d1", "cell", base="A") == (400.0, False)
    assert seconds_per_run(times, "A-slow", "d3", "cell", base="A") == (pytest.approx(400.0 * 3), True)
    assert seconds_per_run(times, "A-new", "d1", "cell", base="A") == (40.0, False)
    assert seconds_per_run(times, "A-new", "d1", "cell") == (None, False)
    # a cell's own setting first (its chosen trial trained as it will), then the model's runs as above
    times[("A", "d1")]["point"] = {point_key({"x": 1}): [12.0]}
    assert seconds_per_run(times, "A", "d1", "cell", params={"x": 1}) == (12.0, False)
    assert seconds_per_run(times, "A", "d1", "cell", params={"x": 2}) == (40.0, False)
    assert seconds_per_run(times, "A-new", "d1", "cell", base="A", params={"x": 1}) == (12.0, False)


def test_tune_and_run_start_the_longest_first(tmp_path):
    """longest_first: trials left x the model's mean trial time, a search without any run first, ties
    in the given order; cells_longest_first: the model's mean cell time on the dataset."""
    from recbole_recgoat.benchmark.store import append_line
    from recbole_recgoat.benchmark.todo import longest_first

    store = Store(tmp_path / "s")
    a, b, c, d = (tuning.TuneTask(m, "d", {"x": list(range(n))}, max_evals=10) for m, n in zip("ABCD", (3, 2, 1, 2)))
    for task, sec in ((a, 10.0), (b, 100.0), (d, 50.0)):  # one finished trial each (budget 10: every grid point runs)
        point = {"x": 0}
        append_line(store.trials_path(task.model, "d", task.key), {
            "model": task.model, "dataset": "d", "params": point, "run_key": task.run_key(point), "train_time_s": sec})
    # A: 2 left x 10 s = 20, B: 1 x 100 = 100, C: never run (first), D: 1 x 50 = 50
    assert [t.model for t in longest_first([a, b, c, d], store)] == ["C", "B", "D", "A"]
    e = tuning.TuneTask("A", "d", {"x": [0, 1, 2]}, max_evals=10)  # the same search as A: a tie keeps the order
    assert [t.model for t in longest_first([a, e, b], store)] == ["B", "A", "A"]
    # cells: by their model's mean cell time on the dataset, else its trials' (A 10 s, B 100 s), none first
    from recbole_recgoat.benchmark.spec import Cell
    from recbole_recgoat.benchmark.todo import cells_longest_first

    append_line(store.records_path, {"key": "k1", "model": "A", "dataset": "d", "train_time_s": 500.0, "wall_time_s": 550.0})
    cells = [Cell(m, m, "d", seed, [], {}, {}, key=f"{m}{seed}") for m, seed in (("B", 1), ("A", 1), ("C", 1), ("B", 2))]
    assert [c.key for c in cells_longest_first(cells, store)] == ["C1", "A1", "B1", "B2"]
    # a variant row keeps its own pace (B-long: 900 s), one without cells takes its model's (A-new: 500 s)
    append_line(store.records_path, {"key": "k2", "model": "B", "variant": "B-long", "dataset": "d", "train_time_s": 900.0})
    cells = [Cell(e, m, "d", 1, [], {}, {}, key=e) for e, m in (("A", "A"), ("B", "B"), ("B-long", "B"), ("A-new", "A"))]
    assert [c.key for c in cells_longest_first(cells, store)] == ["B-long", "A", "A-new", "B"]
    # a cell whose setting has run (as a trial: 2000 s) goes by that, not by its row's other cells
    append_line(store.trials_path("B", "d", "t"), {"model": "B", "dataset": "d", "params": {"x": 3}, "train_time_s": 2000.0})
    cells = [Cell("B-long", "B", "d", 1, [], {}, {}, key="B-long"), Cell("B", "B", "d", 1, [], {"x": 3}, {}, key="B3")]
    assert [c.key for c in cells_longest_first(cells, store)] == ["B3", "B-long"]


def test_other_settings_are_still_a_conflict(tmp_path, monkeypatch):
    """Only the budget and the algorithm may change without --force: another grid is refused."""
    from recbole_recgoat.errors import InputError

    monkeypatch.setattr(tuning, "train_trial", lambda task, store, trials, values, reusable=None: {
        "trial_key": str(values), "params": values, "valid_metric": "recall@20", "valid_score_bigger": True,
        "best_valid_score": 0.5, "best_valid_result": {"recall@20": 0.5}, "best_epoch": 0, "epochs_run": 1})
    store = Store(tmp_path / "s")
    tuning.run_search(tuning.TuneTask("M", "d", {"a": [1, 2]}, max_evals=2), store)
    with pytest.raises(InputError, match="tuned with other settings"):
        tuning.check_existing(tuning.TuneTask("M", "d", {"a": [1, 2, 3]}, max_evals=2), store)
    assert tuning.check_existing(tuning.TuneTask("M", "d", {"a": [1, 2]}, max_evals=5), store) is None
